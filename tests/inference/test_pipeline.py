"""run_inference end to end: every input kind, the outputs and their round trips."""

from __future__ import annotations

import json

import numpy as np
import torch
import pytest

from polstereo.data.h5 import write_samples
from polstereo.errors import PolstereoError
from polstereo.inference.pipeline import InferConfig, _CudaGraphCalls, compile_mode_for, run_inference
from polstereo.io.images import read_disparity, read_image, read_npy, read_pfm
from polstereo.io.pointcloud import read_ply
from tests.conftest import make_sample
from tests.inference.conftest import stub_model, write_angle_images, write_mosaic_pair, write_ordinary

FAST = dict(device="cpu", amp="off", iters=1)


def run(tmp_path, ckpt, log=None, **options):
    lines = [] if log is None else log
    config = InferConfig(checkpoint=ckpt, out=tmp_path / "out", **{**FAST, **options})
    return run_inference(config, log=lines.append), lines


def test_mosaic_pair_runs_with_correction_and_writes_every_output(tmp_path, rng, tiny_ckpt):
    left, right = write_mosaic_pair(tmp_path / "raw", rng)
    (result,), notes = run(tmp_path, tiny_ckpt, left=str(left), right=str(right), mosaic="IMX250MZR", bit_depth=12,
                           formats=("pfm", "npy", "png16"))
    assert result["correction_applied"] and notes == []
    assert sorted(result["files"]) == sorted([
        "disparity.pfm", "disparity.npy", "disparity.png", "disparity_color.png", "correction.npy",
        "correction_color.png", "confidence.png", "dolp.png", "aolp.png", "aolp_dolp.png"])
    disparity = result["arrays"]["disparity"]
    assert disparity.shape == (48, 64)
    np.testing.assert_array_equal(read_pfm(result["files"]["disparity.pfm"]), disparity)
    np.testing.assert_array_equal(read_npy(result["files"]["disparity.npy"]), disparity)
    np.testing.assert_allclose(read_disparity(result["files"]["disparity.png"]), disparity, atol=0.5 / 256)
    np.testing.assert_array_equal(read_npy(result["files"]["correction.npy"]), result["arrays"]["correction"])
    np.testing.assert_allclose(disparity, np.maximum(result["arrays"]["base_disparity"]
                                                     + result["arrays"]["correction"], 0), atol=1e-5)
    assert read_image(result["files"]["aolp_dolp.png"]).shape == (48, 64, 3)


def test_angle_pattern_input_runs(tmp_path, rng, tiny_ckpt):
    for view in ("left", "right"):
        write_angle_images(tmp_path / "in", rng, "scene", view)
    (result,), _ = run(tmp_path, tiny_ckpt, left=str(tmp_path / "in/{name}_left_{angle}.png"),
                       right=str(tmp_path / "in/{name}_right_{angle}.png"))
    assert result["name"] == "scene" and result["kind"] == "angles" and result["correction_applied"]
    assert (tmp_path / "out" / "scene" / "disparity.pfm").is_file()


def test_directory_of_mosaic_pairs_gives_one_folder_per_pair(tmp_path, rng, tiny_ckpt):
    for name in ("a", "b"):
        left, right = write_mosaic_pair(tmp_path / "tmp", rng, name)
        (tmp_path / "L").mkdir(exist_ok=True), (tmp_path / "R").mkdir(exist_ok=True)
        left.rename(tmp_path / "L" / f"{name}.png"), right.rename(tmp_path / "R" / f"{name}.png")
    results, _ = run(tmp_path, tiny_ckpt, left=str(tmp_path / "L"), right=str(tmp_path / "R"), mosaic="IMX250MZR")
    assert [r["name"] for r in results] == ["a", "b"]
    assert all((tmp_path / "out" / n / "dolp.png").is_file() for n in ("a", "b"))


def test_hdf5_input_gets_depth_from_the_sample_camera(tmp_path, rng, tiny_ckpt):
    path = tmp_path / "d.h5"
    write_samples(path, [make_sample(rng, h=32, w=48, name="s0")])
    (result,), _ = run(tmp_path, tiny_ckpt, data=str(path), ply=True)
    disparity, depth = result["arrays"]["disparity"], result["arrays"]["depth"]
    np.testing.assert_allclose(depth, 120.0 * 0.05 / disparity, rtol=1e-5)
    points, colors = read_ply(result["files"]["points.ply"])
    assert len(points) == np.isfinite(depth).sum() and colors.shape == points.shape


