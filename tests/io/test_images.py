import sys

import cv2
import numpy as np
import pytest

from polstereo.errors import PolstereoError
from polstereo.io import images
from polstereo.io.images import (
    encode_png16_disparity, read_disparity, read_exr, read_image, read_pfm, write_disparity, write_exr,
    write_image, write_pfm,
)


@pytest.fixture
def disparity(rng):
    disp = (rng.random((12, 16)) * 40).astype(np.float32)
    disp[0, :3] = np.nan
    disp[5, 7] = np.inf
    return disp


def _pfm_bytes(kind: bytes, w: int, h: int, scale: bytes, rows_bottom_first: np.ndarray) -> bytes:
    return kind + b"\n" + f"{w} {h}".encode() + b"\n" + scale + b"\n" + rows_bottom_first.tobytes()


# ----------------------------------------------------------------------------- PFM
def test_pfm_greyscale_round_trip_is_exact(tmp_path, rng):
    image = rng.standard_normal((7, 5)).astype(np.float32)
    write_pfm(tmp_path / "a.pfm", image)
    back = read_pfm(tmp_path / "a.pfm")
    assert back.dtype == np.float32 and np.array_equal(back, image)


def test_pfm_colour_round_trip_is_exact(tmp_path, rng):
    image = rng.standard_normal((4, 6, 3)).astype(np.float32)
    write_pfm(tmp_path / "c.pfm", image)
    assert np.array_equal(read_pfm(tmp_path / "c.pfm"), image)


def test_pfm_writes_little_endian_rows_bottom_to_top(tmp_path):
    image = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)  # top row first
    write_pfm(tmp_path / "a.pfm", image)
    raw = (tmp_path / "a.pfm").read_bytes()
    assert raw.startswith(b"Pf\n3 2\n-1.0\n")
    assert np.array_equal(np.frombuffer(raw[-24:], dtype="<f4"), [4, 5, 6, 1, 2, 3])


def test_pfm_reads_big_endian_when_scale_is_positive(tmp_path):
    stored = np.array([[4, 5], [1, 2]], dtype=">f4")  # bottom row first
    (tmp_path / "b.pfm").write_bytes(_pfm_bytes(b"Pf", 2, 2, b"1.0", stored))
    assert np.array_equal(read_pfm(tmp_path / "b.pfm"), [[1, 2], [4, 5]])


def test_pfm_reads_little_endian_colour_written_elsewhere(tmp_path):
    stored = np.arange(12, dtype="<f4").reshape(2, 2, 3)
    (tmp_path / "c.pfm").write_bytes(_pfm_bytes(b"PF", 2, 2, b"-0.5", stored))
    assert np.array_equal(read_pfm(tmp_path / "c.pfm"), stored[::-1])


def test_truncated_pfm_raises_naming_the_file(tmp_path):
    (tmp_path / "t.pfm").write_bytes(b"Pf\n4 4\n-1.0\n" + b"\0" * 10)
    with pytest.raises(PolstereoError, match=r"t\.pfm: truncated PFM data"):
        read_pfm(tmp_path / "t.pfm")


def test_non_pfm_file_raises(tmp_path):
    (tmp_path / "x.pfm").write_bytes(b"P6\n1 1\n255\n\0\0\0")
    with pytest.raises(PolstereoError, match=r"x\.pfm: not a PFM file"):
        read_pfm(tmp_path / "x.pfm")


# ----------------------------------------------------------------------------- disparity
@pytest.mark.parametrize("ext", [".pfm", ".npy", ".exr"])
def test_float_disparity_round_trip_is_exact_and_keeps_invalid(tmp_path, disparity, ext):
    write_disparity(tmp_path / f"d{ext}", disparity)
    back = read_disparity(tmp_path / f"d{ext}")
    valid = np.isfinite(disparity)
    assert back.dtype == np.float32 and back.shape == disparity.shape
    assert np.array_equal(back[valid], disparity[valid])
    assert np.isnan(back[~valid]).all()


def test_pfm_disparity_stores_invalid_as_inf_like_middlebury(tmp_path, disparity):
    write_disparity(tmp_path / "d.pfm", disparity)
    assert np.isposinf(read_pfm(tmp_path / "d.pfm")[0, 0])


@pytest.mark.parametrize("scale", [256.0, 64.0])
def test_png16_disparity_round_trip_within_one_quantum(tmp_path, disparity, scale):
    write_disparity(tmp_path / "d.png", disparity, scale=scale)
    back = read_disparity(tmp_path / "d.png", scale=scale)
    valid = np.isfinite(disparity)
    assert np.abs(back[valid] - disparity[valid]).max() <= 0.5 / scale + 1e-6
    assert np.isnan(back[~valid]).all()
    stored = cv2.imread(str(tmp_path / "d.png"), cv2.IMREAD_UNCHANGED)
    assert stored.dtype == np.uint16 and (stored[~valid] == 0).all()


def test_png16_encoding_follows_kitti_rules():
    disp = np.array([[np.nan, -1.0, 0.0, 0.001, 255.0, 256.0]], dtype=np.float32)
    assert encode_png16_disparity(disp).tolist() == [[0, 0, 1, 1, 65280, 0]]


