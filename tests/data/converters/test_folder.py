import numpy as np

from polstereo.data.converters import ConvertConfig, SourceOptions, convert_dataset
from polstereo.data.converters.folder import FolderConverter
from polstereo.data.h5 import H5Reader, validate
from polstereo.io.images import write_image
from tests.data.converters.fixtures import folder_sample, write_folder_dataset, write_folder_sample

ALL_TRAIN = (1.0, 0.0, 0.0)


def convert(src, out, **source_kwargs):
    return convert_dataset(ConvertConfig(src=src, out=out, layout="folder", split_ratios=ALL_TRAIN,
                                         source=SourceOptions(**source_kwargs)))


def read_all(path):
    reader = H5Reader(path)
    return {s.name: s for s in (reader.read(i, normalize=False) for i in range(len(reader)))}


def test_folder_sample_arrives_unchanged_in_the_h5_file(tmp_path, rng):
    written = write_folder_dataset(tmp_path / "src", rng, 2)
    report = convert(tmp_path / "src", tmp_path / "out")
    assert report.written == {"train": 2} and report.skipped == []
    assert validate(tmp_path / "out" / "train.h5") == []
    got = read_all(tmp_path / "out" / "train.h5")
    for name, expected in written.items():
        sample = got[name]
        assert sample.left.dtype == np.uint8 and sample.white_level == 255
        assert np.array_equal(sample.left, expected.left) and np.array_equal(sample.right, expected.right)
        assert np.array_equal(sample.disparity, expected.disparity, equal_nan=True)
        assert np.array_equal(sample.transparent, expected.transparent)
        assert np.array_equal(sample.occlusion, expected.occlusion)
        assert sample.valid is None


def test_png16_disparity_is_divided_by_disp_scale(tmp_path, rng):
    sample = folder_sample(rng)
    write_folder_sample(tmp_path / "src" / "a", sample, disparity_ext=".png", disp_scale=100.0)
    convert(tmp_path / "src", tmp_path / "out", disp_scale=100.0)
    got = read_all(tmp_path / "out" / "train.h5")["a"].disparity
    valid = np.isfinite(sample.disparity)
    assert np.abs(got[valid] - sample.disparity[valid]).max() <= 0.005 + 1e-6
    assert np.isnan(got[~valid]).all()


def test_bit_depth_12_keeps_uint16_and_sets_white_level_4095(tmp_path, rng):
    sample = folder_sample(rng, dtype=np.uint16, high=4095)
    write_folder_sample(tmp_path / "src" / "a", sample)
    convert(tmp_path / "src", tmp_path / "out", bit_depth=12)
    reader = H5Reader(tmp_path / "out" / "train.h5")
    raw = reader.read(0, normalize=False)
    assert raw.left.dtype == np.uint16 and raw.white_level == 4095 and np.array_equal(raw.left, sample.left)
    assert np.allclose(reader.read(0).left, sample.left / 4095.0)


def test_values_above_the_bit_depth_skip_the_sample(tmp_path, rng):
    write_folder_sample(tmp_path / "src" / "a", folder_sample(rng, dtype=np.uint16, high=4095))
    write_folder_sample(tmp_path / "src" / "b", folder_sample(rng, dtype=np.uint16))
    report = convert(tmp_path / "src", tmp_path / "out", bit_depth=12)
    assert report.written == {"train": 1}
    assert [(s["name"], s["kind"]) for s in report.skipped] == [("b", "bad values")]
    assert "--bit-depth 12" in report.skipped[0]["detail"]


def test_rgb_images_give_an_rgb_dataset_in_auto_mode(tmp_path, rng):
    sample = folder_sample(rng, channels=3)
    write_folder_sample(tmp_path / "src" / "a", sample)
    report = convert(tmp_path / "src", tmp_path / "out")
    assert report.color == "rgb"
    assert np.array_equal(read_all(tmp_path / "out" / "train.h5")["a"].left, sample.left)


def test_color_mono_turns_rgb_into_rec709_luminance(tmp_path, rng):
    sample = folder_sample(rng, channels=3)
    write_folder_sample(tmp_path / "src" / "a", sample)
    convert(tmp_path / "src", tmp_path / "out", color="mono")
    luma = np.tensordot(sample.left.astype(np.float32), [0.2126, 0.7152, 0.0722], axes=([1], [0]))
    got = read_all(tmp_path / "out" / "train.h5")["a"].left
    assert got.shape == (4, 1, 12, 16) and np.abs(got[:, 0].astype(float) - luma).max() <= 0.5 + 1e-4


def test_custom_patterns_and_angles(tmp_path, rng):
    sample_dir = tmp_path / "src" / "a"
    sample = folder_sample(rng)
    for view, letter in (("left", "L"), ("right", "R")):
        for i, angle in enumerate((0, 60, 120)):
            write_image(sample_dir / "cam" / f"{letter}{angle}.png", getattr(sample, view)[i, 0])
    write_image(sample_dir / "gt_mask.png", sample.transparent.astype(np.uint8))
    np.save(sample_dir / "gt.npy", sample.disparity)
    report = convert(tmp_path / "src", tmp_path / "out", angles_deg=(0, 60, 120),
                     patterns={"left": "cam/L{angle}.png", "right": "cam/R{angle}.png", "disparity": "gt.npy",
                               "mask": "gt_mask.png"})
    assert report.written == {"train": 1} and report.angles_deg == (0.0, 60.0, 120.0)
    got = read_all(tmp_path / "out" / "train.h5")["a"]
    assert np.array_equal(got.left, sample.left[:3]) and H5Reader(tmp_path / "out" / "train.h5").angles_deg == (0, 60, 120)


