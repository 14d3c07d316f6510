"""Physics of the ray caster: geometry of the ground truth, Fresnel polarization, stereo consistency."""

import dataclasses

import cv2
import numpy as np
import pytest

from polstereo.data.synthetic.config import SyntheticConfig
from polstereo.data.synthetic.generate import sample_rng
from polstereo.data.synthetic.geometry import Convex, Hollow, Plane
from polstereo.data.synthetic.optics import diffuse_dolp, reflection_dolp, refract
from polstereo.data.synthetic.render import render_pair, render_view
from polstereo.data.synthetic.scene import (MATERIAL_KINDS, Environment, Material, Scene, SceneObject, StereoRig,
                                            random_scene, vessel)
from polstereo.data.synthetic.textures import Texture
from polstereo.polar.stokes import aolp, dolp, normalized_stokes
from tests.data.synthetic.scenes import (MITSUBA_FOV, MITSUBA_SIZE, away_from_depth_edges, checker_texture,
                                         mitsuba_stokes, scene_of, sphere, wall, warp_right_to_left)

RIG = StereoRig(96, 64, 96.0, 0.1)
ODD_RIG = StereoRig(97, 65, 97.0, 0.1)  # principal point on a pixel centre: exact symmetry lines
GLASS = Material("glass", ior=1.5)
MIRROR_ONLY_GLASS = Material("glass", ior=1.5, tint=np.zeros(1, np.float32))  # transmission blacked out


def _sphere_hits(rig: StereoRig, center: np.ndarray, radius: float):
    """Analytic first hits of the left camera's rays on a sphere: (hit mask, cos incidence), ``(H, W)``."""
    d = rig.ray_directions()
    b = center @ d
    disc = b * b - (center @ center - radius ** 2)
    t = b - np.sqrt(np.maximum(disc, 0))
    normal = (t * d - center[:, None]) / radius
    cos_i = -(normal * d).sum(axis=0)
    return (disc > 0).reshape(rig.height, rig.width), cos_i.reshape(rig.height, rig.width)


def _angle_error_deg(a: np.ndarray, b_deg: float) -> np.ndarray:
    diff = (np.degrees(a) - b_deg) % 180.0
    return np.minimum(diff, 180.0 - diff)


# ---------------------------------------------------------------------------- ground-truth geometry
def test_fronto_parallel_plane_disparity_is_focal_times_baseline_over_depth():
    pair = render_pair(scene_of(RIG, wall(RIG, disparity=7.0)))
    depth = RIG.depth_for_disparity(7.0)
    np.testing.assert_allclose(pair.disparity, RIG.focal_px * RIG.baseline_m / depth, rtol=1e-5)
    assert not pair.transparent.any()


def test_slanted_plane_disparity_is_affine_in_x_and_y():
    normal = np.array([0.4, -0.25, -1.0])
    pair = render_pair(scene_of(RIG, wall(RIG, disparity=8.0, normal=normal / np.linalg.norm(normal))))
    y, x = np.mgrid[0:RIG.height, 0:RIG.width]
    design = np.stack([x.ravel(), y.ravel(), np.ones(x.size)], axis=1)
    coeffs, *_ = np.linalg.lstsq(design, pair.disparity.ravel().astype(np.float64), rcond=None)
    residual = np.abs(design @ coeffs - pair.disparity.ravel())
    assert residual.max() < 1e-3
    assert abs(coeffs[0]) > 0.01 and abs(coeffs[1]) > 0.01  # really slanted both ways
    assert coeffs[2] + coeffs[0] * RIG.cx + coeffs[1] * RIG.cy == pytest.approx(8.0, rel=1e-4)


def test_ground_truth_is_the_glass_surface_not_what_is_seen_through_it():
    pair = render_pair(scene_of(ODD_RIG, wall(ODD_RIG, 3.0), sphere(ODD_RIG, 20.0, 0.15, GLASS)))
    cy, cx = int(ODD_RIG.cy), int(ODD_RIG.cx)
    assert pair.transparent[cy, cx]
    assert pair.disparity[cy, cx] == pytest.approx(20.0, rel=1e-4)
    assert pair.disparity[0, 0] == pytest.approx(3.0, rel=1e-4)  # the wall beside it


