"""Polarization through glass interface by interface: the Mueller calculus and the renderer that uses it."""

import numpy as np
import pytest

import polstereo.data.synthetic.render as render
from polstereo.data.synthetic.geometry import Convex, Plane
from polstereo.data.synthetic.optics import (apply_mueller, cross, fresnel_reflectance, fresnel_reflection_mueller,
                                             fresnel_transmission_mueller, image_angle_cos_sin, normalize,
                                             rotate_stokes, stokes_to_image)
from polstereo.data.synthetic.render import render_view
from polstereo.data.synthetic.scene import Environment, Material, Scene, SceneObject, StereoRig, random_rotation
from polstereo.polar.stokes import dolp
from tests.data.synthetic.scenes import MITSUBA_FOV, MITSUBA_SIZE, mitsuba_stokes

COS = np.cos(np.radians(np.arange(0.0, 90.0, 0.5))).astype(np.float32)


def _yaw_pitch(yaw: float, pitch: float) -> np.ndarray:
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    return np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]]) @ np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp],
                                                                                    [0.0, sp, cp]])


def _glass_alone(rig: StereoRig, surface, environment: Environment, polarization: str = "mueller",
                 thin_wall: bool = False, *behind: SceneObject) -> Scene:
    return Scene(rig, (*behind, SceneObject(surface, Material("glass", ior=1.5, thin_wall=thin_wall), "glass")),
                 environment, np.zeros((0, 3), np.float32), np.zeros((0, 1), np.float32), np.array([2.5], np.float32),
                 polarization=polarization)


# ---------------------------------------------------------------------------- the calculus
@pytest.mark.parametrize("n1, n2", [(1.0, 1.5), (1.5, 1.0), (1.0, 1.4)])
def test_fresnel_mueller_matrices_carry_the_fresnel_intensities(n1, n2):
    rs, rp = fresnel_reflectance(COS, n1, n2)
    a, b, _, _ = fresnel_reflection_mueller(COS, n1, n2)
    np.testing.assert_allclose(a + b, rs, atol=1e-6)
    np.testing.assert_allclose(a - b, rp, atol=1e-6)
    a, b, _, _ = fresnel_transmission_mueller(COS, n1, n2)
    np.testing.assert_allclose(a + b, 1 - rs, atol=1e-6)
    np.testing.assert_allclose(a - b, 1 - rp, atol=1e-6)


@pytest.mark.parametrize("mueller", [fresnel_reflection_mueller, fresnel_transmission_mueller])
@pytest.mark.parametrize("n1, n2", [(1.0, 1.5), (1.5, 1.0)])
def test_fresnel_mueller_matrices_do_not_depolarize(mueller, n1, n2):
    """A smooth interface turns fully polarized light into fully polarized light: a² = b² + c² + e²."""
    a, b, c, e = mueller(COS, n1, n2)
    np.testing.assert_allclose(a * a, b * b + c * c + e * e, atol=2e-6)


@pytest.mark.parametrize("n1, n2", [(1.0, 1.5), (1.5, 1.0)])
def test_a_mirror_at_normal_incidence_negates_s2(n1, n2):
    """rp = -rs at normal incidence with p = k × s on both sides: ±45° light comes back ∓45° in the
    frame of the reflected light, which is how a mirror turns handedness."""
    a, b, c, e = fresnel_reflection_mueller(np.ones(1, np.float32), n1, n2)
    assert b[0] == pytest.approx(0.0, abs=1e-7) and c[0] == pytest.approx(-a[0], rel=1e-6) and e[0] == 0.0


def test_total_internal_reflection_keeps_the_light_and_retards_like_a_fresnel_rhomb():
    """Inside glass of n = 1.51 at 54.6° two total reflections make a quarter wave (Fresnel's
    rhomb): each retards s against p by 45°, turning S2 into S3."""
    a, b, c, e = fresnel_reflection_mueller(np.array([np.cos(np.radians(54.6))]), 1.51, 1.0)
    assert (a[0], b[0]) == pytest.approx((1.0, 0.0), abs=1e-6)
    assert np.degrees(np.arctan2(abs(e[0]), c[0])) == pytest.approx(45.0, abs=0.3)
    s3 = apply_mueller(apply_mueller(np.array([1.0, 0.0, 1.0, 0.0], np.float32)[:, None, None], (a, b, c, e)),
                       (a, b, c, e))
    assert abs(s3[3, 0, 0]) == pytest.approx(1.0, abs=0.01) and abs(s3[2, 0, 0]) < 0.01


