"""Fixtures for the export tests: a tiny model and its exported graphs (exported once per session)."""

from __future__ import annotations

import pytest
import torch

from polstereo.export.onnx import ExportConfig, export_onnx
from polstereo.models.registry import build_model

# Small but not multiples of 32, so the in-graph padding is exercised; checked != traced.
TRACE = (2, 32, 48)
CHECKS = ((1, 24, 40), (2, 40, 56))



def tiny_model(correction: bool = True):
    torch.manual_seed(0)
    return build_model({"base": "tiny", "correction": correction}).eval()


def export(model, path, **options) -> dict:
    config = ExportConfig(checkpoint=None, out=path, trace_size=TRACE, check_sizes=CHECKS, **options)
    return export_onnx(config, model=model, log=lambda message: None)


@pytest.fixture(scope="session")
def full_export(tmp_path_factory):
    """``(model, path, report)`` of the tiny model's full graph (2 iterations)."""
    torch.set_num_threads(1)
    model = tiny_model()
    path = tmp_path_factory.mktemp("onnx") / "full.onnx"
    return model, path, export(model, path, iters=2)


@pytest.fixture(scope="session")
def base_export(tmp_path_factory):
    """``(model, path, report)`` of the tiny model's base-only graph (2 iterations)."""
    torch.set_num_threads(1)
    model = tiny_model()
    path = tmp_path_factory.mktemp("onnx") / "base.onnx"
    return model, path, export(model, path, iters=2, base_only=True)


# Fixed-size exports (an S2M2 base): width, height; not multiples of 32.
FIXED_SIZE = (40, 24)


def s2m2_model(correction: bool = True):
    """A full model on the S2M2 wrapper, with the stand-in network of tests/models/test_s2m2.py."""
    from tests.models.test_s2m2 import StandIn

    torch.manual_seed(0)
    return build_model({"base": "s2m2-S", "correction": {"width": 8, "dilations": [1]} if correction else None},
                       s2m2_factory=StandIn).eval()


@pytest.fixture(scope="session")
def s2m2_export(tmp_path_factory):
    """``(model, path, report)`` of the S2M2-based full graph at the fixed size :data:`FIXED_SIZE`."""
    torch.set_num_threads(1)
    model = s2m2_model()
    path = tmp_path_factory.mktemp("onnx") / "s2m2.onnx"
    return model, path, export(model, path, iters=1, input_size=FIXED_SIZE)