def test_transparent_mask_is_where_the_first_hit_is_glass():
    radius = 0.15
    scene = scene_of(ODD_RIG, wall(ODD_RIG, 3.0), sphere(ODD_RIG, 20.0, radius, GLASS))
    pair = render_pair(scene)
    hits, _ = _sphere_hits(ODD_RIG, scene.objects[1].surface.center, radius)
    assert (pair.transparent != hits).sum() <= 2  # at most a rounding difference on the rim
    assert hits.sum() > 500
    assert (pair.kind[~hits] == MATERIAL_KINDS.index("diffuse")).all()


def test_occlusion_mask_marks_points_hidden_from_or_outside_the_right_camera():
    opaque = Material("diffuse", checker_texture(RIG, 0.5, 4.0))
    pair = render_pair(scene_of(RIG, wall(RIG, 4.0), sphere(RIG, 24.0, 0.1, opaque)))
    x = np.arange(RIG.width)[None, :]
    # A wall point is hidden when the right camera's first hit where it should appear is nearer.
    x_right = np.rint(x - pair.disparity).astype(int)
    inside = x_right >= 0
    right_depth = np.take_along_axis(pair.right.depth, np.clip(x_right, 0, RIG.width - 1), axis=1)
    hidden = inside & (right_depth < pair.left.depth * 0.99)
    on_wall = (pair.kind == MATERIAL_KINDS.index("diffuse")) & (pair.left.object_index == 0)
    assert hidden[on_wall].sum() > 50
    disagree = (pair.occlusion != (hidden | ~inside)) & on_wall
    assert disagree.sum() <= 0.05 * hidden[on_wall].sum()  # only sub-pixel boundary cases
    assert pair.occlusion[:, :3].all()  # the left border is outside the right image (d = 4 px)
    assert not pair.occlusion[:, -3:].any()


# ---------------------------------------------------------------------------- stereo consistency
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warping_right_view_by_ground_truth_reproduces_left_on_lambertian_pixels(seed):
    # the scenes of before photo textures, prisms, tilted panes and lighting families (their box edges, unmasked
    # shading creases, keep the 99th percentile in bounds); photo textures have their own test in test_photos.py
    config = SyntheticConfig(width=96, height=64, noise=False, textures="procedural", prisms=False,
                             pane_orientation="facing", lighting=("room-env",))
    pair = render_pair(random_scene(config, sample_rng(seed, 0)))
    left, right = pair.left.stokes[0, 0], pair.right.stokes[0, 0]
    diffuse = pair.kind == MATERIAL_KINDS.index("diffuse")
    lambertian = diffuse & ~pair.occlusion & away_from_depth_edges(pair.disparity)
    assert lambertian.sum() > 1000
    error = np.abs(left - warp_right_to_left(right, pair.disparity))[lambertian]
    assert error.mean() < 0.01 * left[lambertian].mean()
    assert np.percentile(error, 99) < 0.1 * left[lambertian].mean()


def test_glass_intensity_disagrees_under_ground_truth_warp_while_polarization_agrees_better():
    """Through glass the intensity shows the refracted (moving) background; the polarization
    follows the surface. Errors are relative to each signal's spread over the glass."""
    scene = scene_of(RIG, wall(RIG, 4.0), sphere(RIG, 24.0, 0.12, GLASS))
    pair = render_pair(scene)
    glass = pair.transparent & ~pair.occlusion & away_from_depth_edges(pair.disparity)
    assert glass.sum() > 400
    left, right = pair.left.stokes[:, 0], pair.right.stokes[:, 0]
    intensity_error = (np.abs(left[0] - warp_right_to_left(right[0], pair.disparity))[glass].mean()
                       / left[0][glass].std())
    pol_left, pol_right = normalized_stokes(left), normalized_stokes(right)
    pol_error = np.mean([np.abs(pol_left[k] - warp_right_to_left(pol_right[k], pair.disparity))[glass].mean()
                         / pol_left[k][glass].std() for k in range(2)])
    assert intensity_error > 0.5
    assert pol_error < 0.7 * intensity_error


