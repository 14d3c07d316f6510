"""Mitsuba's per-ray Stokes frame -> polstereo's image convention (mitsuba_stokes_to_image)."""

import json

import numpy as np
import pytest

from polstereo.data.converters import ConvertConfig, SourceOptions, convert_dataset
from polstereo.data.converters.mitsuba import NO_FOCAL_WARNING, mitsuba_stokes_to_image
from polstereo.data.h5 import H5Reader
from polstereo.polar.stokes import stokes_from_angles
from tests.data.converters.fixtures import MITSUBA_VARIANT, mitsuba_focal_px

FOV_DEG = 70.0  # wide, so the corners' frames are far apart
WIDTH, HEIGHT = 64, 48
PLATE_NORMAL = np.array([0.2, -0.6, -1.0]) / np.linalg.norm([0.2, -0.6, -1.0])  # camera frame, towards it
PLATE_DISTANCE = 3.0  # along the optical axis
CORNER = 4  # corner blocks of CORNER x CORNER pixels


def aolp_deg(s1, s2):
    return np.degrees(0.5 * np.arctan2(s2, s1)) % 180.0


def angle_error_deg(a, b):
    error = np.abs(a - b) % 180.0
    return np.minimum(error, 180.0 - error)


# ---------------------------------------------------------------------------- the pure function
def test_frame_conversion_keeps_s0_and_dolp():
    rng = np.random.default_rng(0)
    s1, s2 = rng.normal(size=(2, 2, 9, 13)).astype(np.float32)
    new_s1, new_s2 = mitsuba_stokes_to_image(s1, s2, focal_px=6.0)
    assert new_s1.dtype == np.float32 and new_s1.shape == s1.shape
    assert np.allclose(np.hypot(new_s1, new_s2), np.hypot(s1, s2), rtol=1e-5)
    assert not np.allclose(new_s1, s1, atol=1e-3)  # it did move the off-axis angles


def test_frame_conversion_is_the_identity_at_the_principal_point():
    s1 = np.full((7, 9), 0.3)
    s2 = np.full((7, 9), -0.4)
    new_s1, new_s2 = mitsuba_stokes_to_image(s1, s2, focal_px=5.0)
    assert (new_s1[3, 4], new_s2[3, 4]) == pytest.approx((0.3, -0.4), abs=1e-12)
    moved_s1, _ = mitsuba_stokes_to_image(s1, s2, focal_px=5.0, principal_point=(0.0, 0.0))
    assert moved_s1[0, 0] == pytest.approx(0.3, abs=1e-12) and moved_s1[3, 4] != pytest.approx(0.3, abs=1e-3)


def test_frame_conversion_leaves_unpolarized_pixels_unpolarized():
    zeros = np.zeros((3, 4))
    new_s1, new_s2 = mitsuba_stokes_to_image(zeros, zeros, focal_px=2.0)
    assert not new_s1.any() and not new_s2.any()


def test_mitsuba_horizontal_turns_counter_clockwise_at_the_top_right_corner():
    """Mitsuba's x axis at pixel offset (u, v) is d × up ∝ (f, 0, -u): it leans towards the
    camera on the right, so its image turns towards image-up there by atan(-uv / (f² + u²))."""
    height, width, focal = 5, 7, 4.0
    new_s1, new_s2 = mitsuba_stokes_to_image(np.ones((height, width)), np.zeros((height, width)), focal)
    u, v = (width - 1) / 2.0, -(height - 1) / 2.0  # top-right pixel, y down
    expected = np.degrees(np.arctan2(-u * v, focal**2 + u * u))
    assert expected > 10 and aolp_deg(new_s1[0, -1], new_s2[0, -1]) == pytest.approx(expected, abs=1e-9)
    assert aolp_deg(new_s1[-1, -1], new_s2[-1, -1]) == pytest.approx(180.0 - expected, abs=1e-9)  # mirrored below


def test_frame_conversion_matches_the_generators_projection_of_the_field():
    """docs/synthetic.md's convention, as the synthetic generator computes it, applied to
    Mitsuba's frame x = d × up, y = (-d) × x."""
    from polstereo.data.synthetic.optics import cross, normalize, stokes_to_image
    from polstereo.data.synthetic.scene import StereoRig

    rng = np.random.default_rng(1)
    s1, s2 = rng.normal(size=(2, HEIGHT, WIDTH))
    focal = mitsuba_focal_px(WIDTH, FOV_DEG)
    d = StereoRig(WIDTH, HEIGHT, focal, 0.1).ray_directions().astype(np.float64)
    frame = normalize(cross(d, np.array([[0.0], [-1.0], [0.0]])))
    stokes = np.stack([np.hypot(s1, s2), s1, s2, np.zeros_like(s1)]).reshape(4, 1, -1)
    expected = stokes_to_image(stokes, frame, d).reshape(3, HEIGHT, WIDTH)
    new_s1, new_s2 = mitsuba_stokes_to_image(s1, s2, focal)
    assert np.allclose(new_s1, expected[1], atol=1e-5) and np.allclose(new_s2, expected[2], atol=1e-5)


