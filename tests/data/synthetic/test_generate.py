import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from polstereo.data.h5 import H5Reader, validate
from polstereo.data.synthetic.config import SyntheticConfig
from polstereo.data.synthetic.generate import (generate_dataset, generate_sample, polarizer_images, sample_rng,
                                               split_counts)
from polstereo.errors import EXIT_USAGE, PolstereoError
from polstereo.polar.stokes import angles_from_stokes, dolp, stokes_from_angles

TINY = SyntheticConfig(width=64, height=48, noise=False)
FIELDS = ("left", "right", "disparity", "transparent", "valid", "occlusion")


def _same_arrays(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f), equal_nan=f == "disparity") for f in FIELDS)


def test_same_seed_and_index_give_identical_samples():
    config = dataclasses.replace(TINY, noise=True)
    assert _same_arrays(generate_sample(config, sample_rng(7, 3)), generate_sample(config, sample_rng(7, 3)))


def test_other_seeds_or_indices_give_other_scenes():
    base = generate_sample(TINY, sample_rng(7, 3))
    assert not np.array_equal(base.left, generate_sample(TINY, sample_rng(7, 4)).left)
    assert not np.array_equal(base.left, generate_sample(TINY, sample_rng(8, 3)).left)


def test_sample_carries_first_surface_ground_truth_and_rig():
    sample = generate_sample(TINY, sample_rng(0, 0))
    assert sample.left.shape == sample.right.shape == (4, 1, 48, 64) and sample.left.dtype == np.uint8
    assert sample.disparity.dtype == np.float32 and sample.disparity.shape == (48, 64)
    assert sample.valid.all() and np.isfinite(sample.disparity).all()
    assert sample.focal_px == 64.0 and sample.baseline_m == 0.1 and sample.white_level == 255.0
    assert sample.occlusion[:, 0].all()  # nothing at x = 0 is inside the right image


@pytest.mark.parametrize("low, high", [(2.0, 14.0), (10.0, 12.0)])
def test_disparities_stay_within_the_configured_range(low, high):
    config = dataclasses.replace(TINY, min_disparity=low, max_disparity=high)
    for i in range(6):
        d = generate_sample(config, sample_rng(1, i)).disparity
        assert d.min() >= low * (1 - 1e-4) and d.max() <= high


def test_zero_transparent_objects_gives_no_transparent_pixels():
    config = dataclasses.replace(TINY, transparent=(0, 0))
    assert not any(generate_sample(config, sample_rng(0, i)).transparent.any() for i in range(4))


def test_default_scenes_contain_transparent_pixels():
    assert all(generate_sample(TINY, sample_rng(0, i)).transparent.sum() > 20 for i in range(4))


@pytest.mark.parametrize("bits, dtype, white", [(8, np.uint8, 255), (12, np.uint16, 4095), (16, np.uint16, 65535)])
def test_bit_depth_sets_dtype_white_level_and_range(bits, dtype, white):
    sample = generate_sample(dataclasses.replace(TINY, bit_depth=bits), sample_rng(0, 1))
    assert sample.left.dtype == dtype and sample.white_level == white
    assert sample.left.max() <= white and sample.left.max() > white // 4


def test_sensor_noise_matches_shot_plus_read_noise_model():
    clean_cfg = dataclasses.replace(TINY, bit_depth=16, width=96, height=64)
    noisy_cfg = dataclasses.replace(clean_cfg, noise=True, full_well_e=2000.0, read_noise=0.004)
    clean = generate_sample(clean_cfg, sample_rng(2, 0)).left / 65535.0
    noisy = generate_sample(noisy_cfg, sample_rng(2, 0)).left / 65535.0
    unsaturated = (clean > 0.01) & (clean < 0.95)
    expected = np.sqrt(clean / 2000.0 + 0.004 ** 2)
    ratio = ((noisy - clean) / expected)[unsaturated]
    assert abs(ratio.mean()) < 0.05 and ratio.std() == pytest.approx(1.0, abs=0.05)


def test_angle_images_are_consistent_polarizer_readings():
    """Four angle images of a pixel obey I(0) + I(90) = I(45) + I(135) (= S0), up to rounding."""
    sample = generate_sample(dataclasses.replace(TINY, bit_depth=16), sample_rng(0, 2))
    img = sample.left.astype(np.float64) / 65535.0
    unsaturated = (img < 0.999).all(axis=0)
    residual = (img[0] + img[2] - img[1] - img[3])[unsaturated]
    assert np.abs(residual).max() < 3 / 65535.0
    assert (stokes_from_angles(img)[0] > 0).all()


def test_rgb_mode_gives_three_coloured_channels():
    sample = generate_sample(dataclasses.replace(TINY, color="rgb"), sample_rng(0, 0))
    assert sample.left.shape == (4, 3, 48, 64)
    assert not np.array_equal(sample.left[:, 0], sample.left[:, 1])