# ---------------------------------------------------------------------------- polarization of glass
def test_glass_reflection_is_polarized_perpendicular_to_the_plane_of_incidence():
    """On symmetry lines of a sphere on the optical axis the plane of incidence is known:
    horizontal line -> AoLP 90 deg, vertical -> 0, up-right diagonal -> 135, up-left -> 45."""
    scene = scene_of(ODD_RIG, sphere(ODD_RIG, 20.0, 0.15, MIRROR_ONLY_GLASS),
                     environment=Environment.uniform(np.array([1.0], np.float32)))
    stokes = render_view(scene, "left").stokes[:, 0]
    angle = aolp(stokes)
    cy, cx = int(ODD_RIG.cy), int(ODD_RIG.cx)
    k = np.r_[-18:-2, 3:19]
    assert _angle_error_deg(angle[cy, cx + k], 90.0).max() < 0.1
    assert _angle_error_deg(angle[cy + k, cx], 0.0).max() < 0.1
    k = np.arange(3, 13)
    assert _angle_error_deg(angle[cy - k, cx + k], 135.0).max() < 0.1
    assert _angle_error_deg(angle[cy - k, cx - k], 45.0).max() < 0.1


def test_glass_reflection_dolp_follows_the_fresnel_equations():
    radius = 0.15
    scene = scene_of(ODD_RIG, sphere(ODD_RIG, 20.0, radius, MIRROR_ONLY_GLASS),
                     environment=Environment.uniform(np.array([1.0], np.float32)))
    degree = dolp(render_view(scene, "left").stokes[:, 0])
    hits, cos_i = _sphere_hits(ODD_RIG, scene.objects[0].surface.center, radius)
    np.testing.assert_allclose(degree[hits], reflection_dolp(cos_i[hits], 1.5), atol=1e-3)
    assert degree[hits].max() > 0.99  # the Brewster ring is in view


def test_diffuse_polarization_is_weak_and_parallel_to_the_projected_normal():
    radius = 0.15
    matte = Material("diffuse", None, ior=1.5, depolarization=1.0)
    scene = scene_of(ODD_RIG, sphere(ODD_RIG, 20.0, radius, matte),
                     environment=Environment.uniform(np.array([1.0], np.float32)))
    stokes = render_view(scene, "left").stokes[:, 0]
    hits, cos_e = _sphere_hits(ODD_RIG, scene.objects[0].surface.center, radius)
    np.testing.assert_allclose(dolp(stokes)[hits], diffuse_dolp(cos_e[hits], 1.5), atol=1e-4)
    assert np.median(dolp(stokes)[hits]) < 0.05
    angle = aolp(stokes)
    cy, cx = int(ODD_RIG.cy), int(ODD_RIG.cx)
    k = np.r_[-18:-2, 3:19]
    assert _angle_error_deg(angle[cy, cx + k], 0.0).max() < 0.1
    assert _angle_error_deg(angle[cy + k, cx], 90.0).max() < 0.1


def test_dark_glossy_coat_reflecting_bright_windows_polarizes_more_than_matte_paint():
    dark = checker_texture(ODD_RIG, 0.5, 8.0, dark=0.05, light=0.05)
    degrees = []
    for material in (Material("diffuse", dark, ior=1.5), Material("glossy", dark, ior=1.5, specular=1.0)):
        view = render_view(scene_of(ODD_RIG, sphere(ODD_RIG, 20.0, 0.15, material)), "left")
        degrees.append(np.percentile(dolp(view.stokes[:, 0])[view.object_index == 0], 90))
    assert degrees[1] > 0.3 and degrees[1] > 2 * degrees[0]


def test_glass_under_a_uniform_environment_is_nearly_unpolarized():
    uniform = Environment.uniform(np.array([1.0], np.float32))
    clear = render_view(scene_of(ODD_RIG, sphere(ODD_RIG, 20.0, 0.15, GLASS), environment=uniform), "left")
    mirror = render_view(scene_of(ODD_RIG, sphere(ODD_RIG, 20.0, 0.15, MIRROR_ONLY_GLASS), environment=uniform), "left")
    glass = np.isfinite(clear.depth)
    assert np.median(dolp(clear.stokes[:, 0])[glass]) < 0.05
    assert np.median(dolp(mirror.stokes[:, 0])[glass]) > 0.3


def test_glass_in_a_structured_environment_has_modest_polarization():
    scene = scene_of(RIG, wall(RIG, 4.0), sphere(RIG, 24.0, 0.12, GLASS))
    view = render_view(scene, "left")
    degree = dolp(view.stokes[:, 0])[view.object_index == 1]
    assert 0.02 < np.median(degree) < 0.4