# ---------------------------------------------------------------------------- a real render
def true_plate_aolp_deg() -> np.ndarray:
    """``(H, W)`` AoLP of the plate's reflection from geometry: Fresnel reflection of unpolarized
    light is polarized along s = n × d, perpendicular to the plane of incidence; its image is the
    direction in which the projection of the hit point moves along s (docs/synthetic.md)."""
    focal = mitsuba_focal_px(WIDTH, FOV_DEG)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    d = np.stack([(x - (WIDTH - 1) / 2) / focal, (y - (HEIGHT - 1) / 2) / focal, np.ones_like(x)])
    s = np.cross(PLATE_NORMAL, d, axis=0)
    image_right, image_down = s[0] - s[2] * d[0], s[1] - s[2] * d[1]
    return np.degrees(np.arctan2(-image_down, image_right)) % 180.0


def render_plate(path) -> None:
    """A reflecting plate (glass's Fresnel reflection, nothing transmitted) filling a 70° view under a
    uniform sky, the camera at the origin looking down -z."""
    import mitsuba as mi

    mi.set_variant(MITSUBA_VARIANT)
    T = mi.ScalarTransform4f
    flip = np.array([1.0, -1.0, -1.0])  # camera frame (x right, y down, z forward) -> Mitsuba's world
    center, normal = flip * np.array([0.0, 0.0, PLATE_DISTANCE]), flip * PLATE_NORMAL
    scene = mi.load_dict({
        "type": "scene",
        "integrator": {"type": "stokes", "integrator": {"type": "path", "max_depth": 3}},
        "sensor": {"type": "perspective", "fov": FOV_DEG,
                   "to_world": T().look_at(origin=[0, 0, 0], target=[0, 0, -1], up=[0, 1, 0]),
                   "film": {"type": "hdrfilm", "width": WIDTH, "height": HEIGHT, "rfilter": {"type": "box"}},
                   "sampler": {"type": "independent", "sample_count": 4}},
        "plate": {"type": "rectangle",
                  "to_world": T().look_at(origin=center.tolist(), target=(center + normal).tolist(),
                                          up=[0, 1, 0]).scale(50.0),
                  # glass's Fresnel reflection (n = 1.5) on every sample: no transmission lobe to add noise
                  "bsdf": {"type": "conductor", "eta": 1.5, "k": 0.0}},
        "sky": {"type": "constant", "radiance": {"type": "rgb", "value": 1.0}},
    })
    mi.render(scene, seed=3)
    scene.sensors()[0].film().bitmap(raw=False).write(str(path))


@pytest.fixture(scope="module")
def plate_source(tmp_path_factory):
    """A mitsuba-layout tree, one unlabeled sample (the plate render as both views), no meta.json."""
    pytest.importorskip("mitsuba", reason="mitsuba (pip install mitsuba) renders the fixture")
    sample = tmp_path_factory.mktemp("plate") / "src" / "plate"
    sample.mkdir(parents=True)
    render_plate(sample / "left.exr")
    (sample / "right.exr").write_bytes((sample / "left.exr").read_bytes())
    return sample.parent


def converted_corner_errors(src, out, **source) -> np.ndarray:
    """AoLP error (degrees) against the geometry in each corner block after conversion."""
    convert_dataset(ConvertConfig(src=src, out=out, layout="mitsuba", split_ratios=(1, 0, 0),
                                  source=SourceOptions(color="mono", patterns={"disparity": "", "mask": ""},
                                                       **source)))
    left = H5Reader(out / "train.h5").read(0, normalize=False).left[:, 0].astype(np.float64)
    s = stokes_from_angles(left)
    truth = true_plate_aolp_deg()
    errors = []
    for rows in (slice(0, CORNER), slice(-CORNER, None)):
        for cols in (slice(0, CORNER), slice(-CORNER, None)):
            block = s[:, rows, cols].mean(axis=(1, 2))  # Stokes averaged: Monte Carlo noise down
            assert np.hypot(block[1], block[2]) / block[0] > 0.1  # polarized enough to have an angle
            errors.append(angle_error_deg(aolp_deg(block[1], block[2]), truth[rows, cols].mean()))
    return np.array(errors)


def test_converted_plate_reflection_has_the_true_aolp_in_every_corner(plate_source, tmp_path):
    focal = mitsuba_focal_px(WIDTH, FOV_DEG)
    errors = converted_corner_errors(plate_source, tmp_path / "out", focal_px=focal)
    assert errors.max() < 1.0, errors


def test_without_a_focal_length_the_frame_is_kept_with_a_warning(plate_source, tmp_path):
    with pytest.warns(UserWarning, match="no focal_px") as caught:
        errors = converted_corner_errors(plate_source, tmp_path / "out")
    assert errors.max() > 5.0, errors  # Mitsuba's per-ray frame, several degrees off at the corners
    assert [str(w.message) for w in caught].count(NO_FOCAL_WARNING) == 1


def test_meta_json_focal_length_counts_like_the_option(plate_source, tmp_path):
    src = tmp_path / "src"
    (src / "plate").mkdir(parents=True)
    for name in ("left.exr", "right.exr"):
        (src / "plate" / name).write_bytes((plate_source / "plate" / name).read_bytes())
    (src / "plate" / "meta.json").write_text(json.dumps({"focal_px": mitsuba_focal_px(WIDTH, FOV_DEG)}))
    assert converted_corner_errors(src, tmp_path / "out").max() < 1.0
