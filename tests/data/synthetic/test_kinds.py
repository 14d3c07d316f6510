"""make-synthetic records the glass kinds each sample shows and its lighting family."""

import dataclasses

import numpy as np
import pytest

from polstereo.data.h5 import H5Reader
from polstereo.data.synthetic.config import LIGHTING_FAMILIES, SyntheticConfig
from polstereo.data.synthetic.generate import generate_dataset, generate_sample, sample_rng
from polstereo.data.synthetic.scene import GLASS_OBJECT_KINDS, LIGHTING_FAMILY, random_scene
from polstereo.errors import PolstereoError

TINY = SyntheticConfig(width=32, height=24, transparent=(2, 3), seed=9)


def _samples(config, count=4):
    return [generate_sample(config, sample_rng(config.seed, i)) for i in range(count)]


def test_a_pane_only_set_records_only_panes():
    for sample in _samples(dataclasses.replace(TINY, glass=("pane",))):
        assert sample.glass_kinds == (("pane",) if sample.transparent.any() else ())


@pytest.mark.parametrize("glass", ["solid", "thin"])
def test_each_glass_option_records_kinds_of_its_own_family(glass):
    samples = _samples(dataclasses.replace(TINY, glass=(glass,)))
    assert any(s.glass_kinds for s in samples)
    for sample in samples:
        assert all(kind.startswith(f"{glass}-") and kind in GLASS_OBJECT_KINDS for kind in sample.glass_kinds)


def test_recorded_kinds_are_the_glass_the_left_view_shows():
    for sample in _samples(TINY, 6):
        assert list(sample.glass_kinds) == sorted(set(sample.glass_kinds))
        assert bool(sample.glass_kinds) == bool(sample.transparent.any())


def test_scenes_without_glass_record_no_kinds_and_every_scene_its_lighting():
    sample = generate_sample(dataclasses.replace(TINY, transparent=(0, 0)), sample_rng(TINY.seed, 0))
    assert sample.glass_kinds == () and sample.lighting in LIGHTING_FAMILIES


def test_each_sample_records_the_lighting_family_it_drew_and_all_families_come_up():
    drawn = {generate_sample(dataclasses.replace(TINY, transparent=(0, 0), opaque=(0, 0)),
                             sample_rng(TINY.seed, i)).lighting for i in range(16)}
    assert drawn == set(LIGHTING_FAMILIES)


@pytest.mark.parametrize("family", LIGHTING_FAMILIES + (LIGHTING_FAMILY,))
def test_a_single_lighting_family_is_the_one_every_sample_records(family):
    config = dataclasses.replace(TINY, lighting=(family,), transparent=(0, 0), opaque=(0, 0))
    assert {generate_sample(config, sample_rng(TINY.seed, i)).lighting for i in range(3)} == {family}


def test_scene_objects_name_their_glass_kind_and_spheres_are_round():
    config = dataclasses.replace(TINY, glass=("solid",), transparent=(3, 3))
    seen = set()
    for i in range(8):
        scene = random_scene(config, sample_rng(config.seed, i))
        for obj in scene.objects:
            if obj.material.kind != "glass":
                assert obj.glass_kind == ""
                continue
            assert obj.glass_kind in GLASS_OBJECT_KINDS
            size = obj.surface.size
            assert (obj.glass_kind == "solid-sphere") == (obj.surface.shape == "ellipsoid"
                                                          and np.all(size == size[0]))
            seen.add(obj.glass_kind)
    assert {"solid-sphere", "solid-ellipsoid"} <= seen


def test_dataset_files_carry_the_kinds_of_their_samples(tmp_path):
    generate_dataset(tmp_path / "out", TINY, 3, split=(1, 0, 0), progress=False)
    reader = H5Reader(tmp_path / "out" / "train.h5")
    for i, expected in enumerate(_samples(TINY, 3)):
        got = reader.read(i)
        assert (got.glass_kinds, got.lighting) == (expected.glass_kinds, expected.lighting)


def test_a_kind_named_twice_is_drawn_twice_as_often():
    """--glass solid,solid,pane: two thirds of the glass objects are solids (binomial, 240 objects:
    the share lies within 0.57-0.76 with probability > 0.99)."""
    def solid_share(glass):
        config = dataclasses.replace(TINY, glass=glass, transparent=(3, 3))
        kinds = [obj.glass_kind for i in range(80) for obj in random_scene(config, sample_rng(config.seed, i)).objects
                 if obj.glass_kind]
        assert len(kinds) == 240 and {k.split("-")[0] for k in kinds} == {"solid", "pane"}
        return sum(k.startswith("solid-") for k in kinds) / len(kinds)

    assert 0.57 <= solid_share(("solid", "solid", "pane")) <= 0.76
    assert 0.40 <= solid_share(("solid", "pane")) <= 0.60


def test_exposure_sets_how_bright_a_scene_is_and_old_records_keep_the_old_range():
    """The median over pixels of the mean of the angle images is the drawn exposure (½ S0 scaled),
    up to noise and 8-bit rounding; a record without the field means the range of before."""
    for level in (0.04, 0.3):
        config = dataclasses.replace(TINY, exposure=(level, level))
        for sample in _samples(config, 2):
            median = float(np.median(sample.left.astype(np.float32).mean(axis=(0, 1)) / config.white_level))
            assert abs(median - level) < 0.01 + 0.05 * level, (level, median)
    record = TINY.to_dict()
    del record["exposure"]
    assert SyntheticConfig.from_dict(record).exposure == (0.18, 0.32) == SyntheticConfig().exposure


@pytest.mark.parametrize("exposure", [(0.0, 0.2), (0.3, 0.2), (0.2, 1.5)])
def test_a_bad_exposure_range_is_refused_in_one_line(exposure):
    with pytest.raises(PolstereoError, match=r"synthetic config: exposure range must satisfy 0 < min <= max <= 1"):
        dataclasses.replace(TINY, exposure=exposure).validated()
