import h5py
import numpy as np
import pytest

from polstereo.data.h5 import (FORMAT_VERSION, H5Reader, H5Writer, require_valid, validate,
                               write_samples)
from polstereo.errors import PolstereoError
from tests.conftest import make_sample


@pytest.mark.parametrize("dtype,channels,color", [(np.uint8, 1, "mono"), (np.uint16, 1, "mono"),
                                                  (np.float32, 3, "rgb")])
def test_round_trip_preserves_arrays_and_attributes(tmp_path, rng, dtype, channels, color):
    samples = [make_sample(rng, dtype=dtype, channels=channels, name=f"n{i}") for i in range(2)]
    path = tmp_path / "rt.h5"
    write_samples(path, samples, color=color, provenance={"source": "unit"})
    reader = H5Reader(path)
    assert len(reader) == 2
    assert reader.attrs["color"] == color and reader.attrs["provenance"] == {"source": "unit"}
    assert reader.attrs["format_version"] == FORMAT_VERSION
    for original, got in zip(samples, reader):
        white = {np.uint8: 255.0, np.uint16: 65535.0}.get(dtype, 1.0)
        np.testing.assert_allclose(got.left, original.left.astype(np.float32) / white, rtol=1e-6)
        np.testing.assert_allclose(got.right, original.right.astype(np.float32) / white, rtol=1e-6)
        np.testing.assert_array_equal(got.disparity, original.disparity)  # NaNs compare equal here
        np.testing.assert_array_equal(got.transparent, original.transparent)
        np.testing.assert_array_equal(got.occlusion, original.occlusion)
        assert got.name == original.name and got.focal_px == 120.0 and got.baseline_m == 0.05
    assert validate(path) == []


def test_raw_read_keeps_dtype_and_white_level(tmp_path, rng):
    sample = make_sample(rng, dtype=np.uint16)
    sample.white_level = 4095.0
    sample.left = (sample.left % 4096).astype(np.uint16)
    sample.right = (sample.right % 4096).astype(np.uint16)
    write_samples(tmp_path / "a.h5", [sample])
    raw = H5Reader(tmp_path / "a.h5").read(0, normalize=False)
    assert raw.left.dtype == np.uint16 and raw.white_level == 4095.0
    norm = H5Reader(tmp_path / "a.h5").read(0)
    assert norm.left.max() <= 1.0
    np.testing.assert_allclose(norm.left, sample.left / 4095.0, rtol=1e-6)


def test_crop_reads_exactly_the_window(h5_file):
    reader = H5Reader(h5_file)
    full = reader.read(1)
    part = reader.read(1, crop=(3, 5, 10, 20))
    np.testing.assert_array_equal(part.left, full.left[:, :, 3:13, 5:25])
    np.testing.assert_array_equal(part.disparity, full.disparity[3:13, 5:25])


def test_crop_outside_image_is_refused(h5_file):
    with pytest.raises(PolstereoError, match="outside"):
        H5Reader(h5_file).read(0, crop=(20, 0, 10, 10))


def test_images_are_chunked_in_spatial_tiles_with_checksums(tmp_path, rng):
    write_samples(tmp_path / "c.h5", [make_sample(rng, h=150, w=200)])
    with h5py.File(tmp_path / "c.h5") as f:
        left = f["samples/000000/left"]
        assert left.chunks == (4, 1, 64, 64)
        assert left.fletcher32 and left.compression == "lzf"
        assert f["samples/000000/disparity"].chunks == (64, 64)


def test_interrupted_write_leaves_no_file_and_keeps_the_old_one(tmp_path, rng):
    path = tmp_path / "out.h5"
    write_samples(path, [make_sample(rng)])
    before = path.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with H5Writer(path) as writer:
            writer.append(make_sample(rng))
            raise KeyboardInterrupt
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]


def test_interrupted_first_write_leaves_nothing(tmp_path, rng):
    with pytest.raises(RuntimeError):
        with H5Writer(tmp_path / "new.h5") as writer:
            writer.append(make_sample(rng))
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mutate,message", [
    (lambda s: setattr(s, "left", s.left[:3]), "expected \\(4, 1, H, W\\)"),
    (lambda s: setattr(s, "right", s.right[..., :-1]), "differ"),
    (lambda s: setattr(s, "disparity", s.disparity[:-1]), "disparity has shape"),
    (lambda s: setattr(s, "disparity", -s.disparity), "negative disparity"),
    (lambda s: setattr(s, "left", s.left.astype(np.int32)), "dtype int32"),
    (lambda s: setattr(s, "focal_px", -1.0), "focal_px must be a positive"),
])
def test_writer_rejects_malformed_samples(tmp_path, rng, mutate, message):
    sample = make_sample(rng)
    mutate(sample)
    with pytest.raises(PolstereoError, match=message):
        write_samples(tmp_path / "bad.h5", [sample])
    assert not (tmp_path / "bad.h5").exists()


