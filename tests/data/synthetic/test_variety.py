"""What the generator draws: panes and slabs at any orientation, prisms, lighting families, and the
config fields that keep earlier data sets reproducible."""

import dataclasses

import numpy as np
import pytest

from polstereo.data.synthetic.config import (EARLIER_DEFAULTS, LIGHTING_FAMILIES, SyntheticConfig)
from polstereo.data.synthetic.generate import generate_sample, sample_rng
from polstereo.data.synthetic.geometry import Convex
from polstereo.data.synthetic.scene import (SLAB_THICKNESS, Environment, direction_of, emitter_lights,
                                            random_lighting, random_scene, tilted_rotation)
from polstereo.errors import PolstereoError

TINY = SyntheticConfig(width=64, height=48, noise=False, seed=3)


def _flat_glass(config: SyntheticConfig, scenes: int):
    """(object, view ray to its centre) of every glass object in ``scenes`` random scenes."""
    found = []
    for i in range(scenes):
        scene = random_scene(config, sample_rng(config.seed, i))
        found += [(obj, obj.surface.center / np.linalg.norm(obj.surface.center)) for obj in scene.objects
                  if obj.material.kind == "glass"]
    return found


# ---------------------------------------------------------------------------- orientations
def test_tilted_rotation_is_a_rotation_with_its_normal_at_the_drawn_angle_to_the_view():
    rng = np.random.default_rng(0)
    for _ in range(50):
        view = rng.standard_normal(3) + [0.0, 0.0, 4.0]
        view /= np.linalg.norm(view)
        rotation, tilt = tilted_rotation(rng, view, 1.5)
        np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
        assert np.linalg.det(rotation) == pytest.approx(1.0)
        assert np.arccos(-rotation[:, 0] @ view) == pytest.approx(abs(tilt), abs=1e-9)


def test_panes_and_slabs_turn_any_way_with_a_share_near_brewster_and_a_share_strongly_tilted():
    config = dataclasses.replace(TINY, glass=("pane", "slab"), transparent=(3, 3), opaque=(0, 0))
    tilts, brewster, normals = [], [], []
    for obj, view in _flat_glass(config, 40):
        normal = obj.surface.rotation[:, 0]
        tilts.append(np.degrees(np.arccos(abs(normal @ view))))
        brewster.append(np.degrees(np.arctan(obj.material.ior)))
        normals.append(normal * np.sign(-normal[2]))
    tilts, brewster, normals = np.array(tilts), np.array(brewster), np.array(normals)
    near_brewster = np.abs(tilts - brewster) < 6.0
    assert 0.2 < near_brewster.mean() < 0.5
    assert 0.2 < (tilts > 60.0).mean() < 0.5 and tilts.max() < 90.0
    assert (tilts < 30.0).mean() > 0.1
    # yaw and pitch: the normals lean left and right, up and down, beyond the old ±0.9 / ±0.3 rad
    yaw, pitch = np.arctan2(-normals[:, 0], -normals[:, 2]), np.arcsin(normals[:, 1])
    assert yaw.min() < -0.9 and yaw.max() > 0.9 and pitch.min() < -0.5 and pitch.max() > 0.5


def test_facing_panes_stay_within_the_earlier_yaw_and_pitch():
    config = dataclasses.replace(TINY, glass=("pane",), transparent=(3, 3), opaque=(0, 0), pane_orientation="facing")
    for obj, _ in _flat_glass(config, 10):
        normal = obj.surface.rotation[:, 0]  # the thin axis, towards the camera
        assert normal[2] < 0 and np.arccos(-normal[2]) <= np.arccos(np.cos(0.9) * np.cos(0.3)) + 1e-9
        assert abs(np.arcsin(normal[1])) <= 0.3 + 1e-9


def test_slabs_are_thick_boxes_and_samples_record_them():
    config = dataclasses.replace(TINY, glass=("slab",), transparent=(2, 2), opaque=(0, 0))
    for obj, _ in _flat_glass(config, 6):
        ratio = obj.surface.size[0] / obj.surface.size[1:].min()
        assert obj.glass_kind == "slab" and obj.surface.shape == "box"
        assert SLAB_THICKNESS[0] / 1.2 <= ratio <= SLAB_THICKNESS[1] / 0.6
    kinds = {kind for i in range(4) for kind in generate_sample(config, sample_rng(3, i)).glass_kinds}
    assert kinds == {"slab"}


@pytest.mark.parametrize("prisms", [True, False])
def test_solid_glass_includes_prisms_only_when_asked(prisms):
    config = dataclasses.replace(TINY, glass=("solid",), transparent=(3, 3), opaque=(0, 0), prisms=prisms)
    kinds = {obj.glass_kind for obj, _ in _flat_glass(config, 12)}
    assert ("solid-prism" in kinds) == prisms and "solid-box" in kinds