@pytest.mark.parametrize("num, expected", [(1, [1, 0, 0]), (3, [1, 1, 1]), (5, [3, 1, 1]), (10, [8, 1, 1]),
                                           (100, [80, 10, 10])])
def test_split_counts_are_proportional_and_keep_requested_splits_non_empty(num, expected):
    assert split_counts(num, (0.8, 0.1, 0.1)) == expected


def test_split_must_be_three_fractions_summing_to_one():
    with pytest.raises(PolstereoError, match="summing to 1") as err:
        split_counts(10, (0.5, 0.2, 0.2))
    assert err.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize("change, message", [
    ({"bit_depth": 10}, "bit depth"), ({"transparent": (3, 1)}, "transparent"), ({"color": "cmyk"}, "colour"),
    ({"min_disparity": 20.0, "max_disparity": 10.0}, "min disparity"), ({"width": 8}, "too small"),
    ({"ior_range": (0.9, 1.5)}, "refractive index"), ({"glass": ("solid", "glas")}, "glass kinds"),
    ({"glass": ()}, "glass kinds"), ({"textures": "photos"}, "textures must be one of"),
    ({"textures": "procedural", "texture_dir": "/tmp"}, "texture folder needs photo textures"),
    ({"extinction_ratio": 1.0}, "extinction ratio"), ({"extinction_ratio": 0.5}, "extinction ratio"),
    ({"extinction_ratio": float("inf")}, "extinction ratio"), ({"rig": "tabletop"}, "unknown rig preset"),
])
def test_config_rejects_bad_values_with_a_usage_error(change, message):
    with pytest.raises(PolstereoError, match=message) as err:
        dataclasses.replace(TINY, **change).validated()
    assert err.value.exit_code == EXIT_USAGE


def test_dataset_files_are_valid_and_record_their_config(tmp_path):
    summary = generate_dataset(tmp_path, TINY, 4, progress=False)
    assert {name: info["samples"] for name, info in summary["files"].items()} == {"train": 2, "val": 1, "test": 1}
    for name in ("train", "val", "test"):
        assert validate(tmp_path / f"{name}.h5") == []
    reader = H5Reader(tmp_path / "val.h5")
    provenance = reader.attrs["provenance"]
    assert SyntheticConfig.from_dict(provenance["config"]) == TINY
    assert provenance["sample_indices"] == [2, 3]
    # Sample 2 of the dataset is sample index 2 of the seed, wherever it is stored.
    stored = reader.read(0, normalize=False)
    assert _same_arrays(stored, generate_sample(TINY, sample_rng(TINY.seed, 2)))


def test_dataset_into_a_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(PolstereoError, match="not a directory"):
        generate_dataset(tmp_path / "taken", TINY, 1, progress=False)


def test_dataset_files_do_not_depend_on_the_number_of_workers(tmp_path):
    config = dataclasses.replace(TINY, width=32, height=24, noise=True, seed=5)
    generate_dataset(tmp_path / "one", config, 3, split=(1.0, 0.0, 0.0), workers=1, progress=False)
    generate_dataset(tmp_path / "two", config, 3, split=(1.0, 0.0, 0.0), workers=2, progress=False)
    assert (tmp_path / "one" / "train.h5").read_bytes() == (tmp_path / "two" / "train.h5").read_bytes()
    assert not (tmp_path / "one" / "val.h5").exists()


def test_a_worker_runs_one_blas_and_one_opencv_thread():
    """Threads inside N workers on N cores only fight: the initializer pins every pool to one."""
    probe = ("from polstereo.data.synthetic.generate import _one_thread_per_worker\n"
             "import cv2, numpy\n"
             "from threadpoolctl import threadpool_info\n"
             "_one_thread_per_worker()\n"
             "print(max(pool['num_threads'] for pool in threadpool_info()), cv2.getNumThreads())")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "4", "OMP_NUM_THREADS": "4"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_a_provenance_record_from_before_the_glass_option_means_solid_glass():
    record = dataclasses.replace(TINY, glass=("thin",)).to_dict()
    assert SyntheticConfig.from_dict(record).glass == ("thin",)
    del record["glass"]
    assert SyntheticConfig.from_dict(record).glass == ("solid",)


def test_each_glass_kind_makes_transparent_pixels():
    for kind in ("solid", "thin", "pane"):
        config = dataclasses.replace(TINY, glass=(kind,), transparent=(3, 3), seed=4)
        shares = [generate_sample(config, sample_rng(config.seed, i)).transparent.mean() for i in range(3)]
        assert max(shares) > 0.01, kind