def test_writer_rejects_nan_in_float_images(tmp_path, rng):
    sample = make_sample(rng, dtype=np.float32)
    sample.left[0, 0, 0, 0] = np.nan
    with pytest.raises(PolstereoError, match="NaN"):
        write_samples(tmp_path / "bad.h5", [sample])


def test_unlabeled_samples_are_allowed(tmp_path, rng):
    sample = make_sample(rng, with_masks=False)
    sample.disparity = None
    write_samples(tmp_path / "u.h5", [sample])
    got = H5Reader(tmp_path / "u.h5").read(0)
    assert got.disparity is None and got.transparent is None and got.valid_mask() is None
    assert validate(tmp_path / "u.h5") == []


def test_valid_mask_combines_finite_disparity_and_valid(rng):
    sample = make_sample(rng)
    sample.valid = np.ones(sample.shape, bool)
    sample.valid[5, 5] = False
    mask = sample.valid_mask()
    assert not mask[0, 0] and not mask[5, 5] and mask[10, 10]


def test_file_written_with_plain_h5py_validates(tmp_path, rng):
    """docs/format.md promises that a plain h5py writer following it produces a valid file."""
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "polstereo"
        f.attrs["format_version"] = 1
        f.attrs["angles_deg"] = [0.0, 45.0, 90.0, 135.0]
        f.attrs["color"] = "mono"
        g = f.create_group("samples/000000")
        g["left"] = rng.integers(0, 256, (4, 1, 8, 10), dtype=np.uint8)
        g["right"] = rng.integers(0, 256, (4, 1, 8, 10), dtype=np.uint8)
        g["disparity"] = np.full((8, 10), 2.5, np.float32)
        g["transparent"] = np.zeros((8, 10), np.uint8)
    assert validate(path) == []
    assert H5Reader(path).read(0).disparity[0, 0] == 2.5


def test_validator_reports_every_violation(tmp_path, rng):
    path = tmp_path / "v.h5"
    write_samples(path, [make_sample(rng), make_sample(rng)])
    with h5py.File(path, "a") as f:
        del f["samples/000000/right"]
        del f["samples/000001/disparity"]
        f["samples/000001/disparity"] = np.full((3, 3), 1.0, np.float32)
        f["samples/000001/transparent"][0, 0] = 7
        f.attrs["num_samples"] = 5
    problems = validate(path)
    text = "\n".join(problems)
    assert "missing dataset 'right'" in text
    assert "000001/disparity: shape (3, 3)" in text
    assert "num_samples=5" in text
    assert len(problems) == 3  # the mask value check runs only on structurally sound samples
    with pytest.raises(PolstereoError, match="and 2 more"):
        require_valid(path)


def test_validator_finds_mask_values_and_negative_disparity(tmp_path, rng):
    path = tmp_path / "v.h5"
    write_samples(path, [make_sample(rng)])
    with h5py.File(path, "a") as f:
        f["samples/000000/transparent"][0, 0] = 7
        f["samples/000000/disparity"][1, 1] = -3.0
    text = "\n".join(validate(path))
    assert "transparent: values other than 0 and 1" in text
    assert "disparity: negative values" in text


def test_corrupted_chunk_fails_checksum(tmp_path, rng):
    path = tmp_path / "x.h5"
    write_samples(path, [make_sample(rng, h=64, w=64)], compression="none")
    with h5py.File(path) as f:
        offset = f["samples/000000/disparity"].id.get_offset() if f["samples/000000/disparity"].chunks is None \
            else f["samples/000000/disparity"].id.get_chunk_info(0).byte_offset
    data = bytearray(path.read_bytes())
    data[offset + 100] ^= 0xFF
    path.write_bytes(bytes(data))
    problems = validate(path)
    assert any("checksum" in p for p in problems)
    with pytest.raises(PolstereoError, match="corrupt"):
        H5Reader(path).read(0)


