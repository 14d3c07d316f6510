"""Input resolvers: each input kind finds, pairs and loads what it should, and fails in one line."""

from __future__ import annotations

import numpy as np
import pytest

from polstereo.data.h5 import write_samples
from polstereo.errors import PolstereoError
from polstereo.inference.inputs import AnglePattern, InputSpec, resolve_inputs
from polstereo.io.images import read_image, write_image
from polstereo.polar.mosaic import demosaic
from tests.conftest import make_sample
from tests.inference.conftest import write_angle_images, write_mosaic_pair, write_ordinary


def load_all(**spec):
    return [source.load() for source in resolve_inputs(InputSpec(**spec))]


def test_mosaic_pair_is_demosaiced_and_scaled_by_the_12_bit_white_level(tmp_path, rng):
    left, right = write_mosaic_pair(tmp_path, rng)
    (pair,) = load_all(left=str(left), right=str(right), mosaic="IMX250MZR", bit_depth=12)
    assert pair.kind == "mosaic" and pair.angles_deg == (0.0, 45.0, 90.0, 135.0)
    assert pair.left.shape == (4, 1, 48, 64) and pair.left.dtype == np.float32
    np.testing.assert_allclose(pair.left, demosaic(read_image(left)) / 4095, rtol=1e-6)


def test_values_above_the_bit_depth_white_level_are_an_error(tmp_path, rng):
    left, right = write_mosaic_pair(tmp_path, rng)
    with pytest.raises(PolstereoError, match="exceed the 8-bit white level 255"):
        load_all(left=str(left), right=str(right), mosaic="IMX250MZR", bit_depth=8)


def test_unknown_mosaic_layout_fails_before_reading(tmp_path, rng):
    left, right = write_mosaic_pair(tmp_path, rng)
    with pytest.raises(PolstereoError, match="unknown mosaic layout"):
        resolve_inputs(InputSpec(left=str(left), right=str(right), mosaic="NOPE"))


def test_angle_pattern_without_name_is_one_pair_of_four_angle_stacks(tmp_path, rng):
    write_angle_images(tmp_path / "L", rng, "img", "left")
    write_angle_images(tmp_path / "R", rng, "img", "right")
    (pair,) = load_all(left=str(tmp_path / "L/img_left_{angle}.png"), right=str(tmp_path / "R/img_right_{angle}.png"))
    assert pair.name == "img_left" and pair.kind == "angles"
    assert pair.left.shape == (4, 1, 48, 64)
    np.testing.assert_array_equal(pair.left[1, 0], read_image(tmp_path / "L/img_left_45.png") / np.float32(255))


def test_angle_pattern_with_name_finds_every_pair(tmp_path, rng):
    for name in ("b", "a"):
        write_angle_images(tmp_path, rng, name, "left")
        write_angle_images(tmp_path, rng, name, "right")
    sources = resolve_inputs(InputSpec(left=str(tmp_path / "{name}_left_{angle}.png"),
                                       right=str(tmp_path / "{name}_right_{angle}.png")))
    assert [s.name for s in sources] == ["a", "b"]


def test_angle_format_spec_is_applied(tmp_path):
    pattern = AnglePattern.parse("x/{name}_{angle:03d}.png", "--left")
    assert str(pattern.path("s1", 45.0)) == "x/s1_045.png"


def test_missing_angle_image_names_the_file(tmp_path, rng):
    write_angle_images(tmp_path, rng, "a", "left")
    write_angle_images(tmp_path, rng, "a", "right")
    (tmp_path / "a_right_90.png").unlink()
    with pytest.raises(PolstereoError, match=r"missing angle image .*a_right_90.png \(90 deg of pair a\)"):
        resolve_inputs(InputSpec(left=str(tmp_path / "{name}_left_{angle}.png"),
                                 right=str(tmp_path / "{name}_right_{angle}.png")))


def test_unknown_placeholder_is_an_error():
    with pytest.raises(PolstereoError, match=r"unknown placeholder\(s\) \{view\}"):
        AnglePattern.parse("{view}_{angle}.png", "--left")


