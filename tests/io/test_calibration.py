"""Calibration files, rectification and depth from disparity."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from polstereo.errors import PolstereoError
from polstereo.io.calibration import (RectifiedCamera, StereoCalibration, depth_from_disparity, load_calibration,
                                      rectification_rotation, remap_planes, rotate_polarization_frame)
from polstereo.polar.stokes import angles_from_stokes, aolp, dolp, stokes_from_angles

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


# ---------------------------------------------------------------------------- polarization frame
ANGLES = (0.0, 45.0, 90.0, 135.0)
WORLD_AOLP = np.deg2rad(30.0)


def angle_stack(aolp_map: np.ndarray, degree: float = 0.4, intensity: np.ndarray | float = 0.8) -> np.ndarray:
    """``(4, 1, H, W)`` angle images of light with the given AoLP (radians), DoLP and S0."""
    s0 = np.broadcast_to(np.asarray(intensity, dtype=np.float64), aolp_map.shape)
    stokes = np.stack([s0, s0 * degree * np.cos(2 * aolp_map), s0 * degree * np.sin(2 * aolp_map)])[:, None]
    return angles_from_stokes(stokes, ANGLES, axis=0).astype(np.float32)


def aolp_of_world_direction(camera: np.ndarray, rotation: np.ndarray, direction: np.ndarray,
                            shape: tuple[int, int]) -> np.ndarray:
    """AoLP seen at every pixel of light whose field oscillates along the 3-D ``direction``.

    The image of that direction at pixel p is the line from p towards its vanishing point
    ``v = camera · rotation · direction`` (``rotation``: left-camera frame -> this camera's frame).
    Radians, counter-clockwise on screen (y down), in [0, π). Independent of any map.
    """
    v = camera @ (rotation @ direction)
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    dx, dy = v[0] - xs * v[2], v[1] - ys * v[2]
    return np.mod(np.arctan2(-dy, dx), np.pi)


def angle_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signed difference of two AoLP maps modulo π, in degrees."""
    return np.rad2deg((a - b + np.pi / 2) % np.pi - np.pi / 2)


def rolled_rig(roll_deg: float, centre=(0.1, 0.0, 0.0), pitch_yaw_deg=(0.0, 0.0)) -> StereoCalibration:
    """Identical cameras; the right one at ``centre`` (left frame), rolled about its optical axis."""
    rotation = cv2.Rodrigues(np.deg2rad([pitch_yaw_deg[0], pitch_yaw_deg[1], roll_deg]))[0]
    return identity_rig(R=rotation, T=-rotation @ np.asarray(centre))


def inside_source(map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """Rectified pixels whose source lies inside the 64x48 original image."""
    return (map_x >= 0) & (map_x <= 63) & (map_y >= 0) & (map_y <= 47)


def rectified_views(rig: StereoCalibration, direction: np.ndarray):
    """Per view: (rectified with the frame turned, only resampled, expected AoLP, valid pixels)."""
    rectifier = rig.rectifier((64, 48))
    r1, r2, p1, p2, *_ = cv2.stereoRectify(K, rig.D1, K, rig.D2, (64, 48), rig.R, rig.T.reshape(3, 1),
                                           flags=cv2.CALIB_ZERO_DISPARITY, alpha=0)
    views = {}
    for view, camera_rotation, rectifying, projection in (("left", np.eye(3), r1, p1), ("right", rig.R, r2, p2)):
        original = angle_stack(aolp_of_world_direction(K, camera_rotation, direction, (48, 64)))
        expected = aolp_of_world_direction(projection[:, :3], rectifying @ camera_rotation, direction, (48, 64))
        map_x, map_y = getattr(rectifier, f"{view}_x"), getattr(rectifier, f"{view}_y")
        valid = inside_source(map_x, map_y)
        views[view] = (aolp(stokes_from_angles(rectifier.rectify(original, view, ANGLES)))[0],
                       aolp(stokes_from_angles(remap_planes(original, map_x, map_y)))[0], expected, valid)
    return views


def test_rectification_rotation_of_a_turned_map_is_its_angle():
    # Rectified content turned 7 degrees counter-clockwise on screen about the image centre.
    theta = np.deg2rad(7.0)
    ys, xs = np.mgrid[0:48, 0:64].astype(np.float64)
    u, v = xs - 31.5, ys - 23.5
    # Source of rectified pixel p: p turned back by -theta on screen (y down).
    map_x = (31.5 + np.cos(theta) * u - np.sin(theta) * v).astype(np.float32)
    map_y = (23.5 + np.sin(theta) * u + np.cos(theta) * v).astype(np.float32)
    np.testing.assert_allclose(rectification_rotation(map_x, map_y), theta, atol=1e-5)


def test_rectification_rotation_ignores_radial_distortion():
    # Barrel distortion stretches radially, turning the image's x axis by degrees near the
    # corners and its y axis the other way, but it rotates nothing: light keeps its angle to
    # the meridional plane through a symmetric lens.
    barrel = np.array([-0.5, 0.0, 0.0, 0.0, 0.0])
    rectifier = identity_rig(D1=barrel, D2=barrel).rectifier((64, 48))
    dx_drow, dx_dcol = np.gradient(rectifier.left_x.astype(np.float64))
    dy_drow, dy_dcol = np.gradient(rectifier.left_y.astype(np.float64))
    assert np.rad2deg(np.abs(np.arctan2(dy_dcol, dx_dcol))).max() > 3.0  # the x axis alone does turn
    assert np.abs(rectifier.left_rotation).max() < np.deg2rad(0.01)
    assert np.abs(rectifier.right_rotation).max() < np.deg2rad(0.01)


def test_turning_the_frame_adds_the_angle_to_aolp_and_keeps_s0_and_dolp():
    aolp_map = np.full((48, 64), np.deg2rad(20.0))
    stack = angle_stack(aolp_map)
    turned = rotate_polarization_frame(stack, np.full((48, 64), np.deg2rad(12.0), np.float32), ANGLES)
    before, after = stokes_from_angles(stack), stokes_from_angles(turned)
    np.testing.assert_allclose(np.rad2deg(aolp(after)), 32.0, atol=1e-3)
    np.testing.assert_allclose(after[0], before[0], atol=1e-6)
    np.testing.assert_allclose(dolp(after), dolp(before), atol=1e-6)


def test_turning_the_frame_keeps_what_the_stokes_model_does_not_explain():
    stack = angle_stack(np.full((8, 8), 0.3))
    residual = 0.01 * np.array([1.0, -1.0, 1.0, -1.0], np.float32)[:, None, None, None]  # I0 + I90 != I45 + I135
    turned = rotate_polarization_frame(stack + residual, np.full((8, 8), 0.2, np.float32), ANGLES)
    clean = rotate_polarization_frame(stack, np.full((8, 8), 0.2, np.float32), ANGLES)
    np.testing.assert_allclose(turned - clean, np.broadcast_to(residual, stack.shape), atol=1e-6)


def test_polarized_rectification_with_identity_pose_leaves_the_stack_unchanged():
    rectifier = identity_rig().rectifier((64, 48))
    stack = np.random.default_rng(1).random((4, 3, 48, 64)).astype(np.float32)
    for view in ("left", "right"):
        np.testing.assert_allclose(rectifier.rectify(stack, view, ANGLES), stack, atol=1e-4)
        np.testing.assert_allclose(getattr(rectifier, f"{view}_rotation"), 0.0, atol=1e-6)


def test_rolled_right_camera_aolp_after_rectification_is_the_left_cameras():
    # Right camera rolled 5 degrees about its optical axis, level baseline: OpenCV rectifies the
    # left view without turning it, the right by the roll. Light polarized along a fronto-parallel
    # world direction has one AoLP everywhere in each image.
    direction = np.array([np.cos(WORLD_AOLP), -np.sin(WORLD_AOLP), 0.0])
    views = rectified_views(rolled_rig(5.0), direction)
    for view, (turned, resampled, expected, valid) in views.items():
        np.testing.assert_allclose(expected, WORLD_AOLP, atol=1e-9)  # the left camera's AoLP in both
        assert np.abs(angle_error(turned, expected))[valid].max() < 0.01, view
    # Without turning the frame the right view keeps the rolled camera's AoLP: off by the roll.
    np.testing.assert_allclose(np.abs(angle_error(views["right"][1], views["right"][2]))[views["right"][3]],
                               5.0, atol=0.01)
    assert np.abs(angle_error(views["left"][1], views["left"][2]))[views["left"][3]].max() < 0.01


def test_rectification_turns_the_two_views_by_different_angles():
    # A baseline tilted by atan(0.1) = 5.71 degrees: rectification turns the left view by that and
    # the right view by that plus its 5 degree roll; AoLP must follow in both.
    direction = np.array([np.cos(WORLD_AOLP), -np.sin(WORLD_AOLP), 0.0])
    views = rectified_views(rolled_rig(5.0, centre=(0.1, 0.01, 0.0)), direction)
    untouched_error = {}
    for view, (turned, resampled, expected, valid) in views.items():
        assert np.abs(angle_error(turned, expected))[valid].max() < 0.01, view
        untouched_error[view] = np.abs(angle_error(resampled, expected))[valid].mean()
    assert untouched_error["left"] == pytest.approx(np.rad2deg(np.arctan(0.1)), abs=0.05)
    assert untouched_error["right"] == pytest.approx(5.0 + np.rad2deg(np.arctan(0.1)), abs=0.05)


def test_rectification_of_a_general_rig_follows_aolp_to_first_order():
    # Pitch and yaw as well as roll, light polarized along an oblique direction: the rectifying
    # homography also shears the image slightly (by tenths of a degree here), which no rotation
    # of Stokes vectors can follow; the turn itself (5 degrees in the right view) is removed.
    direction = np.array([0.6, -0.3, 0.5])
    views = rectified_views(rolled_rig(5.0, pitch_yaw_deg=(2.0, 3.0)), direction)
    for view, (turned, resampled, expected, valid) in views.items():
        corrected = np.abs(angle_error(turned, expected))[valid]
        assert corrected.mean() < 0.2 and corrected.max() < 0.75, view
    right_turned, right_resampled, right_expected, right_valid = views["right"]
    assert np.abs(angle_error(right_resampled, right_expected))[right_valid].mean() > 4.0


def test_polarized_rectification_keeps_s0_and_dolp():
    rectifier = rolled_rig(5.0, centre=(0.1, 0.01, 0.0)).rectifier((64, 48))
    rng = np.random.default_rng(2)
    stokes = np.stack([0.5 + 0.5 * rng.random((3, 48, 64)), 0.2 * rng.standard_normal((3, 48, 64)),
                       0.2 * rng.standard_normal((3, 48, 64))])
    stack = angles_from_stokes(stokes, ANGLES, axis=0).astype(np.float32)  # (4, 3, H, W): a colour stack
    for view in ("left", "right"):
        turned = stokes_from_angles(rectifier.rectify(stack, view, ANGLES))
        resampled = stokes_from_angles(rectifier.rectify(stack, view))
        np.testing.assert_allclose(turned[0], resampled[0], atol=1e-5)
        np.testing.assert_allclose(dolp(turned), dolp(resampled), atol=1e-5)
        assert np.abs(turned[1:] - resampled[1:]).max() > 0.01  # and the frame did turn


def test_infer_rectification_turns_the_polarization_frame_of_angle_pairs():
    # The wiring `infer --calib` relies on: angle pairs get the frame turned, ordinary pairs
    # are only resampled.
    from polstereo.inference.inputs import StereoPair
    from polstereo.inference.pipeline import _camera_for

    direction = np.array([np.cos(WORLD_AOLP), -np.sin(WORLD_AOLP), 0.0])
    rig = rolled_rig(5.0)
    left = angle_stack(aolp_of_world_direction(K, np.eye(3), direction, (48, 64)))
    right = angle_stack(aolp_of_world_direction(K, rig.R, direction, (48, 64)))
    rectified, _, was_rectified = _camera_for(StereoPair("p", "angles", left, right, ANGLES), rig, {})
    rectifier = rig.rectifier((64, 48))
    valid = inside_source(rectifier.right_x, rectifier.right_y)
    assert was_rectified
    assert np.abs(angle_error(aolp(stokes_from_angles(rectified.right))[0], WORLD_AOLP))[valid].max() < 0.01
    ordinary, _, _ = _camera_for(StereoPair("p", "ordinary", right[:1], right[:1], None), rig, {})
    np.testing.assert_allclose(ordinary.right, rectifier.rectify(right[:1], "right"))