def _axis_in_frame(stokes: np.ndarray, frame: np.ndarray, k: np.ndarray) -> np.ndarray:
    psi = 0.5 * np.arctan2(stokes[2, 0], stokes[1, 0])
    return np.cos(psi) * frame + np.sin(psi) * cross(k, frame)


def test_rotating_the_reference_frame_keeps_the_polarization_where_it_is():
    rng = np.random.default_rng(0)
    k = normalize(rng.standard_normal((3, 50)))
    frame_a = normalize(cross(k, rng.standard_normal((3, 50))))
    frame_b = normalize(cross(k, rng.standard_normal((3, 50))))
    psi = rng.uniform(0, np.pi, 50)
    axis = np.cos(psi) * frame_a + np.sin(psi) * cross(k, frame_a)
    stokes = np.stack([np.ones(50), np.cos(2 * psi), np.sin(2 * psi), np.zeros(50)])[:, None, :]
    in_b = rotate_stokes(stokes, frame_a, frame_b, k)
    found = _axis_in_frame(in_b, frame_b, k)
    np.testing.assert_allclose(np.abs(np.sum(found * axis, axis=0)), 1.0, atol=1e-9)  # the same line
    np.testing.assert_allclose(in_b[0], stokes[0]) and np.testing.assert_allclose(np.hypot(in_b[1], in_b[2]), 1.0)


def test_stokes_in_the_image_are_the_projection_of_the_polarization_axis():
    rig = StereoRig(9, 7, 6.0, 0.1)
    d = rig.ray_directions().astype(np.float64)
    frame = normalize(cross(d, np.array([[0.3], [-1.0], [0.2]])))
    psi = np.linspace(0.0, np.pi, d.shape[1])
    stokes = np.stack([np.full_like(psi, 2.0), 0.5 * np.cos(2 * psi), 0.5 * np.sin(2 * psi), 0 * psi])[:, None]
    image = stokes_to_image(stokes, frame, d)
    axis = np.cos(psi) * frame + np.sin(psi) * cross(-d, frame)
    cos2, sin2 = image_angle_cos_sin(axis, d)
    np.testing.assert_allclose(image[:, 0], np.stack([np.full_like(psi, 2.0), 0.5 * cos2, 0.5 * sin2]), atol=1e-6)


# ---------------------------------------------------------------------------- the renderer
UNIFORM = Environment(surround=np.ones(1, np.float32), sky=np.zeros(1, np.float32), sky_elevation=np.pi / 2,
                      gradient=0.0)


@pytest.mark.parametrize("shape, size", [("box", (0.25, 0.2, 0.3)), ("prism", (0.25, 0.2, 0.3)),
                                         ("ellipsoid", (0.25, 0.2, 0.3)), ("box", (0.01, 0.3, 0.3))])
def test_glass_in_a_uniform_environment_is_unpolarized_and_as_bright_as_it(shape, size):
    """All light comes from an even unpolarized surround and a clear dielectric neither absorbs
    nor emits, so every interface's reflected and refracted parts add back up: S0 = the
    surround's radiance and no polarization, whatever the shape and orientation. It holds only
    where each interface polarizes in its own plane of incidence; the earlier model, which put
    all of a pixel in the first hit's plane, lost light and polarized it."""
    rig = StereoRig(64, 48, 64.0, 0.1)
    solid = Convex(shape, np.array([0.0, 0.0, 1.0]), random_rotation(np.random.default_rng(3)), np.array(size))
    view = render_view(_glass_alone(rig, solid, UNIFORM), "left")
    glass = view.object_index == 0
    stokes = view.stokes[:, 0]
    assert glass.sum() > 300
    assert np.median(stokes[0][glass]) == pytest.approx(1.0, abs=0.005)
    assert np.percentile(stokes[0][glass], 10) > 0.98
    assert np.median(dolp(stokes)[glass]) < 0.003 and np.percentile(dolp(stokes)[glass], 90) < 0.01
    if shape == "box" and size[0] > 0.1:
        old = render_view(_glass_alone(rig, solid, UNIFORM, "shared-plane"), "left").stokes[:, 0]
        assert np.median(old[0][glass]) < 0.97 and np.percentile(dolp(old)[glass], 90) > 0.01


