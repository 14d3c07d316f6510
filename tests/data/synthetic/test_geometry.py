import numpy as np
import pytest

from polstereo.data.synthetic.geometry import Convex, Hollow, Plane, bounding_candidates
from polstereo.data.synthetic.scene import VESSELS, random_rotation, vessel

AXIS_RAY = (np.array([[0.0], [0.0], [0.0]]), np.array([[0.0], [0.0], [1.0]]))  # from the origin along +z


@pytest.mark.parametrize("shape, size, expected", [
    ("ellipsoid", (1.0, 1.0, 1.0), (4.0, 6.0)),
    ("ellipsoid", (1.0, 1.0, 0.5), (4.5, 5.5)),
    ("box", (2.0, 2.0, 0.25), (4.75, 5.25)),
    ("cylinder", (1.0, 1.0, 2.0), (3.0, 7.0)),   # along its axis: through both caps
])
def test_convex_interval_along_the_optical_axis(shape, size, expected):
    solid = Convex(shape, np.array([0.0, 0.0, 5.0]), np.eye(3), np.array(size))
    t0, t1 = solid.interval(*AXIS_RAY)
    assert (t0[0], t1[0]) == pytest.approx(expected)


def test_cylinder_seen_from_the_side_is_entered_through_its_curved_wall():
    axis_along_y = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # columns: local x, y, z in camera axes
    solid = Convex("cylinder", np.array([0.0, 0.0, 5.0]), axis_along_y, np.array([0.5, 0.5, 3.0]))
    t0, t1 = solid.interval(*AXIS_RAY)
    assert (t0[0], t1[0]) == pytest.approx((4.5, 5.5))
    np.testing.assert_allclose(solid.normal_at(np.array([[0.0], [0.0], [4.5]]))[:, 0], [0, 0, -1], atol=1e-12)


def test_a_ray_from_inside_a_solid_exits_at_its_far_side():
    solid = Convex("box", np.array([0.0, 0.0, 0.0]), np.eye(3), np.array([1.0, 2.0, 3.0]))
    t0, t1 = solid.interval(*AXIS_RAY)
    assert t0[0] < 0 < t1[0] == pytest.approx(3.0)
    assert solid.hit_distance(*AXIS_RAY)[0] == pytest.approx(3.0)


def test_missed_rays_have_infinite_distance():
    solid = Convex("ellipsoid", np.array([3.0, 0.0, 5.0]), np.eye(3), np.ones(3))
    assert np.isinf(solid.hit_distance(*AXIS_RAY)[0])
    behind = Convex("ellipsoid", np.array([0.0, 0.0, -5.0]), np.eye(3), np.ones(3))
    assert np.isinf(behind.hit_distance(*AXIS_RAY)[0])


@pytest.mark.parametrize("shape", ["ellipsoid", "box", "cylinder"])
def test_normals_are_outward_unit_vectors_on_rotated_solids(shape):
    rng = np.random.default_rng(3)
    solid = Convex(shape, np.array([0.2, -0.1, 4.0]), random_rotation(rng), np.array([0.5, 0.8, 0.6]))
    d = rng.normal(size=(3, 500)) * 0.05 + np.array([[0.05], [-0.025], [1.0]])
    d /= np.linalg.norm(d, axis=0)
    o = np.zeros((3, 1))
    t = solid.hit_distance(o, d)
    hit = np.isfinite(t)
    assert hit.sum() > 100
    p = o + t[hit] * d[:, hit]
    n = solid.normal_at(p)
    np.testing.assert_allclose(np.linalg.norm(n, axis=0), 1.0, atol=1e-9)
    assert ((p - solid.center[:, None]) * n).sum(axis=0).min() > 0  # outward
    assert (n * d[:, hit]).sum(axis=0).max() < 1e-9                 # seen from outside: facing the camera


def test_plane_hit_distance_and_in_plane_coordinates():
    plane = Plane.through([0.0, 0.0, 2.0], [0.0, 0.0, -1.0])
    d = np.array([[0.0, 0.6], [0.0, 0.0], [1.0, 0.8]])
    t = plane.hit_distance(np.zeros((3, 1)), d)
    np.testing.assert_allclose(t, [2.0, 2.5])
    local = plane.local_coords(t * d)
    np.testing.assert_allclose(np.abs(local[:2, 1]).max(), 1.5)  # 1.5 m off-axis, within the plane
    np.testing.assert_allclose(local[2], 0.0)


def test_a_plane_behind_the_ray_is_missed():
    plane = Plane.through([0.0, 0.0, -2.0], [0.0, 0.0, 1.0])
    assert np.isinf(plane.hit_distance(*AXIS_RAY)[0])