def test_png_disparity_must_be_16_bit(tmp_path):
    cv2.imwrite(str(tmp_path / "d8.png"), np.ones((4, 4), np.uint8))
    with pytest.raises(PolstereoError, match="single-channel 16-bit"):
        read_disparity(tmp_path / "d8.png")


def test_exr_disparity_reads_single_unnamed_channel(tmp_path):
    write_exr(tmp_path / "z.exr", {"whatever": np.full((2, 3), 7.5, np.float32)})
    assert np.array_equal(read_disparity(tmp_path / "z.exr"), np.full((2, 3), 7.5))


def test_unknown_disparity_extension_raises(tmp_path):
    (tmp_path / "d.txt").write_text("1")
    with pytest.raises(PolstereoError, match="unknown disparity format"):
        read_disparity(tmp_path / "d.txt")


# ----------------------------------------------------------------------------- EXR
def test_exr_named_channels_round_trip_exactly(tmp_path, rng):
    channels = {"S0.R": rng.random((5, 7), dtype=np.float32), "depth.T": rng.random((5, 7), dtype=np.float32)}
    write_exr(tmp_path / "s.exr", channels)
    back = read_exr(tmp_path / "s.exr")
    assert set(back) == set(channels)
    for name in channels:
        assert back[name].dtype == np.float32 and np.array_equal(back[name], channels[name])


def test_exr_rgb_image_round_trip(tmp_path, rng):
    image = rng.random((4, 5, 3), dtype=np.float32)
    write_image(tmp_path / "c.exr", image)
    assert set(read_exr(tmp_path / "c.exr")) == {"R", "G", "B"}
    assert np.array_equal(read_image(tmp_path / "c.exr"), image)


def test_exr_channels_of_different_sizes_are_refused(tmp_path):
    with pytest.raises(PolstereoError, match="one size"):
        write_exr(tmp_path / "bad.exr", {"a": np.zeros((2, 2)), "b": np.zeros((3, 2))})


def test_missing_openexr_package_says_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "OpenEXR", None)
    with pytest.raises(PolstereoError, match="install OpenEXR"):
        write_exr(tmp_path / "a.exr", {"Y": np.zeros((2, 2), np.float32)})


def test_corrupt_exr_raises_naming_the_file(tmp_path):
    (tmp_path / "c.exr").write_bytes(b"\x76\x2f\x31\x01garbage")
    with pytest.raises(PolstereoError, match=r"c\.exr: not a readable EXR file"):
        read_exr(tmp_path / "c.exr")


# ----------------------------------------------------------------------------- images
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 3)])
def test_png_round_trip_keeps_dtype_and_values(tmp_path, rng, dtype, shape):
    image = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    write_image(tmp_path / "i.png", image)
    back = read_image(tmp_path / "i.png")
    assert back.dtype == dtype and np.array_equal(back, image)


def test_colour_images_are_rgb_in_memory_and_bgr_on_disk_for_opencv(tmp_path):
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 200
    write_image(tmp_path / "r.png", red)
    assert cv2.imread(str(tmp_path / "r.png"))[0, 0].tolist() == [0, 0, 200]
    assert read_image(tmp_path / "r.png")[0, 0].tolist() == [200, 0, 0]


def test_png_refuses_float_images(tmp_path):
    with pytest.raises(PolstereoError, match="PNG stores uint8 or uint16"):
        write_image(tmp_path / "f.png", np.zeros((2, 2), np.float32))


def test_float_image_round_trips_through_npy_and_pfm(tmp_path, rng):
    image = rng.random((3, 4), dtype=np.float32)
    for name in ("f.npy", "f.pfm"):
        write_image(tmp_path / name, image)
        assert np.array_equal(read_image(tmp_path / name), image)


@pytest.mark.parametrize("reader,name", [(read_image, "gone.png"), (read_disparity, "gone.pfm"),
                                         (read_exr, "gone.exr"), (read_pfm, "gone.pfm")])
def test_missing_file_raises_one_line_naming_it(tmp_path, reader, name):
    with pytest.raises(PolstereoError) as err:
        reader(tmp_path / name)
    assert str(err.value) == f"{tmp_path / name}: no such file"


def test_corrupt_png_raises_naming_the_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(PolstereoError, match=r"bad\.png: not a readable image"):
        read_image(tmp_path / "bad.png")


def test_writes_leave_no_temporary_files(tmp_path, rng, disparity):
    write_image(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
    write_disparity(tmp_path / "d.png", disparity)
    write_pfm(tmp_path / "p.pfm", disparity)
    write_exr(tmp_path / "e.exr", {"Y": disparity})
    with pytest.raises(PolstereoError):
        write_image(tmp_path / "f.png", np.zeros((2, 2), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "d.png", "e.exr", "p.pfm"]


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "keep.pfm"
    write_pfm(target, np.ones((2, 2), np.float32))
    before = target.read_bytes()

    def broken_write_bytes(self, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(images.Path, "write_bytes", broken_write_bytes)
    with pytest.raises(KeyboardInterrupt):
        write_pfm(target, np.zeros((2, 2), np.float32))
    monkeypatch.undo()
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["keep.pfm"]
