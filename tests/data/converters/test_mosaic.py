import numpy as np
import pytest

from polstereo.data.converters import ConvertConfig, SourceOptions, convert_dataset
from polstereo.data.converters.mosaic import MosaicConverter, parse_layout
from polstereo.data.h5 import H5Reader
from polstereo.errors import PolstereoError
from polstereo.io.images import write_disparity, write_image
from polstereo.polar.mosaic import demosaic, mosaic


def write_raw_sample(sample_dir, left_raw, right_raw, h=12, w=16):
    write_image(sample_dir / "left_raw.png", left_raw)
    write_image(sample_dir / "right_raw.png", right_raw)
    write_disparity(sample_dir / "disparity.pfm", np.full((h, w), 3.0, np.float32))
    write_image(sample_dir / "mask.png", np.zeros((h, w), np.uint8))


def convert(src, out, **source):
    return convert_dataset(ConvertConfig(src=src, out=out, layout="mosaic", split_ratios=(1, 0, 0),
                                         source=SourceOptions(**source)))


def first(out):
    reader = H5Reader(out / "train.h5")
    return reader, reader.read(0, normalize=False)


def test_12_bit_raw_of_uniform_angles_demosaics_exactly(tmp_path):
    levels = np.array([4000, 3000, 1000, 2000], np.uint16)  # 0, 45, 90, 135 deg
    stack = np.broadcast_to(levels[:, None, None, None], (4, 1, 12, 16)).copy()
    write_raw_sample(tmp_path / "src" / "a", mosaic(stack), mosaic(stack[::-1].copy()))
    report = convert(tmp_path / "src", tmp_path / "out", bit_depth=12)
    reader, sample = first(tmp_path / "out")
    assert report.angles_deg == (0, 45, 90, 135) and reader.angles_deg == (0, 45, 90, 135)
    assert sample.left.dtype == np.uint16 and sample.white_level == 4095
    assert np.array_equal(sample.left, stack) and np.array_equal(sample.right, stack[::-1])


def test_every_raw_pixel_keeps_its_value_at_its_own_angle(tmp_path, rng):
    raw = rng.integers(0, 256, (12, 16), dtype=np.uint8)
    write_raw_sample(tmp_path / "src" / "a", raw, raw)
    convert(tmp_path / "src", tmp_path / "out")
    _, sample = first(tmp_path / "out")
    assert sample.left.dtype == np.uint8 and np.array_equal(mosaic(sample.left), raw)
    assert np.abs(sample.left.astype(float) - demosaic(raw)).max() <= 0.5


def test_colour_sensor_layout_gives_rgb_stacks(tmp_path, rng):
    raw = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    write_raw_sample(tmp_path / "src" / "a", raw, raw, h=16, w=16)
    report = convert(tmp_path / "src", tmp_path / "out", mosaic_layout="IMX250MYR")
    _, sample = first(tmp_path / "out")
    assert report.color == "rgb" and sample.left.shape == (4, 3, 16, 16)


def test_custom_super_pixel_layout_from_four_angles(tmp_path):
    stack = np.broadcast_to(np.arange(1, 5, dtype=np.uint8)[:, None, None, None] * 50, (4, 1, 12, 16)).copy()
    layout = ((0.0, 45.0), (135.0, 90.0))
    write_raw_sample(tmp_path / "src" / "a", mosaic(stack, layout), mosaic(stack, layout))
    convert(tmp_path / "src", tmp_path / "out", mosaic_layout="0,45,135,90")
    assert np.array_equal(first(tmp_path / "out")[1].left, stack)
    assert parse_layout("IMX250MZR") == "IMX250MZR"


def test_raw_size_off_the_super_pixel_grid_is_skipped(tmp_path, rng):
    raw = rng.integers(0, 256, (12, 16), dtype=np.uint8)
    write_raw_sample(tmp_path / "src" / "a", raw, raw)
    odd = rng.integers(0, 256, (13, 16), dtype=np.uint8)
    write_raw_sample(tmp_path / "src" / "b", odd, odd, h=13)
    report = convert(tmp_path / "src", tmp_path / "out")
    assert report.written == {"train": 1}
    assert report.skipped[0]["name"] == "b" and "not a multiple" in report.skipped[0]["detail"]


def test_colour_png_is_not_a_raw_mosaic(tmp_path, rng):
    write_raw_sample(tmp_path / "src" / "a", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8),
                     rng.integers(0, 256, (12, 16), dtype=np.uint8))
    with pytest.raises(PolstereoError, match="a raw mosaic is single-channel"):
        convert(tmp_path / "src", tmp_path / "out")


def test_unknown_sensor_layout_is_an_error():
    with pytest.raises(PolstereoError, match="unknown mosaic layout"):
        MosaicConverter(SourceOptions(mosaic_layout="IMX999"))
