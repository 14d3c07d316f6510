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