def test_a_tilted_plate_transmits_the_closed_form_shares_of_s_and_p(monkeypatch):
    """Through a plane-parallel plate every internal reflection counts: unpolarized light of
    radiance L leaves with (1 - R)/(1 + R)·L/2 of each of s and p (R = Rs or Rp at the
    incidence). Plate yawed by 40°, so p is image-horizontal; the sky is black and the mirror
    directions look back at it, so only the bright wall behind is seen."""
    monkeypatch.setattr(render, "MIN_INTERNAL_REFLECTANCE", 1e-7)  # follow every order
    rig = StereoRig(41, 31, 40.0, 0.1)
    theta = np.radians(40.0)
    plate = Convex("box", np.array([0.0, 0.0, 2.0]), _yaw_pitch(theta, 0.0), np.array([0.5, 0.5, 0.02]))
    bright = SceneObject(Plane.through([0.0, 0.0, 5.0], [0.0, 0.0, -1.0]), Material("diffuse", depolarization=0.0),
                         "wall")  # albedo 0.5 x ambient 2.5 x 0.8 = radiance 1
    black = Environment(surround=np.zeros(1, np.float32), sky=np.zeros(1, np.float32), sky_elevation=np.pi / 2)
    stokes = render_view(_glass_alone(rig, plate, black, "mueller", False, bright), "left").stokes[:, 0, 15, 20]
    rs, rp = (r[0] for r in fresnel_reflectance(np.array([np.cos(theta)]), 1.0, 1.5))
    i_s, i_p = 0.5 * (1 - rs) / (1 + rs), 0.5 * (1 - rp) / (1 + rp)
    assert stokes[0] == pytest.approx(i_s + i_p, abs=2e-5)
    assert stokes[1] == pytest.approx(i_p - i_s, abs=2e-5) and abs(stokes[2]) < 1e-5


def _box_scene_for_mitsuba(polarization: str):
    width, height = MITSUBA_SIZE
    rig = StereoRig(width, height, (width / 2) / np.tan(np.radians(MITSUBA_FOV) / 2), 0.1)
    box = Convex("box", np.array([0.0, 0.0, 4.0]), _yaw_pitch(0.5, 0.2), np.array([0.5, 0.6, 0.4]))
    wall = SceneObject(Plane.through([0.0, 0.0, 7.0], [0.0, 0.0, -1.0]), Material("diffuse", depolarization=0.0),
                       "wall")
    sky = Environment(surround=np.zeros(1, np.float32), sky=np.array([0.3], np.float32), sky_elevation=-2.0)
    return _glass_alone(rig, box, sky, polarization, False, wall)


def test_a_tilted_glass_box_matches_mitsuba_polarized_path_tracer():
    """A box seen through pairs of non-parallel faces, before a bright unpolarized wall under a dim
    sky, in Mitsuba 3 (full path tracing, scalar_spectral_polarized) and in the generator: the
    mean S0 and the mean normalized Stokes over the box agree (averages over the box, so Monte
    Carlo noise does not bias them); the earlier shared-plane model is far off."""
    matrix = np.eye(4)
    flip = np.diag([1.0, -1.0, -1.0])  # the generator's camera frame to Mitsuba's world
    matrix[:3, :3] = flip @ _yaw_pitch(0.5, 0.2) @ np.diag([0.5, 0.6, 0.4])
    reference = mitsuba_stokes({
        "box": lambda t: {"type": "cube", "to_world": t(matrix.tolist()),
                          "bsdf": {"type": "dielectric", "int_ior": 1.5, "ext_ior": 1.0}},
        "wall": lambda t: {"type": "rectangle", "to_world": t().translate([0, 0, -3]).scale(1e4),
                           "emitter": {"type": "area", "radiance": {"type": "rgb", "value": 1.0}}},
        "sky": {"type": "constant", "radiance": {"type": "rgb", "value": 0.3}},
    }, max_depth=12, spp=256)
    ours = render_view(_box_scene_for_mitsuba("mueller"), "left")
    old = render_view(_box_scene_for_mitsuba("shared-plane"), "left").stokes[:, 0]
    box = ours.object_index == 1
    box[[0, -1]], box[:, [0, -1]] = False, False
    assert box.sum() > 300
    ref, new = reference[:, box], ours.stokes[:, 0][:, box]
    assert new[0].mean() == pytest.approx(ref[0].mean(), rel=0.02)
    normalized = [np.array([s[1].mean(), s[2].mean()]) / s[0].mean() for s in (ref, new, old[:, box])]
    assert np.abs(normalized[1] - normalized[0]).max() < 0.01
    assert np.abs(normalized[2] - normalized[0]).max() > 0.03