def test_directories_pair_files_by_name(tmp_path, rng):
    for name in ("0001", "0002"):
        write_ordinary(tmp_path / "L" / f"{name}.png", rng)
        write_ordinary(tmp_path / "R" / f"{name}.png", rng)
    pairs = load_all(left=str(tmp_path / "L"), right=str(tmp_path / "R"))
    assert [p.name for p in pairs] == ["0001", "0002"]
    assert pairs[0].kind == "ordinary" and pairs[0].angles_deg is None and pairs[0].left.shape == (1, 3, 48, 64)


def test_glob_pairs_by_the_text_the_wildcard_matched(tmp_path, rng):
    for name in ("x", "y"):
        write_ordinary(tmp_path / f"{name}_a.png", rng)
        write_ordinary(tmp_path / f"{name}_b.png", rng)
    sources = resolve_inputs(InputSpec(left=str(tmp_path / "*_a.png"), right=str(tmp_path / "*_b.png")))
    assert [s.name for s in sources] == ["x", "y"]


def test_an_image_without_partner_is_an_error(tmp_path, rng):
    write_ordinary(tmp_path / "L" / "1.png", rng)
    write_ordinary(tmp_path / "L" / "2.png", rng)
    write_ordinary(tmp_path / "R" / "1.png", rng)
    with pytest.raises(PolstereoError, match=r"--left: 1 image\(s\) have no partner"):
        resolve_inputs(InputSpec(left=str(tmp_path / "L"), right=str(tmp_path / "R")))


def test_middlebury_folder_of_scenes_needs_no_right(tmp_path, rng):
    for scene in ("Piano", "Adirondack"):
        write_ordinary(tmp_path / scene / "im0.png", rng)
        write_ordinary(tmp_path / scene / "im1.png", rng)
    assert [s.name for s in resolve_inputs(InputSpec(left=str(tmp_path)))] == ["Adirondack", "Piano"]
    (pair,) = load_all(left=str(tmp_path / "Piano"))
    assert pair.name == "Piano" and pair.kind == "ordinary"


def test_hdf5_yields_every_sample_with_its_camera(tmp_path, rng):
    path = tmp_path / "d.h5"
    write_samples(path, [make_sample(rng, name=f"s{i}") for i in range(2)])
    pairs = load_all(data=str(path))
    assert [p.name for p in pairs] == ["s0", "s1"]
    assert pairs[0].kind == "hdf5" and pairs[0].focal_px == 120.0 and pairs[0].baseline == 0.05
    assert pairs[0].left.dtype == np.float32 and pairs[0].left.max() <= 1.0


def test_mismatched_sizes_are_a_one_line_error(tmp_path, rng):
    left = write_ordinary(tmp_path / "l.png", rng)
    right = write_ordinary(tmp_path / "r.png", rng, w=60)
    (source,) = resolve_inputs(InputSpec(left=str(left), right=str(right)))
    with pytest.raises(PolstereoError, match="left is 48x64 .* but right is 48x60"):
        source.load()


def test_unreadable_image_is_an_error(tmp_path, rng):
    (tmp_path / "l.png").write_bytes(b"not a png")
    right = write_ordinary(tmp_path / "r.png", rng)
    (source,) = resolve_inputs(InputSpec(left=str(tmp_path / "l.png"), right=str(right)))
    with pytest.raises(PolstereoError, match="not a readable image"):
        source.load()


@pytest.mark.parametrize("spec, message", [
    (dict(left="nope.png", right="nope2.png"), "no such file or directory: nope.png"),
    (dict(), "no input"),
    (dict(left="a.png"), "--right is missing"),
    (dict(data="d.h5", left="a.png"), "cannot be combined"),
])
def test_bad_specs_raise_one_line_errors(tmp_path, monkeypatch, spec, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PolstereoError, match=message):
        resolve_inputs(InputSpec(**spec))


def test_colour_alpha_channel_is_dropped(tmp_path, rng):
    write_image(tmp_path / "l.png", rng.integers(0, 256, (8, 8, 4), dtype=np.uint8))
    write_image(tmp_path / "r.png", rng.integers(0, 256, (8, 8, 4), dtype=np.uint8))
    (pair,) = load_all(left=str(tmp_path / "l.png"), right=str(tmp_path / "r.png"))
    assert pair.left.shape == (1, 3, 8, 8)
