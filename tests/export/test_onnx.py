"""ONNX export: dynamic sizes, parity with PyTorch, metadata, atomic failure, optional dependencies."""

from __future__ import annotations

import errno
import json
import sys

import numpy as np
import pytest
import torch

from polstereo import __version__
from polstereo.errors import PolstereoError
from polstereo.export import onnx as export_module
from polstereo.export.onnx import ExportConfig, ParityError, example_inputs, export_onnx
from polstereo.models.registry import build_model, model_config
from tests.export.conftest import CHECKS, FIXED_SIZE, TRACE, export, s2m2_model, tiny_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOLERANCE = 1e-3


def run_plain(path, left: torch.Tensor, right: torch.Tensor) -> dict[str, np.ndarray]:
    """onnxruntime alone, as a consumer without polstereo would run the file."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"left": left.numpy(), "right": right.numpy()})))


def metadata(path) -> dict:
    return {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}


def test_full_graph_passes_parity_at_two_sizes_other_than_the_traced_one(full_export):
    _, path, report = full_export
    parity = report["parity"]
    shapes = [run["input_shape"] for run in parity["runs"]]
    assert shapes == [[b, 4, 1, h, w] for b, h, w in CHECKS]
    assert all((b, h, w) != TRACE for b, _, _, h, w in shapes)
    assert parity["passed"] and 0 <= parity["max_disparity_diff_px"] < TOLERANCE
    assert report["graph"] == "full" and path.is_file()


def test_full_graph_runs_at_an_unseen_batch_and_odd_size(full_export):
    model, path, _ = full_export
    left, right = example_inputs(model, "full", (3, 17, 45), seed=7)
    got = run_plain(path, left, right)
    with torch.inference_mode():
        expected = model(left, right, warp_source="pred", iters=2)
    for name in ("disparity", "base_disparity", "correction", "confidence"):
        assert got[name].shape == (3, 1, 17, 45)
        np.testing.assert_allclose(got[name], expected[name].numpy(), atol=TOLERANCE, rtol=0)


def test_base_graph_takes_mono_and_rgb_intensity_images(base_export):
    model, path, report = base_export
    assert report["graph"] == "base" and report["outputs"] == ["disparity", "confidence"]
    for channels in (1, 3):
        left, right = example_inputs(model, "base", (2, 20, 52), channels=channels, seed=channels)
        got = run_plain(path, left, right)
        with torch.inference_mode():
            expected = model.forward_intensity(left, right, iters=2)
        np.testing.assert_allclose(got["disparity"], expected["disparity"].numpy(), atol=TOLERANCE, rtol=0)


def test_metadata_records_model_config_and_conventions(full_export):
    model, path, _ = full_export
    meta = metadata(path)
    assert meta["format"] == "polstereo.onnx" and meta["graph"] == "full"
    assert meta["model_name"] == "tiny"
    assert meta["model_config"] == json.loads(json.dumps(model_config(model)))
    assert meta["max_correction"] == 4.0 and meta["angles_deg"] == [0.0, 45.0, 90.0, 135.0]
    assert meta["iters"] == 2 and meta["pad_multiple"] == 32 and meta["input_range"] == [0.0, 1.0]
    assert meta["polstereo_version"] == __version__ and meta["h5_format_version"] == 1
    assert meta["channels"] == [1] and meta["opset"] == 18


def test_inputs_and_outputs_are_named_documented_and_dynamic(full_export):
    _, path, _ = full_export
    graph = onnx.load(str(path)).graph

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert [(v.name, dims(v)) for v in graph.input] == [("left", ["batch", 4, 1, "height", "width"]),
                                                       ("right", ["batch", 4, 1, "height", "width"])]
    assert [v.name for v in graph.output] == ["disparity", "base_disparity", "correction", "raw", "confidence"]
    assert all(v.doc_string for v in [*graph.input, *graph.output])
    assert "[0, 1]" in graph.input[0].doc_string


def test_failed_parity_check_writes_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    real = export_module._reference_outputs

    def perturbed(graph, left, right):
        out = real(graph, left, right)
        return {**out, "disparity": out["disparity"] + 0.01}

    monkeypatch.setattr(export_module, "_reference_outputs", perturbed)
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous export")
    with pytest.raises(ParityError, match=r"disparity differs from PyTorch by 0\.01 .*no file written") as err:
        export(tiny_model(), out, iters=1, base_only=True)
    assert not err.value.report["parity"]["passed"]
    assert out.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary left behind


def test_a_full_disk_names_the_output_and_leaves_nothing(tmp_path, monkeypatch):
    def no_space(graph, example, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a graph")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_module, "_export_graph", no_space)
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous export")
    with pytest.raises(PolstereoError, match=r"model\.onnx: cannot write the ONNX file \(No space left on device\); "
                                             "nothing was left under that name"):
        export(tiny_model(), out, iters=1, base_only=True)
    assert out.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_model_without_correction_exports_the_base_graph(tmp_path):
    notes = []
    config = export_module.ExportConfig(checkpoint=None, out=tmp_path / "a.onnx", iters=1, trace_size=TRACE,
                                        check_sizes=CHECKS[:1])
    report = export_module.export_onnx(config, model=tiny_model(correction=False), log=notes.append)
    assert report["graph"] == "base" and report["parity"]["passed"]
    assert len(notes) == 1 and "no polarization correction module" in notes[0]
    assert metadata(tmp_path / "a.onnx")["model_config"]["correction"] is None


def test_export_leaves_the_callers_model_in_training_mode():
    model = tiny_model().train()
    export_module._prepare(model)
    assert model.training and all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("package", ["onnx", "onnxruntime"])
def test_missing_package_is_a_one_line_install_hint(tmp_path, monkeypatch, package):
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` raise ImportError
    with pytest.raises(PolstereoError, match=rf"needs the {package} package.*pip install polstereo\[export\]"):
        export(tiny_model(), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_opset_below_18_is_refused(tmp_path):
    with pytest.raises(PolstereoError, match="--opset must be between 18 and 20"):
        export(tiny_model(), tmp_path / "m.onnx", opset=17)


def test_search_cost_volume_model_exports_with_parity(tmp_path):
    torch.manual_seed(0)
    model = build_model({"base": "tiny", "correction": {"search_radius": 4}}).eval()
    report = export(model, tmp_path / "search.onnx", iters=1)
    assert report["parity"]["passed"] and (tmp_path / "search.onnx").exists()


def test_shape_aware_unet_correction_exports_with_parity(tmp_path):
    torch.manual_seed(0)
    model = build_model({"base": "tiny", "correction": {"context": "unet", "shape_features": True}}).eval()
    report = export(model, tmp_path / "shape.onnx", iters=1)
    assert report["parity"]["passed"] and (tmp_path / "shape.onnx").exists()


@pytest.mark.parametrize("base_input", ["polarization-adapter", "polarization-volume"])
def test_warm_start_polarization_inputs_export_with_parity(tmp_path, base_input):
    """A stage A model whose base sees polarization exports the full graph on angle stacks (correction
    zero): with the adapter's or the volume's zero-started layers moved, the file agrees with PyTorch,
    and differs from the intensity base alone. --base-only gives it unpolarized light, with a note."""
    torch.manual_seed(0)
    model = build_model({"base": "tiny"})
    intensity_only = build_model({"base": "tiny"})
    intensity_only.load_state_dict(model.state_dict())
    model.set_base_input(base_input, seed=1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith(("adapter.out.", "base.polarization.gate.")):
                parameter.normal_(0, 1.0)
    model.eval(), intensity_only.eval()
    report = export(model, tmp_path / "warm.onnx", iters=1)
    assert report["parity"]["passed"] and report["graph"] == "full"
    assert report["metadata"]["model_config"]["base_input"] == base_input
    left, right = example_inputs(model, "full", (1, 24, 40), seed=3)
    outputs = run_plain(tmp_path / "warm.onnx", left, right)
    got = outputs["disparity"]
    assert not outputs["correction"].any() and not outputs["raw"].any()
    np.testing.assert_allclose(outputs["base_disparity"], got, atol=0, rtol=0)
    with torch.inference_mode():
        expected = model(left, right, warp_source="pred", iters=1)["disparity"].numpy()
        without = intensity_only(left, right, warp_source="pred", iters=1)["disparity"].numpy()
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)
    assert np.abs(got - without).max() > 10 * TOLERANCE, np.abs(got - without).max()
    notes = []
    config = ExportConfig(checkpoint=None, out=tmp_path / "base.onnx", trace_size=TRACE, check_sizes=CHECKS,
                          iters=1, base_only=True)
    assert export_onnx(config, model=model, log=notes.append)["graph"] == "base"
    assert notes == [f"note: --base-only: the base sees polarization ({base_input}); the base graph gives it "
                     "ordinary images as unpolarized light"]


# ---------------------------------------------------------------------------- fixed size (S2M2)
def graph_dims(path) -> list[list]:
    inputs = onnx.load(str(path)).graph.input
    return [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in inputs]


def test_builtin_export_is_dynamic_and_says_so(full_export):
    _, path, report = full_export
    assert metadata(path)["input_size"] is None and report["input_size"] is None


def test_s2m2_base_without_input_size_is_refused_before_tracing(tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "_export_graph", lambda *a, **k: pytest.fail("traced"))
    with pytest.raises(PolstereoError, match=r"s2m2-S base traces the image size.*pass --input-size W H") as err:
        export(s2m2_model(), tmp_path / "m.onnx")
    assert "\n" not in str(err.value) and list(tmp_path.iterdir()) == []


def test_fixed_size_export_fixes_height_and_width_in_the_graph_and_metadata(s2m2_export):
    _, path, report = s2m2_export
    width, height = FIXED_SIZE
    assert graph_dims(path) == [["batch", 4, 1, height, width]] * 2
    meta = metadata(path)
    assert meta["input_size"] == {"width": width, "height": height} and meta["model_name"] == "s2m2-S"
    assert meta["model_config"]["base"]["input_encoding"] == "srgb"
    assert report["input_size"] == [width, height]


def test_fixed_size_export_checks_parity_at_its_size_with_the_check_batches(s2m2_export):
    _, _, report = s2m2_export
    width, height = FIXED_SIZE
    parity = report["parity"]
    assert [run["input_shape"] for run in parity["runs"]] == [[b, 4, 1, height, width] for b, _, _ in CHECKS]
    assert parity["passed"] and parity["max_disparity_diff_px"] < TOLERANCE


def test_builtin_model_may_be_exported_at_a_fixed_size_too(tmp_path):
    report = export(tiny_model(), tmp_path / "fixed.onnx", iters=1, base_only=True, input_size=(48, 20))
    assert report["parity"]["passed"] and graph_dims(tmp_path / "fixed.onnx")[0] == ["batch", "channels", 20, 48]


def test_input_size_below_16_pixels_is_refused(tmp_path):
    with pytest.raises(PolstereoError, match="--input-size must be a width and a height of at least 16"):
        export(s2m2_model(), tmp_path / "m.onnx", input_size=(40, 8))