def test_foreign_and_missing_files_raise_one_line_errors(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(PolstereoError, match="not a polstereo dataset"):
        validate(foreign)
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(PolstereoError, match="not a readable HDF5 file"):
        H5Reader(text)
    with pytest.raises(PolstereoError, match="no such file"):
        H5Reader(tmp_path / "missing.h5")


def test_newer_format_version_is_refused(tmp_path, h5_file):
    with h5py.File(h5_file, "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(PolstereoError, match="upgrade polstereo"):
        H5Reader(h5_file)


def test_reader_survives_pickling_for_worker_processes(h5_file):
    import pickle

    reader = H5Reader(h5_file)
    reader.read(0)
    clone = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(clone.read(2).left, reader.read(2).left)


def test_writer_rejects_too_few_angles(tmp_path):
    with pytest.raises(PolstereoError, match="3 distinct"):
        H5Writer(tmp_path / "a.h5", angles_deg=(0, 180))


def test_atomic_outputs_get_umask_permissions_not_0600(tmp_path, rng):
    import os

    old = os.umask(0o022)
    try:
        write_samples(tmp_path / "p.h5", [make_sample(rng)])
    finally:
        os.umask(old)
    assert (tmp_path / "p.h5").stat().st_mode & 0o777 == 0o644


def test_validator_reports_missing_required_root_attributes(h5_file):
    with h5py.File(h5_file, "a") as f:
        del f.attrs["angles_deg"]
        del f.attrs["color"]
    problems = validate(h5_file)
    assert "/: missing root attribute 'angles_deg'" in problems and "/: missing root attribute 'color'" in problems


def _one_sample_file(tmp_path, rng, change):
    path = tmp_path / "edited.h5"
    write_samples(path, [make_sample(rng, h=8, w=8)])
    with h5py.File(path, "a") as f:
        change(f)
    return path


@pytest.mark.parametrize("change, problem", [
    (lambda f: f.attrs.__setitem__("angles_deg", "0,45"), "angles_deg must be a 1-D array of numbers"),
    (lambda f: f.attrs.__setitem__("angles_deg", np.zeros((2, 4))), "angles_deg must be a 1-D array of numbers"),
    (lambda f: f.attrs.__setitem__("angles_deg", [0.0, 45.0, np.nan, 135.0]), "holds NaN or infinite values"),
    (lambda f: f.attrs.__setitem__("num_samples", "x"), "num_samples must be an integer, got 'x'"),
    (lambda f: f.attrs.__setitem__("color", 3), "is not one of ['mono', 'rgb']"),
    (lambda f: f["samples/000000/left"].attrs.__setitem__("white_level", "x"),
     "/samples/000000/left: white_level 'x' must be a positive number"),
    (lambda f: f["samples/000000"].attrs.__setitem__("focal_px", "x"),
     "/samples/000000: attribute focal_px='x' must be a positive number"),
    (lambda f: f["samples/000000"].attrs.__setitem__("glass_kinds", np.array([1, 2])),
     "attribute glass_kinds=array([1, 2]) must be text"),
    (lambda f: f["samples/000000"].attrs.__setitem__("lighting", np.array([1.0, 2.0])),
     "attribute lighting=array([1., 2.]) must be text"),
])
def test_wrong_typed_attributes_are_violations_not_tracebacks(tmp_path, rng, change, problem):
    path = _one_sample_file(tmp_path, rng, change)
    problems = validate(path)
    assert len(problems) == 1 and problem in problems[0]


@pytest.mark.parametrize("change", [
    lambda f: f.attrs.__setitem__("angles_deg", [0.0, 45.0, np.nan, 135.0]),
    lambda f: f["samples/000000/left"].attrs.__setitem__("white_level", "x"),
    lambda f: f["samples/000000"].attrs.__setitem__("baseline_m", np.array([1.0, 2.0])),
    lambda f: f["samples/000000"].attrs.__setitem__("glass_kinds", 3),
])
def test_reader_refuses_wrong_typed_attributes_with_one_line(tmp_path, rng, change):
    path = _one_sample_file(tmp_path, rng, change)
    with pytest.raises(PolstereoError) as err:
        H5Reader(path).read(0)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_non_integer_format_version_is_a_one_line_error(tmp_path, rng):
    path = _one_sample_file(tmp_path, rng, lambda f: f.attrs.__setitem__("format_version", "one"))
    for call in (validate, H5Reader):
        with pytest.raises(PolstereoError, match="format_version must be an integer, got 'one'"):
            call(path)


def test_zero_size_images_are_a_violation(tmp_path, rng):
    def empty(f):
        g = f["samples/000000"]
        for name in list(g):
            del g[name]
        g["left"] = g["right"] = np.zeros((4, 1, 0, 8), np.uint8)
    path = _one_sample_file(tmp_path, rng, empty)
    assert validate(path) == ["/samples/000000/left: shape (4, 1, 0, 8) is empty (every dimension must be at least 1)"]
    with pytest.raises(PolstereoError, match="image size"):
        H5Reader(path)


def test_a_full_disk_while_writing_is_one_line_and_leaves_no_file(tmp_path, rng, monkeypatch):
    import errno

    write_samples(tmp_path / "old.h5", [make_sample(rng, name="old")])
    before = (tmp_path / "old.h5").read_bytes()

    def no_space(self, sample):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(H5Writer, "_append", no_space)
    with pytest.raises(PolstereoError, match="old.h5: cannot write \\(No space left on device\\)"):
        write_samples(tmp_path / "old.h5", [make_sample(rng)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.h5"]  # no .partial file keeps the disk full
    assert (tmp_path / "old.h5").read_bytes() == before


def test_a_flush_failure_on_close_is_one_line_and_leaves_no_file(tmp_path, rng, monkeypatch):
    real_close = h5py.File.close

    def failing_close(self):
        real_close(self)
        raise OSError("Can't write data (file write failed: errno = 28, error message = 'No space left on device')")
    monkeypatch.setattr(h5py.File, "close", failing_close)
    with pytest.raises(PolstereoError, match="cannot write \\(No space left on device\\)"):
        write_samples(tmp_path / "new.h5", [make_sample(rng)])
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_glass_kinds_and_lighting_round_trip_and_absent_ones_read_as_unknown(tmp_path, rng):
    samples = [make_sample(rng, name="glass"), make_sample(rng, name="empty"), make_sample(rng, name="old")]
    samples[0].glass_kinds, samples[0].lighting = ("solid-sphere", "pane"), "window-env"
    samples[1].glass_kinds = ()
    write_samples(tmp_path / "k.h5", samples)
    assert validate(tmp_path / "k.h5") == []
    got = list(H5Reader(tmp_path / "k.h5"))
    assert [(s.glass_kinds, s.lighting) for s in got] == [(("solid-sphere", "pane"), "window-env"), ((), None),
                                                          (None, None)]
    with h5py.File(tmp_path / "k.h5") as f:
        assert f["samples/000000"].attrs["glass_kinds"] == "solid-sphere,pane"
        assert f["samples/000001"].attrs["glass_kinds"] == ""
        assert "glass_kinds" not in f["samples/000002"].attrs and "lighting" not in f["samples/000002"].attrs


def test_encoded_samples_carry_glass_kinds_and_lighting(tmp_path, rng):
    from polstereo.data.h5 import encode_sample

    sample = make_sample(rng, name="e")
    sample.glass_kinds, sample.lighting = ("thin-cup",), "room-env"
    with H5Writer(tmp_path / "e.h5") as writer:
        writer.append_encoded(encode_sample(sample, 4, 1))
    got = H5Reader(tmp_path / "e.h5").read(0)
    assert (got.glass_kinds, got.lighting) == (("thin-cup",), "room-env")


def test_hand_written_glass_kinds_text_is_split_and_trimmed(tmp_path, rng):
    path = _one_sample_file(tmp_path, rng, lambda f: f["samples/000000"].attrs.__setitem__(
        "glass_kinds", np.bytes_(b" sphere , slab,")))
    assert validate(path) == [] and H5Reader(path).read(0).glass_kinds == ("sphere", "slab")


@pytest.mark.parametrize("field, value, message", [
    ("glass_kinds", ("sphere,slab",), "glass_kinds must be a list of names without commas"),
    ("glass_kinds", "sphere", "glass_kinds must be a list of names without commas"),
    ("lighting", "two words", "lighting must be one word"),
])
def test_writer_rejects_malformed_scene_descriptions(tmp_path, rng, field, value, message):
    sample = make_sample(rng)
    setattr(sample, field, value)
    with pytest.raises(PolstereoError, match=message):
        write_samples(tmp_path / "bad.h5", [sample])
