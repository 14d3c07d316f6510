"""Running exported graphs: the PolStereoModel calling convention over onnxruntime, and its refusals."""

from __future__ import annotations

import pytest
import torch

from polstereo.errors import PolstereoError
from polstereo.export.onnx import example_inputs
from polstereo.export.runtime import OnnxStereoModel, load_onnx_model, parse_metadata, providers_for

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

TOLERANCE = 1e-3


def test_full_graph_forward_matches_the_model(full_export):
    model, path, _ = full_export
    left, right = example_inputs(model, "full", (1, 30, 50), seed=3)
    got = OnnxStereoModel(path, threads=1)(left, right, angles_deg=(0, 45, 90, 135), iters=2)
    with torch.inference_mode():
        expected = model(left, right, iters=2)
    for name in ("disparity", "base_disparity", "correction", "raw", "confidence"):
        torch.testing.assert_close(got[name], expected[name], atol=TOLERANCE, rtol=0)


def test_full_graph_runs_the_base_alone_on_ordinary_images(full_export):
    # Every angle image = the intensity makes S0/2 the image itself: base_disparity is the base model's.
    model, path, _ = full_export
    left, right = example_inputs(model, "base", (1, 30, 50), channels=1, seed=4)
    got = OnnxStereoModel(path, threads=1).forward_intensity(left, right)
    with torch.inference_mode():
        expected = model.forward_intensity(left, right, iters=2)
    assert set(got) == {"disparity", "confidence"}
    torch.testing.assert_close(got["disparity"], expected["disparity"], atol=TOLERANCE, rtol=0)


def test_base_graph_has_no_correction_and_says_why(base_export):
    _, path, _ = base_export
    runner = OnnxStereoModel(path, threads=1)
    assert runner.correction is None and runner.no_correction_note == "onnx_base_only"
    with pytest.raises(PolstereoError, match="base model alone"):
        runner(torch.rand(1, 4, 1, 8, 8), torch.rand(1, 4, 1, 8, 8))


def test_other_polarizer_angles_are_refused(full_export):
    _, path, _ = full_export
    stack = torch.rand(1, 4, 1, 8, 8)
    with pytest.raises(PolstereoError, match=r"angles \[0, 30, 90, 120\] differ"):
        OnnxStereoModel(path, threads=1)(stack, stack, angles_deg=[0, 30, 90, 120])


@pytest.mark.parametrize("options, message", [
    ({"iters": 5}, "exported with 2 refinement iterations; re-export .* --iters 5"),
    ({"use_ema": True}, "--use-ema chooses weights when exporting"),
    ({"amp": "bf16"}, "--amp bf16 does not apply"),
])
def test_options_a_graph_cannot_honour_are_refused(full_export, options, message):
    _, path, _ = full_export
    with pytest.raises(PolstereoError, match=message):
        load_onnx_model(path, device="cpu", threads=1, **options)


def test_onnx_file_without_polstereo_metadata_is_refused(tmp_path):
    helper = onnx.helper
    value = helper.make_tensor_value_info("left", onnx.TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["left"], ["disparity"])], "g", [value],
                              [helper.make_tensor_value_info("disparity", onnx.TensorProto.FLOAT, [1])])
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(PolstereoError, match="not an ONNX graph exported by polstereo"):
        OnnxStereoModel(path)


def test_unreadable_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x00not protobuf")
    with pytest.raises(PolstereoError, match=r"cannot load .*broken\.onnx as an ONNX graph") as err:
        OnnxStereoModel(path)
    assert "\n" not in str(err.value)


def test_newer_metadata_version_is_refused():
    with pytest.raises(PolstereoError, match="newer than this polstereo reads"):
        parse_metadata({"format": '"polstereo.onnx"', "format_version": "99"})


@pytest.mark.parametrize("device, available, expected", [
    ("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),
    ("auto", ["CPUExecutionProvider"], ["CPUExecutionProvider"]),
    ("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    ("cuda:1", ["CUDAExecutionProvider", "CPUExecutionProvider"],
     [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]),
])
def test_devices_map_to_execution_providers(device, available, expected):
    assert providers_for(device, available) == expected


def test_cuda_without_a_cuda_onnxruntime_is_refused():
    with pytest.raises(PolstereoError, match="install onnxruntime-gpu"):
        providers_for("cuda", ["CPUExecutionProvider"])


# ---------------------------------------------------------------------------- fixed size (S2M2)
def test_fixed_size_graph_runs_at_its_size_like_the_model(s2m2_export):
    from tests.export.conftest import FIXED_SIZE

    model, path, _ = s2m2_export
    width, height = FIXED_SIZE
    left, right = example_inputs(model, "full", (1, height, width), seed=5)
    runner = OnnxStereoModel(path, threads=1)
    assert runner.input_size == FIXED_SIZE
    got = runner(left, right, iters=1)
    with torch.inference_mode():
        expected = model(left, right, iters=1)
    torch.testing.assert_close(got["disparity"], expected["disparity"], atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("height, width", [(24, 41), (32, 40)])
def test_fixed_size_graph_refuses_another_size_in_one_line(s2m2_export, height, width):
    model, path, _ = s2m2_export
    left, right = example_inputs(model, "full", (1, height, width), seed=6)
    runner = OnnxStereoModel(path, threads=1)
    for call in (lambda: runner(left, right), lambda: runner.forward_intensity(left[:, 0], right[:, 0])):
        with pytest.raises(PolstereoError, match=rf"exported for 40x24 images only.*this input is {width}x{height}"
                                                 rf".*--input-size {width} {height}") as err:
            call()
        assert "\n" not in str(err.value)
