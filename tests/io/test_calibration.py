"""Calibration files, rectification and depth from disparity."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from polstereo.errors import PolstereoError
from polstereo.io.calibration import (RectifiedCamera, StereoCalibration, depth_from_disparity, load_calibration)

K = np.array([[100.0, 0.0, 31.5], [0.0, 100.0, 23.5], [0.0, 0.0, 1.0]])
T = np.array([-0.1, 0.0, 0.0])  # right camera 0.1 m to the right of the left one


def identity_rig(**overrides) -> StereoCalibration:
    values = dict(K1=K, D1=np.zeros(5), K2=K, D2=np.zeros(5), R=np.eye(3), T=T, image_size=(64, 48))
    return StereoCalibration(**{**values, **overrides})


def test_depth_is_f_times_b_over_d_and_invalid_where_d_is_not_positive():
    depth = depth_from_disparity(np.array([[2.0, 4.0, 0.0, -1.0, np.nan]]), focal_px=100.0, baseline=0.1)
    np.testing.assert_allclose(depth[0, :2], [5.0, 2.5])
    assert np.isnan(depth[0, 2:]).all() and depth.dtype == np.float32


def test_depth_adds_doffs_to_the_disparity():
    np.testing.assert_allclose(depth_from_disparity(np.array([[3.0]]), 100.0, 0.1, doffs=1.0), [[2.5]])


def test_rectification_with_identity_pose_and_no_distortion_leaves_images_unchanged():
    rectifier = identity_rig().rectifier((64, 48))
    stack = np.random.default_rng(0).random((4, 1, 48, 64)).astype(np.float32)
    out = rectifier.rectify(stack, "left")
    assert out.shape == stack.shape
    np.testing.assert_allclose(out, stack, atol=1e-4)
    np.testing.assert_allclose(rectifier.rectify(stack, "right"), stack, atol=1e-4)


def test_rectified_camera_keeps_focal_and_baseline():
    camera = identity_rig().rectifier((64, 48)).camera
    assert camera.fx == pytest.approx(100.0) and camera.baseline == pytest.approx(0.1) and camera.doffs == 0.0


def test_rectification_undoes_a_known_rotation():
    # Right camera yawed by 2 degrees: after rectification a point at infinity has zero disparity.
    yaw = cv2.Rodrigues(np.array([0.0, np.deg2rad(2.0), 0.0]))[0]
    rectifier = identity_rig(R=yaw).rectifier((64, 48))
    far = np.array([[0.0, 0.0, 1e6]])  # on the left optical axis, at "infinity"
    project = lambda pts, rvec, k: cv2.projectPoints(pts, rvec, np.zeros(3), k, np.zeros(5))[0][0, 0]  # noqa: E731
    left_px = project(far, np.zeros(3), K)
    right_px = project(far, cv2.Rodrigues(yaw)[0].ravel(), K)
    # Where the rectified images sample these source pixels: the same rectified x in both views.
    left_rect = np.argmin(np.hypot(rectifier.left_x - left_px[0], rectifier.left_y - left_px[1]))
    right_rect = np.argmin(np.hypot(rectifier.right_x - right_px[0], rectifier.right_y - right_px[1]))
    assert abs(left_rect % 64 - right_rect % 64) <= 1 and abs(left_rect // 64 - right_rect // 64) <= 1


def test_opencv_yaml_calibration_parses(tmp_path):
    path = str(tmp_path / "stereo.yml")
    storage = cv2.FileStorage(path, cv2.FILE_STORAGE_WRITE)
    for name, value in (("M1", K), ("D1", np.zeros((1, 5))), ("M2", K), ("D2", np.zeros((1, 5))),
                        ("R", np.eye(3)), ("T", T.reshape(3, 1))):
        storage.write(name, value)
    storage.write("image_width", 64)
    storage.write("image_height", 48)
    storage.release()
    calib = load_calibration(path)
    assert isinstance(calib, StereoCalibration) and calib.image_size == (64, 48)
    np.testing.assert_array_equal(calib.K1, K)
    np.testing.assert_array_equal(calib.T, T)


def test_json_stereo_calibration_parses_nested_lists_and_opencv_matrices(tmp_path):
    entries = {"K1": K.tolist(), "D1": [0, 0, 0, 0, 0], "K2": {"type_id": "opencv-matrix", "rows": 3, "cols": 3,
                                                                "dt": "d", "data": K.ravel().tolist()},
               "D2": [0, 0, 0, 0, 0], "R": np.eye(3).tolist(), "T": T.tolist(), "image_size": [64, 48]}
    (tmp_path / "c.json").write_text(json.dumps(entries))
    calib = load_calibration(tmp_path / "c.json")
    np.testing.assert_array_equal(calib.K2, K)
    assert calib.image_size == (64, 48)


def test_k_and_baseline_give_a_rectified_camera(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"K": K.tolist(), "baseline": 0.12}))
    assert load_calibration(tmp_path / "c.json") == RectifiedCamera(100.0, 100.0, 31.5, 23.5, 0.12)


def test_plain_yaml_k_and_baseline_parse(tmp_path):
    (tmp_path / "c.yaml").write_text("%YAML:1.0\n---\nK: [[100, 0, 31.5], [0, 100, 23.5], [0, 0, 1]]\nbaseline: 0.12\n")
    assert load_calibration(tmp_path / "c.yaml") == RectifiedCamera(100.0, 100.0, 31.5, 23.5, 0.12)


def test_middlebury_calib_txt_parses(tmp_path):
    (tmp_path / "calib.txt").write_text("cam0=[3997.684 0 1176.728; 0 3997.684 1011.728; 0 0 1]\n"
                                        "cam1=[3997.684 0 1307.839; 0 3997.684 1011.728; 0 0 1]\n"
                                        "doffs=131.111\nbaseline=193.001\nwidth=2964\nheight=1988\nndisp=280\n")
    camera = load_calibration(tmp_path / "calib.txt")
    assert camera == RectifiedCamera(3997.684, 3997.684, 1176.728, 1011.728, 193.001, 131.111)


def test_image_size_mismatch_is_an_error():
    with pytest.raises(PolstereoError, match="calibration was made for 64x48"):
        identity_rig().rectifier((32, 24))


@pytest.mark.parametrize("t, message", [((0.0, -0.1, 0.0), "vertical"), ((0.1, 0.0, 0.0), "swap --left and --right")])
def test_unsupported_rigs_are_refused(t, message):
    with pytest.raises(PolstereoError, match=message):
        identity_rig(T=np.array(t)).rectifier((64, 48))


def test_file_without_calibration_entries_is_an_error(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"focal": 3}))
    with pytest.raises(PolstereoError, match="not a stereo calibration.*found focal"):
        load_calibration(tmp_path / "c.json")


def test_missing_calibration_file_is_an_error(tmp_path):
    with pytest.raises(PolstereoError, match="calibration file not found"):
        load_calibration(tmp_path / "none.yml")