def test_empty_pattern_switches_an_optional_role_off(tmp_path, rng):
    write_folder_dataset(tmp_path / "src", rng, 1)
    (tmp_path / "src" / "s00" / "mask.png").unlink()
    convert(tmp_path / "src", tmp_path / "out", patterns={"mask": "", "occlusion": ""})
    got = read_all(tmp_path / "out" / "train.h5")["s00"]
    assert got.transparent is None and got.occlusion is None


def test_meta_json_gives_focal_baseline_and_scene(tmp_path, rng):
    write_folder_sample(tmp_path / "src" / "a", folder_sample(rng),
                        meta={"focal_px": 321.5, "baseline_m": 0.06, "scene_id": "kitchen"})
    write_folder_sample(tmp_path / "src" / "b", folder_sample(rng))
    convert(tmp_path / "src", tmp_path / "out", focal_px=100.0)
    got = read_all(tmp_path / "out" / "train.h5")
    assert (got["a"].focal_px, got["a"].baseline_m, got["a"].scene_id) == (321.5, 0.06, "kitchen")
    assert (got["b"].focal_px, got["b"].baseline_m) == (100.0, None)


def skip_of(tmp_path, rng, damage):
    """Convert one good and one damaged sample; the damaged one's (kind, detail)."""
    write_folder_dataset(tmp_path / "src", rng, 2)
    damage(tmp_path / "src" / "s01")
    report = convert(tmp_path / "src", tmp_path / "out")
    assert report.written == {"train": 1} and [s["name"] for s in report.skipped] == ["s01"]
    return report.skipped[0]["kind"], report.skipped[0]["detail"]


def test_missing_angle_image_is_skipped_naming_it(tmp_path, rng):
    kind, detail = skip_of(tmp_path, rng, lambda d: (d / "right_45.png").unlink())
    assert kind == "missing file" and detail == "right (right_45.*)"


def test_missing_mask_is_skipped(tmp_path, rng):
    kind, detail = skip_of(tmp_path, rng, lambda d: (d / "mask.png").unlink())
    assert kind == "missing file" and detail == "mask (mask.*)"


def test_views_of_different_size_are_skipped(tmp_path, rng):
    def shrink_right(d):
        for angle in (0, 45, 90, 135):
            write_image(d / f"right_{angle}.png", np.zeros((10, 16), np.uint8))
    assert skip_of(tmp_path, rng, shrink_right) == ("size mismatch", "left 16x12 and right 16x10 views differ")


def test_angle_images_of_different_size_are_skipped(tmp_path, rng):
    kind, detail = skip_of(tmp_path, rng, lambda d: write_image(d / "left_90.png", np.zeros((12, 8), np.uint8)))
    assert kind == "size mismatch" and "left_90.png" in detail


def test_disparity_of_different_size_is_skipped(tmp_path, rng):
    kind, detail = skip_of(tmp_path, rng, lambda d: np.save(d / "disparity.npy", np.ones((3, 3))) or
                           (d / "disparity.pfm").unlink())
    assert (kind, detail) == ("size mismatch", "disparity is 3x3, images are 16x12")


def test_disparity_without_finite_values_is_skipped(tmp_path, rng):
    def all_invalid(d):
        (d / "disparity.pfm").unlink()
        np.save(d / "disparity.npy", np.full((12, 16), np.inf, np.float32))
    assert skip_of(tmp_path, rng, all_invalid)[0] == "no valid disparity"


def test_corrupt_image_is_skipped_with_its_name(tmp_path, rng):
    kind, detail = skip_of(tmp_path, rng, lambda d: (d / "left_0.png").write_bytes(b"\x89PNG broken"))
    assert kind == "corrupt file" and "left_0.png: not a readable image" in detail


def test_two_disparity_files_are_ambiguous(tmp_path, rng):
    kind, detail = skip_of(tmp_path, rng, lambda d: np.save(d / "disparity.npy", np.ones((12, 16))))
    assert kind == "ambiguous files" and "disparity.npy, disparity.pfm" in detail


def test_negative_disparity_is_skipped(tmp_path, rng):
    def negate(d):
        (d / "disparity.pfm").unlink()
        np.save(d / "disparity.npy", -np.ones((12, 16), np.float32))
    assert skip_of(tmp_path, rng, negate)[0] == "bad values"


def test_corrupt_meta_json_is_skipped(tmp_path, rng):
    kind, _ = skip_of(tmp_path, rng, lambda d: (d / "meta.json").write_text("{nope"))
    assert kind == "corrupt file"


def test_source_color_reads_the_first_left_image(tmp_path, rng):
    write_folder_sample(tmp_path / "a", folder_sample(rng, channels=3))
    assert FolderConverter().source_color(tmp_path / "a") == "rgb"