# Samples 0-2 of two configurations as commit 4097f37 made them (before photo textures, rig
# presets and the extinction ratio): --glass solid, procedural textures, no rig and an ideal
# polarizer must still make these scenes. Stored as arrays, not a digest: the generator's float
# maths goes through numpy's matrix products, whose last bits depend on the BLAS kernel of the
# CPU. The file was written with OPENBLAS_CORETYPE=Haswell, whose bytes are 4097f37's exactly.
# Measured spread against it on an AMD EPYC (2026-12-07) under the SkylakeX (default), Prescott
# and Zen kernels: masks identical, at most 33 of 36864 pixel values 1-2 LSB apart, disparity
# within 5e-4 px. The tolerances below are about 10x that spread.
REFERENCE = Path(__file__).parent / "references" / "earlier_scenes.npz"
EARLIER_SCENES = {
    "mono8": dict(width=64, height=48, glass=("solid",), opaque=(2, 3), transparent=(1, 2), seed=5),
    "rgb12": dict(width=64, height=48, glass=("solid",), opaque=(2, 3), transparent=(1, 2), seed=7, color="rgb",
                  bit_depth=12),
}
MAX_LSB, MAX_SHARE_OFF, DISPARITY_ATOL_PX, MAX_MASK_PIXELS_OFF = 4, 0.01, 5e-3, 2


def _assert_close_to_reference(name: str, got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype, name
    if want.dtype == bool:
        assert np.count_nonzero(got != want) <= MAX_MASK_PIXELS_OFF, name
    elif want.dtype.kind == "f":
        assert np.array_equal(np.isfinite(got), np.isfinite(want)), name
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=0, atol=DISPARITY_ATOL_PX, err_msg=name)
    else:
        off = np.abs(got.astype(np.int64) - want.astype(np.int64))
        assert off.max() <= MAX_LSB and np.count_nonzero(off) <= MAX_SHARE_OFF * off.size, name


@pytest.mark.parametrize("case", sorted(EARLIER_SCENES))
def test_solid_glass_with_procedural_textures_makes_the_earlier_scenes(case):
    config = SyntheticConfig(**EARLIER_SCENES[case], textures="procedural", prisms=False, lighting=("room-env",),
                             polarization="shared-plane")
    with np.load(REFERENCE) as reference:
        for index in (0, 1, 2):
            sample = generate_sample(config, sample_rng(config.seed, index))
            for field in FIELDS:
                key = f"{case}_{index}_{field}"
                _assert_close_to_reference(key, getattr(sample, field), reference[key])


def test_a_provenance_record_from_before_photo_textures_means_the_old_generator():
    record = dataclasses.replace(TINY, textures="photo", extinction_ratio=150.0).to_dict()
    assert SyntheticConfig.from_dict(record).textures == "photo"
    for key in ("textures", "texture_dir", "extinction_ratio", "rig"):
        del record[key]
    old = SyntheticConfig.from_dict(record)
    assert (old.textures, old.texture_dir, old.extinction_ratio, old.rig) == ("procedural", None, None, None)


@pytest.mark.parametrize("ratio", [2.0, 100.0, 300.0])
def test_extinction_ratio_scales_dolp_by_er_minus_one_over_er_plus_one_and_keeps_s0(ratio):
    rng = np.random.default_rng(0)
    s0 = rng.uniform(0.2, 1.0, (1, 6, 7))
    angle, degree = rng.uniform(0, np.pi, s0.shape), rng.uniform(0.05, 1.0, s0.shape)
    stokes = np.stack([s0, s0 * degree * np.cos(2 * angle), s0 * degree * np.sin(2 * angle)]).astype(np.float32)
    measured = stokes_from_angles(polarizer_images(stokes, (0, 45, 90, 135), ratio), (0, 45, 90, 135))
    np.testing.assert_allclose(measured[0], stokes[0], rtol=1e-6)
    np.testing.assert_allclose(dolp(measured) / dolp(stokes), (ratio - 1) / (ratio + 1), rtol=1e-5)


def test_an_ideal_polarizer_forms_the_angle_images_as_before():
    stokes = np.random.default_rng(1).uniform(-0.3, 1.0, (3, 1, 4, 5)).astype(np.float32)
    assert np.array_equal(polarizer_images(stokes, (0, 45, 90, 135), None),
                          angles_from_stokes(stokes, (0, 45, 90, 135), axis=0))


def test_a_finite_extinction_ratio_lowers_the_dolp_of_generated_samples():
    ideal = dataclasses.replace(TINY, seed=2, bit_depth=16)
    leaky = dataclasses.replace(ideal, extinction_ratio=3.0)  # k = 0.5
    a, b = (generate_sample(c, sample_rng(2, 0)) for c in (ideal, leaky))
    da = dolp(stokes_from_angles(a.left.astype(np.float64), (0, 45, 90, 135)))
    db = dolp(stokes_from_angles(b.left.astype(np.float64), (0, 45, 90, 135)))
    bright = a.left.mean(axis=0) > 2000
    assert np.median(db[bright] / np.maximum(da[bright], 1e-9)) == pytest.approx(0.5, abs=0.02)