def test_ordinary_pairs_print_one_no_correction_line(tmp_path, rng, tiny_ckpt):
    for scene in ("s1", "s2"):
        write_ordinary(tmp_path / "mb" / scene / "im0.png", rng)
        write_ordinary(tmp_path / "mb" / scene / "im1.png", rng)
    results, notes = run(tmp_path, tiny_ckpt, left=str(tmp_path / "mb"))
    assert len(results) == 2 and not any(r["correction_applied"] for r in results)
    assert len(notes) == 1 and "no polarization correction was applied" in notes[0]
    assert "correction.npy" not in results[0]["files"] and "dolp.png" not in results[0]["files"]


def test_use_base_only_skips_the_correction(tmp_path, rng, tiny_ckpt):
    left, right = write_mosaic_pair(tmp_path / "raw", rng)
    (result,), notes = run(tmp_path, tiny_ckpt, left=str(left), right=str(right), mosaic="IMX250MZR",
                           use_base_only=True)
    assert not result["correction_applied"] and "--use-base-only" in notes[0]
    np.testing.assert_array_equal(result["arrays"]["disparity"], result["arrays"]["base_disparity"])


def test_calibration_gives_depth_f_b_over_d(tmp_path, rng):
    (tmp_path / "calib.json").write_text(json.dumps({"K": [[80, 0, 31.5], [0, 80, 23.5], [0, 0, 1]],
                                                     "baseline": 0.1}))
    left, right = write_ordinary(tmp_path / "l.png", rng), write_ordinary(tmp_path / "r.png", rng)
    config = InferConfig(checkpoint="unused", out=tmp_path / "out", left=str(left), right=str(right),
                         calib=tmp_path / "calib.json", formats=("pfm",), ply=True, **FAST)
    (result,) = run_inference(config, model=stub_model(constant=4.0), log=lambda m: None)
    np.testing.assert_allclose(read_pfm(result["files"]["depth.pfm"]), np.full((48, 64), 80 * 0.1 / 4.0), rtol=1e-6)
    points, _ = read_ply(result["files"]["points.ply"])
    assert len(points) == 48 * 64
    np.testing.assert_allclose(points[:, 2], 2.0, rtol=1e-6)


def test_max_size_runs_downscaled_and_multiplies_disparity_by_the_scale(tmp_path, rng):
    left, right = write_ordinary(tmp_path / "l.png", rng), write_ordinary(tmp_path / "r.png", rng)
    config = InferConfig(checkpoint="unused", out=tmp_path / "out", left=str(left), right=str(right),
                         max_size=32, **FAST)
    (result,) = run_inference(config, model=stub_model(constant=3.0), log=lambda m: None)
    np.testing.assert_allclose(result["arrays"]["disparity"], 6.0)  # 3 px at half width = 6 px at full width


def test_tiny_model_runs_tiled_and_downscaled(tmp_path, rng, tiny_ckpt):
    left, right = write_mosaic_pair(tmp_path / "raw", rng)
    (result,), _ = run(tmp_path, tiny_ckpt, left=str(left), right=str(right), mosaic="IMX250MZR",
                       max_size=48, tile_rows=16, tile_overlap=8)
    disparity = result["arrays"]["disparity"]
    assert disparity.shape == (48, 64) and np.isfinite(disparity).all()


def test_rgb_angle_images_feed_a_mono_correction_module(tmp_path, rng, tiny_ckpt):
    path = tmp_path / "rgb.h5"
    write_samples(path, [make_sample(rng, h=32, w=48, channels=3)], color="rgb")
    (result,), notes = run(tmp_path, tiny_ckpt, data=str(path))
    assert result["correction_applied"] and any("RGB to luminance" in n for n in notes)


def test_ply_without_a_camera_is_refused_before_running(tmp_path, rng, tiny_ckpt):
    left, right = write_ordinary(tmp_path / "l.png", rng), write_ordinary(tmp_path / "r.png", rng)
    with pytest.raises(PolstereoError, match="--ply needs a camera"):
        run(tmp_path, tiny_ckpt, left=str(left), right=str(right), ply=True)


def test_unknown_format_is_refused(tmp_path, tiny_ckpt):
    with pytest.raises(PolstereoError, match="unknown disparity format"):
        run(tmp_path, tiny_ckpt, left="a", right="b", formats=("tiff",))


def test_stereo_calibration_rectifies_and_writes_the_rectified_views(tmp_path, rng):
    import cv2

    k = np.array([[80.0, 0, 31.5], [0, 80.0, 23.5], [0, 0, 1]])
    storage = cv2.FileStorage(str(tmp_path / "rig.yml"), cv2.FILE_STORAGE_WRITE)
    for name, value in (("K1", k), ("K2", k), ("R", np.eye(3)), ("T", np.array([[-0.2], [0.0], [0.0]]))):
        storage.write(name, value)
    storage.release()
    left = write_ordinary(tmp_path / "l.png", rng, channels=1)
    right = write_ordinary(tmp_path / "r.png", rng, channels=1)
    config = InferConfig(checkpoint="unused", out=tmp_path / "out", left=str(left), right=str(right),
                         calib=tmp_path / "rig.yml", **FAST)
    (result,) = run_inference(config, model=stub_model(constant=4.0), log=lambda m: None)
    assert result["rectified"] and result["camera"]["baseline"] == pytest.approx(0.2)
    rectified = read_image(result["files"]["left_rectified.png"])
    assert np.abs(rectified.astype(int) - read_image(left).astype(int)).max() <= 1  # identity rig: unchanged
    np.testing.assert_allclose(read_pfm(result["files"]["depth.pfm"]), 80 * 0.2 / 4.0, rtol=1e-5)