def test_reflection_only_glass_sphere_matches_mitsuba_polarized_path_tracer():
    """Mitsuba 3's stokes integrator on the same geometry: normalized Stokes (so AoLP sign and
    Fresnel degree) agree pixel by pixel inside the silhouette."""
    reference = mitsuba_stokes({
        "sphere": {"type": "sphere", "radius": 1.0,
                   "bsdf": {"type": "dielectric", "int_ior": 1.5, "specular_transmittance": 0.0}},
        "sky": {"type": "constant", "radiance": {"type": "rgb", "value": 0.5}},
    }, max_depth=3, spp=128)
    width, height, fov = *MITSUBA_SIZE, MITSUBA_FOV

    rig = StereoRig(width, height, (width / 2) / np.tan(np.radians(fov) / 2), 0.1)
    mirror = Material("glass", ior=1.5, tint=np.zeros(1, np.float32))
    ours = scene_of(rig, sphere(rig, rig.focal_px * 0.1 / 3.0, 1.0, mirror),
                    environment=Environment.uniform(np.array([0.5], np.float32)))
    view = render_view(ours, "left")
    inside = cv2.erode(np.isfinite(view.depth).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    inside &= reference[0] > 1e-4  # Monte Carlo pixels where reflection was sampled
    assert inside.sum() > 500
    difference = np.abs(normalized_stokes(reference) - normalized_stokes(view.stokes[:, 0]))[:, inside]
    assert difference.mean() < 0.03 and difference.max() < 0.2


# ---------------------------------------------------------------------------- thin-walled glass
def _shell_object(rig: StereoRig, near_disparity: float, radius: float, wall_m: float, material: Material):
    solid = sphere(rig, near_disparity, radius, material)
    outer = solid.surface
    inner = Convex("ellipsoid", outer.center, np.eye(3), outer.size - wall_m)
    return SceneObject(Hollow(outer, (inner,)), material, "shell")


def test_head_on_through_a_thin_shell_the_background_loses_the_four_interfaces_fresnel_share():
    """Dark surroundings (no reflections): the centre pixel sees the wall through four
    interfaces at normal incidence, each transmitting 1 - ((n-1)/(n+1))² = 0.96 for n = 1.5."""
    dark = Environment.uniform(np.zeros(1, np.float32))
    background = scene_of(ODD_RIG, wall(ODD_RIG, 3.0), environment=dark)
    shelled = scene_of(ODD_RIG, wall(ODD_RIG, 3.0), _shell_object(ODD_RIG, 20.0, 0.15, 0.005, GLASS),
                       environment=dark)
    cy, cx = int(ODD_RIG.cy), int(ODD_RIG.cx)
    seen = render_view(shelled, "left").stokes[:, 0, cy, cx]
    bare = render_view(background, "left").stokes[0, 0, cy, cx]
    assert seen[0] / bare == pytest.approx(0.96 ** 4, rel=1e-4)
    assert np.hypot(seen[1], seen[2]) < 1e-6 * seen[0]  # unpolarized head-on


def _block_matching(left: np.ndarray, right: np.ndarray, max_disparity: int = 32) -> np.ndarray:
    """Integer disparity of least 7x7 mean absolute difference: what plain intensity stereo reads."""
    costs = [cv2.boxFilter(np.abs(left - warp_right_to_left(right, np.full(left.shape, float(d), np.float32))), -1,
                           (7, 7)) for d in range(max_disparity)]
    return np.argmin(costs, axis=0)


def test_through_a_thin_wall_intensity_stereo_reads_the_background_not_the_glass():
    """The failure thin-walled glass causes: block matching inside a 3 mm shell finds the
    wall behind it (disparity 4; a thin shell is a weak lens, so within a few px) instead of
    the shell's surface (20-24 px); a solid sphere of the same size bends the background
    so much that matching finds neither."""
    depth = RIG.depth_for_disparity(4.0)
    noise = Texture("noise", feature_m=4 * depth / RIG.focal_px, rotation=np.eye(3), offset=np.zeros(3),
                    color0=np.array([0.1]), color1=np.array([0.9]), sharpness=3.0, detail=0.3, planar=True)
    near_background = {}
    for name, obj in (("thin", _shell_object(RIG, 24.0, 0.12, 0.003, GLASS)), ("solid", sphere(RIG, 24.0, 0.12, GLASS))):
        pair = render_pair(scene_of(RIG, wall(RIG, 4.0, texture=noise), obj))
        inside = pair.transparent & ~pair.occlusion & away_from_depth_edges(pair.disparity, margin=4)
        found = _block_matching(pair.left.stokes[0, 0], pair.right.stokes[0, 0])[inside]
        assert pair.disparity[inside].min() > 19.0
        near_background[name] = np.mean(np.abs(found - 4) <= 1)
        if name == "thin":
            assert abs(np.median(found) - 4) <= 3
    assert near_background["thin"] > 0.3 > 0.15 > near_background["solid"]


def test_random_scenes_with_each_glass_kind_render_glass_of_that_kind():
    for kind in ("thin", "pane"):
        config = SyntheticConfig(width=64, height=48, transparent=(2, 2), opaque=(0, 0), glass=(kind,))
        scene = random_scene(config, sample_rng(3, 0))
        glass = [obj.surface for obj in scene.objects if obj.material.kind == "glass"]
        assert len(glass) == 2
        assert all(isinstance(s, Hollow) for s in glass) if kind == "thin" else all(
            isinstance(s, Convex) and s.shape == "box" and s.size.min() < 0.05 * s.size.max() for s in glass)


@pytest.mark.parametrize("polarization", ["mueller", "shared-plane"])
def test_a_pane_reflects_off_both_of_its_sides(polarization):
    """Head-on, a pane under a uniform sky before a black wall reflects R + (1 - R)² R
    (0.0769 of the sky for n = 1.5), not the first surface's R = 0.04 alone. The earlier
    model ("shared-plane") followed that reflection in thin-walled glass only."""
    black = wall(ODD_RIG, 3.0, texture=checker_texture(ODD_RIG, 1.0, 6.0, dark=0.0, light=0.0))
    depth = ODD_RIG.depth_for_disparity(20.0)
    pane = Convex("box", np.array([0.0, 0.0, depth + 0.003]), np.eye(3), np.array([0.5, 0.5, 0.003]))
    sky = Environment(surround=np.zeros(1, np.float32), sky=np.ones(1, np.float32), sky_elevation=-2.0)  # uniform
    cy, cx = int(ODD_RIG.cy), int(ODD_RIG.cx)
    both_sides = 0.04 + 0.96 ** 2 * 0.04
    for thin, expected in ((True, both_sides), (False, both_sides if polarization == "mueller" else 0.04)):
        scene = scene_of(ODD_RIG, black, SceneObject(pane, Material("glass", ior=1.5, thin_wall=thin), "pane"),
                         environment=sky)
        scene = dataclasses.replace(scene, polarization=polarization)
        assert render_view(scene, "left").stokes[0, 0, cy, cx] == pytest.approx(expected, rel=1e-4)


def test_thin_glass_shell_matches_mitsuba_polarized_path_tracer():
    """A 5 %-thick glass shell before a bright wall under a dim uniform sky, in Mitsuba 3
    (nested dielectrics, full path tracing) and in the generator: DoLP and S0 agree ring by
    ring where the reflections look back at the sky (the generator's glass reflects the
    environment only, so the rim, whose reflections would see the wall, is left out)."""
    inner = 0.95
    reference = mitsuba_stokes({
        "outer": {"type": "sphere", "radius": 1.0, "bsdf": {"type": "dielectric", "int_ior": 1.5, "ext_ior": 1.0}},
        "inner": {"type": "sphere", "radius": inner, "bsdf": {"type": "dielectric", "int_ior": 1.0, "ext_ior": 1.5}},
        "wall": lambda t: {"type": "rectangle", "to_world": t().translate([0, 0, -3]).scale(20),
                           "emitter": {"type": "area", "radiance": {"type": "rgb", "value": 1.0}}},
        "sky": {"type": "constant", "radiance": {"type": "rgb", "value": 0.3}},
    }, max_depth=10, spp=256)
    width, height, fov = *MITSUBA_SIZE, MITSUBA_FOV

    rig = StereoRig(width, height, (width / 2) / np.tan(np.radians(fov) / 2), 0.1)
    sky = Environment(surround=np.zeros(1, np.float32), sky=np.array([0.3], np.float32), sky_elevation=-2.0)
    bright_wall = SceneObject(Plane.through([0.0, 0.0, 7.0], [0.0, 0.0, -1.0]), Material("diffuse"), "wall")
    center = np.array([0.0, 0.0, 4.0])
    shell = Hollow(Convex("ellipsoid", center, np.eye(3), np.ones(3)),
                   (Convex("ellipsoid", center, np.eye(3), np.full(3, inner)),))
    scene = Scene(rig, (bright_wall, SceneObject(shell, Material("glass", ior=1.5, thin_wall=True), "shell")), sky,
                  np.zeros((0, 3), np.float32), np.zeros((0, 1), np.float32), np.array([2.5], np.float32))
    ours = render_view(scene, "left").stokes[:, 0]  # the wall: albedo 0.5 x ambient 2.5 x 0.8 = 1.0
    assert ours[0, 0, 0] == pytest.approx(1.0) and reference[0, 0, 0] == pytest.approx(1.0, abs=0.02)
    y, x = np.mgrid[0:height, 0:width]
    r = np.hypot(y - rig.cy, x - rig.cx) / (rig.focal_px / np.sqrt(4.0 ** 2 - 1.0))  # 1 at the silhouette
    for lo, hi in ((0.2, 0.4), (0.4, 0.65)):
        ring = (r >= lo) & (r < hi)
        assert ring.sum() > 50
        dolp_ref, dolp_ours = (dolp(s)[ring].mean() for s in (reference, ours))
        assert dolp_ours == pytest.approx(dolp_ref, abs=0.008)
        assert ours[0][ring].mean() == pytest.approx(reference[0][ring].mean(), rel=0.02)
    assert dolp(reference)[(r >= 0.4) & (r < 0.65)].mean() > 0.03  # polarized enough to compare


def test_a_ray_through_a_pane_leaves_parallel_and_displaced_by_the_plate_formula():
    """Through a plane-parallel plate of thickness t at incidence θ a ray exits parallel to
    itself, shifted sideways by t·sin θ·(1 − cos θ / (n cos θt)) (Snell twice)."""
    n, thickness, theta = 1.5, 0.01, np.radians(40.0)
    pane = Convex("box", np.array([0.0, 0.0, 1.0]), np.eye(3), np.array([1.0, 1.0, thickness / 2]))
    o = np.zeros((3, 1))
    d = np.array([[np.sin(theta)], [0.0], [np.cos(theta)]])
    t_in = pane.hit_distance(o, d)
    p = o + t_in * d
    nrm = pane.normal_at(p)  # outward on the near face: facing the ray
    inner, _ = refract(d, nrm, 1.0 / n)
    _, t_out = pane.interval(p, inner)
    q = p + t_out * inner
    out, tir = refract(inner, -pane.normal_at(q), n)
    assert not tir.any()
    np.testing.assert_allclose(out[:, 0], d[:, 0], atol=1e-12)
    offset = q - (o + d * (q[2] / d[2]))  # from where the undeviated ray crosses the exit face
    shift = np.linalg.norm(offset - d * (offset.T @ d))
    theta_t = np.arcsin(np.sin(theta) / n)
    assert shift == pytest.approx(thickness * np.sin(theta) * (1 - np.cos(theta) / (n * np.cos(theta_t))), rel=1e-9)


def test_a_cups_ground_truth_is_its_outer_wall():
    """The first-surface disparity on a thin-walled cup is that of its outer wall: seen from
    the side, the centre pixel's depth is the cylinder's near side, not the cavity behind."""
    upright = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # local z (the axis) is image-up
    depth = ODD_RIG.depth_for_disparity(20.0)
    radius = 0.1
    cup = vessel("cup", np.array([0.0, 0.0, depth + radius]), upright, radius=radius, height=0.2, wall=0.004)
    pair = render_pair(scene_of(ODD_RIG, wall(ODD_RIG, 3.0), SceneObject(cup, GLASS, "cup")))
    cy, cx = int(ODD_RIG.cy), int(ODD_RIG.cx)
    assert pair.transparent[cy, cx]
    assert pair.disparity[cy, cx] == pytest.approx(20.0, rel=1e-4)
    # across the cup, every glass pixel's depth lies on the outer cylinder
    hit = pair.left.points[:, pair.transparent.ravel()]
    local = np.linalg.inv(upright) @ (hit - cup.outer.center[:, None])
    on_side = np.abs(local[2]) < 0.2 - 1e-3
    np.testing.assert_allclose(np.hypot(local[0], local[1])[on_side], radius, atol=1e-4)