def test_bounding_candidates_keep_every_ray_that_hits_the_solid():
    rng = np.random.default_rng(0)
    solid = Convex("box", np.array([0.0, 0.0, 3.0]), random_rotation(rng), np.array([0.4, 0.2, 0.3]))
    d = np.concatenate([rng.normal(size=(2, 2000)) * 0.2, np.ones((1, 2000))])
    d /= np.linalg.norm(d, axis=0)
    o = np.zeros((3, 1))
    hits = np.flatnonzero(np.isfinite(solid.hit_distance(o, d)))
    candidates = bounding_candidates(solid.center, solid.bounding_radius, o, d, np.full(2000, np.inf))
    assert hits.size > 50 and set(hits) <= set(candidates) and candidates.size < 2000


# ---------------------------------------------------------------------------- thin-walled (Hollow)
def _shell(outer: float = 1.0, inner: float = 0.9, z: float = 5.0) -> Hollow:
    center = np.array([0.0, 0.0, z])
    return Hollow(Convex("ellipsoid", center, np.eye(3), np.full(3, outer)),
                  (Convex("ellipsoid", center, np.eye(3), np.full(3, inner)),))


def test_a_closed_shell_is_crossed_wall_by_wall():
    shell = _shell()
    t0, t1 = shell.interval(*AXIS_RAY)  # from outside: the front wall
    assert (t0[0], t1[0]) == pytest.approx((4.0, 4.1))
    in_cavity = (np.array([[0.0], [0.0], [5.0]]), AXIS_RAY[1])
    t0, t1 = shell.interval(*in_cavity)  # from the middle: the back wall
    assert (t0[0], t1[0]) == pytest.approx((0.9, 1.0))
    assert shell.hit_distance(*in_cavity)[0] == pytest.approx(0.9)
    in_front_wall = (np.array([[0.0], [0.0], [4.05]]), AXIS_RAY[1])
    t0, t1 = shell.interval(*in_front_wall)
    assert t0[0] < 0 < t1[0] == pytest.approx(0.05)
    past = (np.array([[0.0], [0.0], [6.5]]), AXIS_RAY[1])
    assert np.isinf(shell.hit_distance(*past)[0])


def test_shell_normals_point_out_of_the_glass_into_the_cavity_on_the_inner_wall():
    shell = _shell()
    points = np.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [4.0, 4.1, 5.9, 6.0]])
    np.testing.assert_allclose(shell.normal_at(points).T, [[0, 0, -1], [0, 0, 1], [0, 0, -1], [0, 0, 1]],
                               atol=1e-9)


def test_an_open_cup_is_looked_into_through_its_mouth():
    """A cup (cylinder less a cavity poking out of its top) seen along its axis from above:
    the ray passes the opening and first meets glass at the inside of the bottom."""
    axis_to_camera = np.array([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]])  # local z (up) points at the camera
    cup = vessel("cup", np.array([0.0, 0.0, 5.0]), axis_to_camera, radius=0.5, height=1.0, wall=0.05)
    t0, t1 = cup.interval(*AXIS_RAY)
    assert (t0[0], t1[0]) == pytest.approx((5.9, 6.0))  # the bottom, 2 walls thick
    side = (np.array([[0.475], [0.0], [0.0]]), AXIS_RAY[1])  # along the wall itself: through the rim
    t0, t1 = cup.interval(*side)
    assert (t0[0], t1[0]) == pytest.approx((4.0, 6.0))


@pytest.mark.parametrize("kind", VESSELS)
def test_vessels_are_thin_walled_hollow_glass(kind):
    """From the side, a ray through each vessel's middle crosses two thin walls with air between."""
    upright = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # local z (the axis) is image-up
    height = 0.5 if kind == "bowl" else 1.0
    body = vessel(kind, np.array([0.0, 0.0, 5.0]), upright, radius=0.5, height=height, wall=0.02)
    below = 0.1 if kind == "bowl" else 0.0  # a bowl is open above 0.2 x its height
    half_chord = 0.5 * np.sqrt(1 - (below / height) ** 2) if kind in ("bowl", "vase") else 0.5
    o, d = (np.array([[0.0], [below], [0.0]]), AXIS_RAY[1])
    t0, t1 = body.interval(o, d)
    assert t0[0] == pytest.approx(5.0 - half_chord, abs=1e-6) and 0.015 < t1[0] - t0[0] < 0.03
    back0, back1 = body.interval(o + (t1[0] + 0.01) * d, d)
    assert t1[0] + 0.01 + back1[0] == pytest.approx(5.0 + half_chord, abs=1e-6) and 0.015 < back1[0] - back0[0] < 0.03