def test_compile_and_channels_last_give_the_eager_result(tmp_path, rng, tiny_ckpt, monkeypatch):
    # the capture runs (graph breaks are tested in tests/models/test_full.py); the "eager"
    # backend checks it without the C++ compile that inductor would spend a minute on here
    monkeypatch.setenv("POLSTEREO_COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    left, right = write_mosaic_pair(tmp_path / "raw", rng)
    kw = dict(left=str(left), right=str(right), mosaic="IMX250MZR", bit_depth=12)
    (eager,), _ = run(tmp_path / "eager", tiny_ckpt, **kw)
    (fast,), notes = run(tmp_path / "fast", tiny_ckpt, compile=True, channels_last=True, **kw)
    assert any("--compile (eager, default)" in n for n in notes)
    np.testing.assert_allclose(fast["arrays"]["disparity"], eager["arrays"]["disparity"], atol=1e-4)


@pytest.mark.parametrize("mode", ["reduce-overhead", "max-autotune"])
def test_cuda_graph_modes_mark_a_step_per_call_and_keep_each_band(tmp_path, rng, tiny_ckpt, monkeypatch, mode):
    # CUDA-graph modes wrap the compiled model: every call (here: every tiled band) marks a new
    # graph step and clones its outputs, so bands cannot overwrite each other; "eager" takes no mode
    monkeypatch.setenv("POLSTEREO_COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    steps = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: steps.append(1))
    left, right = write_mosaic_pair(tmp_path / "raw", rng)
    kw = dict(left=str(left), right=str(right), mosaic="IMX250MZR", bit_depth=12, tile_rows=16, tile_overlap=4)
    (eager,), _ = run(tmp_path / "eager", tiny_ckpt, **kw)
    assert steps == []
    (fast,), notes = run(tmp_path / "fast", tiny_ckpt, compile=True, compile_mode=mode, **kw)
    assert any(f"--compile (eager, {mode})" in n for n in notes)
    assert len(steps) >= 3  # one per band: 48-row angle images in 16-row bands
    np.testing.assert_allclose(fast["arrays"]["disparity"], eager["arrays"]["disparity"], atol=1e-4)


def test_compile_mode_auto_picks_cuda_graphs_on_gpus_only():
    assert compile_mode_for("auto", torch.device("cuda")) == "reduce-overhead"
    assert compile_mode_for("auto", torch.device("cpu")) == "default"
    assert compile_mode_for("max-autotune", torch.device("cpu")) == "max-autotune"
    with pytest.raises(PolstereoError, match="unknown --compile-mode 'fast'"):
        InferConfig(checkpoint=None, out="o", compile=True, compile_mode="fast").check()


def test_compiled_outputs_are_copies(monkeypatch):
    # the wrapper's contract: a later call cannot change what an earlier call returned
    buffer = torch.zeros(3)

    def graph_like(x):  # stands in for a CUDA-graph replay writing into fixed memory
        buffer.copy_(x)
        return {"disparity": buffer, "iters": [buffer]}

    calls = _CudaGraphCalls(graph_like)
    first = calls(torch.ones(3))
    calls(torch.full((3,), 7.0))
    assert first["disparity"].tolist() == [1.0, 1.0, 1.0] and first["iters"][0].tolist() == [1.0, 1.0, 1.0]


def test_compile_failure_is_one_line(tmp_path, rng, tiny_ckpt, monkeypatch):
    monkeypatch.setenv("POLSTEREO_COMPILE_BACKEND", "no-such-backend")
    left, right = write_mosaic_pair(tmp_path / "raw", rng)
    with pytest.raises(PolstereoError, match="run without --compile"):
        run(tmp_path, tiny_ckpt, left=str(left), right=str(right), mosaic="IMX250MZR", bit_depth=12, compile=True)


def test_compile_is_refused_for_onnx_graphs(tmp_path):
    with pytest.raises(PolstereoError, match="apply to PyTorch checkpoints"):
        InferConfig(checkpoint=None, onnx=tmp_path / "m.onnx", out=tmp_path / "o", compile=True).check()
