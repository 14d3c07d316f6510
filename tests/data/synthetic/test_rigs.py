"""Rig presets: real polarization stereo rigs scaled to the rendered size."""

import numpy as np
import pytest

from polstereo.data.synthetic.config import SyntheticConfig
from polstereo.data.synthetic.generate import generate_sample, sample_rng
from polstereo.data.synthetic.rigs import RIG_PRESETS
from polstereo.errors import EXIT_USAGE, PolstereoError

# the numbers docs/synthetic.md gives for each preset: focal px at 2448 and 320 wide, baseline (m),
# disparity range at 320 x 256 (px)
DOCUMENTED = {
    "tabletop-8mm-b10": (2318.8, 303.1, 0.10, (20.2, 60.6)),
    "tabletop-12mm-b6": (3478.3, 454.7, 0.06, (18.2, 45.5)),
    "bin-picking-8mm-b5": (2318.8, 303.1, 0.05, (15.2, 37.9)),
}


def test_every_preset_is_documented():
    assert set(RIG_PRESETS) == set(DOCUMENTED)


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_presets_give_the_documented_focal_length_baseline_and_disparity_range(name):
    focal_full, focal_320, baseline, (lo, hi) = DOCUMENTED[name]
    assert RIG_PRESETS[name].focal_px(2448) == pytest.approx(focal_full, abs=0.05)
    config = SyntheticConfig.with_rig(name, width=320, height=256).validated()
    assert config.focal == pytest.approx(focal_320, abs=0.05)
    assert config.baseline_m == baseline
    assert config.disparity_range == pytest.approx((lo, hi), abs=0.05)
    # f·B/Z over the working distances
    near, far = RIG_PRESETS[name].working_distance_m
    assert config.disparity_range == pytest.approx((config.focal * baseline / far, config.focal * baseline / near))


def test_a_preset_sets_a_12_bit_sensor_with_a_finite_extinction_ratio_and_names_itself():
    config = SyntheticConfig.with_rig("tabletop-12mm-b6")
    assert (config.bit_depth, config.extinction_ratio, config.rig) == (12, 200.0, "tabletop-12mm-b6")
    assert config.read_noise == pytest.approx(2.3 / 10500)


def test_focal_length_scales_with_the_rendered_width():
    small = SyntheticConfig.with_rig("tabletop-8mm-b10", width=160, height=128)
    large = SyntheticConfig.with_rig("tabletop-8mm-b10", width=640, height=512)
    assert large.focal == pytest.approx(4 * small.focal)
    assert large.disparity_range == pytest.approx(tuple(4 * d for d in small.disparity_range))


def test_explicit_values_win_over_the_preset():
    config = SyntheticConfig.with_rig("tabletop-8mm-b10", bit_depth=8, baseline_m=0.2, focal_px=None)
    assert (config.bit_depth, config.baseline_m) == (8, 0.2)
    assert config.focal == pytest.approx(303.1, abs=0.05)  # None: the preset's


def test_a_preset_rebuilds_from_its_provenance_record():
    config = SyntheticConfig.with_rig("bin-picking-8mm-b5", width=64, height=48)
    assert SyntheticConfig.from_dict(config.to_dict()) == config


def test_preset_scenes_stay_in_its_disparity_range():
    config = SyntheticConfig.with_rig("tabletop-12mm-b6", width=96, height=64, noise=False, textures="procedural")
    lo, hi = config.disparity_range
    for index in range(3):
        sample = generate_sample(config, sample_rng(0, index))
        assert sample.left.dtype == np.uint16 and sample.white_level == 4095
        assert sample.focal_px == pytest.approx(config.focal)
        assert np.nanmin(sample.disparity) >= lo * 0.98 and np.nanmax(sample.disparity) <= hi * 1.001


def test_an_unknown_preset_is_a_usage_error_naming_the_known_ones():
    with pytest.raises(PolstereoError, match="tabletop-8mm-b10") as err:
        SyntheticConfig.with_rig("tabletop")
    assert err.value.exit_code == EXIT_USAGE