def test_the_unit_prism_is_entered_and_left_through_its_faces():
    """A triangle with a vertex on +y (apothem 1/2) times |z| <= 1, here scaled by 2 and placed at z = 5."""
    prism = Convex("prism", np.array([0.0, 0.0, 5.0]), np.eye(3), np.full(3, 2.0))
    along_axis = prism.interval(np.zeros((3, 1)), np.array([[0.0], [0.0], [1.0]]))
    assert (along_axis[0][0], along_axis[1][0]) == pytest.approx((3.0, 7.0))
    upwards = prism.interval(np.array([[0.0], [-5.0], [5.0]]), np.array([[0.0], [1.0], [0.0]]))
    assert (upwards[0][0], upwards[1][0]) == pytest.approx((4.0, 7.0))  # the bottom side at y = -1, the vertex at 2
    np.testing.assert_allclose(prism.normal_at(np.array([[0.0], [-1.0], [5.0]]))[:, 0], [0.0, -1.0, 0.0], atol=1e-12)
    side = prism.normal_at(np.array([[0.5 * np.sqrt(3) / 2], [0.5 * 0.5], [5.0]]))[:, 0]  # on the upper right side
    np.testing.assert_allclose(side, [np.cos(np.pi / 6), np.sin(np.pi / 6), 0.0], atol=1e-12)
    assert np.isinf(prism.hit_distance(np.array([[3.0], [0.0], [0.0]]), np.array([[0.0], [0.0], [1.0]]))[0])


# ---------------------------------------------------------------------------- lighting
@pytest.mark.parametrize("family", LIGHTING_FAMILIES)
def test_each_lighting_family_lights_diffuse_surfaces_from_where_its_lamps_are(family):
    environment, directions, strengths, ambient = random_lighting(np.random.default_rng(4), family, 1)
    assert len(directions) == len(environment.windows) and (ambient > 0).all()
    for (a0, a1, e0, e1), radiance, direction in zip(environment.windows, environment.window_radiance, directions):
        assert -np.pi <= a0 < a1 <= np.pi
        assert environment.radiance(direction[:, None].astype(np.float32))[0, 0] > radiance[0]  # inside the box
    if family == "uniform":
        assert len(directions) == 0 and environment.gradient <= 0.1
        around = environment.radiance(np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]).T)
        assert around.max() / around.min() <= 1.1 + 1e-6


def test_a_window_lights_a_facing_white_surface_with_its_radiance_times_solid_angle_over_pi():
    window = Environment(surround=np.zeros(1, np.float32), sky=np.zeros(1, np.float32), sky_elevation=np.pi / 2,
                         windows=np.array([[0.2, 0.6, 0.1, 0.3]]), window_radiance=np.array([[5.0]], np.float32))
    directions, strengths = emitter_lights(window)
    np.testing.assert_allclose(directions[0], direction_of(0.4, 0.2), atol=1e-6)
    assert strengths[0, 0] == pytest.approx(5.0 * 0.4 * (np.sin(0.3) - np.sin(0.1)) / np.pi, rel=1e-5)


def test_lamps_across_azimuth_pi_are_split_so_the_environment_shows_all_of_them():
    for seed in range(30):
        environment, *_ = random_lighting(np.random.default_rng(seed), "area-lamp", 1)
        assert (environment.windows[:, 0] >= -np.pi).all() and (environment.windows[:, 1] <= np.pi).all()
        behind = direction_of(np.pi - 1e-3, environment.windows[:, 2:].mean())  # straight towards the camera side
        covered = (environment.windows[:, 0] <= np.pi - 1e-3) & (np.pi - 1e-3 <= environment.windows[:, 1])
        if covered.any():
            assert environment.radiance(behind[:, None].astype(np.float32))[0, 0] > 1.0


# ---------------------------------------------------------------------------- config and compatibility
def test_a_provenance_record_from_before_the_mueller_renderer_means_the_old_generator():
    record = TINY.to_dict()
    assert SyntheticConfig.from_dict(record) == TINY
    for key in ("polarization", "pane_orientation", "prisms", "lighting"):
        del record[key]
    old = SyntheticConfig.from_dict(record)
    assert (old.polarization, old.pane_orientation, old.prisms, old.lighting) == (
        "shared-plane", "facing", False, ("room-env",))
    assert {k: v for k, v in EARLIER_DEFAULTS.items() if k not in ("glass", "textures")} == {
        "polarization": "shared-plane", "pane_orientation": "facing", "prisms": False, "lighting": ["room-env"]}


def test_new_configs_default_to_the_new_generator():
    config = SyntheticConfig()
    assert (config.polarization, config.pane_orientation, config.prisms) == ("mueller", "any", True)
    assert config.lighting == LIGHTING_FAMILIES and "slab" in config.glass


@pytest.mark.parametrize("change, message", [
    ({"polarization": "jones"}, "polarization model"), ({"pane_orientation": "sideways"}, "pane orientation"),
    ({"lighting": ()}, "lighting"), ({"lighting": ("window-env", "disco")}, "lighting"),
    ({"glass": ("slab", "brick")}, "glass kinds"),
])
def test_bad_new_fields_are_usage_errors(change, message):
    with pytest.raises(PolstereoError, match=message):
        dataclasses.replace(TINY, **change).validated()


def test_the_earlier_renderer_and_lighting_still_make_their_scenes_from_a_new_scene_mix():
    """The old fields only switch behaviour: with them a scene of the new mix renders, deterministically."""
    config = dataclasses.replace(TINY, polarization="shared-plane", lighting=("room-env",))
    a, b = (generate_sample(config, sample_rng(5, 0)) for _ in range(2))
    assert np.array_equal(a.left, b.left) and a.lighting == "room-env"
