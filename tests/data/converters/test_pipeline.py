import numpy as np
import pytest

from polstereo.data.converters import (
    CONVERTERS, ConvertConfig, SourceOptions, assign_splits, convert_dataset, read_split_file,
)
from polstereo.data.converters import pipeline
from polstereo.data.converters.folder import FolderConverter
from polstereo.data.converters.pipeline import ConversionFailed
from polstereo.data.h5 import H5Reader
from polstereo.errors import PolstereoError
from tests.data.converters.fixtures import write_folder_dataset

NAMES = [f"s{i:02d}" for i in range(20)]


def names_in(path):
    reader = H5Reader(path)
    return [reader.read(i, fields=()).name for i in range(len(reader))]


def test_split_is_deterministic_for_a_seed():
    assert assign_splits(NAMES, (0.8, 0.1, 0.1), seed=3) == assign_splits(list(reversed(NAMES)), (0.8, 0.1, 0.1), 3)
    assert assign_splits(NAMES, (0.8, 0.1, 0.1), seed=3) != assign_splits(NAMES, (0.8, 0.1, 0.1), seed=4)


def test_split_sizes_follow_the_ratios():
    splits = list(assign_splits(NAMES, (0.8, 0.1, 0.1), seed=0).values())
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (16, 2, 2)
    splits = list(assign_splits(NAMES, (2, 1, 1), seed=0).values())  # shares are normalised
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (10, 5, 5)


def test_split_rejects_negative_or_zero_shares():
    for bad in ((0, 0, 0), (1, -1, 0), (1, 1)):
        with pytest.raises(PolstereoError, match="--split"):
            assign_splits(NAMES, bad)


def test_split_file_is_parsed_with_comments(tmp_path):
    path = tmp_path / "splits.txt"
    path.write_text("# name split\ns00 train\n\ns01 test  # held out\n")
    assert read_split_file(path) == {"s00": "train", "s01": "test"}


@pytest.mark.parametrize("text,message", [("s00 training\n", ":1: expected 'name split'"),
                                          ("s00 train\ns00 val\n", ":2: sample 's00' is listed in two splits"),
                                          ("# nothing\n", "lists no samples")])
def test_bad_split_file_raises_with_line(tmp_path, text, message):
    (tmp_path / "s.txt").write_text(text)
    with pytest.raises(PolstereoError, match=message):
        read_split_file(tmp_path / "s.txt")


def test_split_file_decides_splits_and_reports_unlisted_and_missing(tmp_path, rng):
    write_folder_dataset(tmp_path / "src", rng, 3)
    (tmp_path / "s.txt").write_text("s00 val\ns02 train\nghost test\n")
    report = convert_dataset(ConvertConfig(src=tmp_path / "src", out=tmp_path / "out", split_file=tmp_path / "s.txt"))
    assert report.written == {"train": 1, "val": 1}
    assert names_in(tmp_path / "out" / "train.h5") == ["s02"] and names_in(tmp_path / "out" / "val.h5") == ["s00"]
    assert not (tmp_path / "out" / "test.h5").exists()
    assert {(s["name"], s["kind"]) for s in report.skipped} == {("s01", "not in split file"), ("ghost", "missing file")}


def test_ratio_split_writes_each_sample_once_in_name_order(tmp_path, rng):
    write_folder_dataset(tmp_path / "src", rng, 6)
    report = convert_dataset(ConvertConfig(src=tmp_path / "src", out=tmp_path / "out", split_ratios=(0.5, 0.25, 0.25)))
    per_split = {split: names_in(path) for split, path in report.files.items()}
    assert sorted(n for names in per_split.values() for n in names) == [f"s{i:02d}" for i in range(6)]
    assert all(names == sorted(names) for names in per_split.values())
    assert {split: len(names) for split, names in per_split.items()} == report.written


def test_two_workers_write_and_skip_the_same_as_one(tmp_path, rng):
    write_folder_dataset(tmp_path / "src", rng, 5)
    (tmp_path / "src" / "s02" / "mask.png").unlink()
    reports = [convert_dataset(ConvertConfig(src=tmp_path / "src", out=tmp_path / f"out{workers}",
                                             split_ratios=(1, 0, 0), workers=workers)) for workers in (1, 2)]
    assert reports[0].skipped == reports[1].skipped == [
        {"name": "s02", "split": "train", "kind": "missing file", "detail": "mask (mask.*)"}]
    one, two = H5Reader(tmp_path / "out1" / "train.h5"), H5Reader(tmp_path / "out2" / "train.h5")
    assert len(one) == len(two) == 4
    for i in range(4):
        a, b = one.read(i, normalize=False), two.read(i, normalize=False)
        assert a.name == b.name and np.array_equal(a.left, b.left)
        assert np.array_equal(a.disparity, b.disparity, equal_nan=True)


def test_existing_outputs_need_overwrite_and_stale_splits_are_removed(tmp_path, rng):
    write_folder_dataset(tmp_path / "src", rng, 4)
    config = ConvertConfig(src=tmp_path / "src", out=tmp_path / "out", split_ratios=(0.5, 0.5, 0))
    convert_dataset(config)
    with pytest.raises(PolstereoError, match="train.h5 exists; pass --overwrite"):
        convert_dataset(ConvertConfig(src=tmp_path / "src", out=tmp_path / "out", split_ratios=(1, 0, 0)))
    report = convert_dataset(ConvertConfig(src=tmp_path / "src", out=tmp_path / "out", split_ratios=(1, 0, 0),
                                           overwrite=True))
    assert report.removed == [str(tmp_path / "out" / "val.h5")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["train.h5"]


def test_interrupt_leaves_no_output_files(tmp_path, rng, monkeypatch):
    write_folder_dataset(tmp_path / "src", rng, 4)
    real_load = FolderConverter.load

    def load_then_interrupt(self, sample_dir, color):
        if sample_dir.name == "s03":
            raise KeyboardInterrupt
        return real_load(self, sample_dir, color)

    monkeypatch.setattr(FolderConverter, "load", load_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        convert_dataset(ConvertConfig(src=tmp_path / "src", out=tmp_path / "out", split_ratios=(0.5, 0.5, 0)))
    assert not (tmp_path / "out").exists()  # the folder the run made is gone with the run


def test_every_sample_skipped_raises_with_the_report(tmp_path, rng):
    write_folder_dataset(tmp_path / "src", rng, 2)
    for d in (tmp_path / "src").iterdir():
        (d / "mask.png").unlink()
    with pytest.raises(ConversionFailed, match="no sample converted .* 2 skipped; first: s00: missing file") as err:
        convert_dataset(ConvertConfig(src=tmp_path / "src", out=tmp_path / "out"))
    assert err.value.report.skip_counts() == {"missing file": 2}
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_missing_source_and_empty_source_raise(tmp_path):
    with pytest.raises(PolstereoError, match="no such source directory"):
        convert_dataset(ConvertConfig(src=tmp_path / "nope", out=tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PolstereoError, match="no sample directories"):
        convert_dataset(ConvertConfig(src=tmp_path / "empty", out=tmp_path / "out"))


def test_pattern_for_a_role_the_layout_lacks_is_a_usage_error(tmp_path):
    with pytest.raises(PolstereoError, match="has no file role") as err:
        CONVERTERS["folder"](SourceOptions(patterns={"depth": "depth.exr"}))
    assert err.value.exit_code == 2


def test_report_lines_list_splits_and_skips(tmp_path, rng):
    write_folder_dataset(tmp_path / "src", rng, 3)
    (tmp_path / "src" / "s01" / "left_0.png").unlink()
    report = convert_dataset(ConvertConfig(src=tmp_path / "src", out=tmp_path / "out", split_ratios=(1, 0, 0)))
    text = "\n".join(report.lines())
    assert "converted 2 samples" in text and "train:     2" in text
    assert "skipped 1 samples (1 missing file):\n  s01: missing file: left (left_0.*)" in text
    assert report.to_dict()["skip_counts"] == {"missing file": 1}
    assert pipeline.SPLITS == ("train", "val", "test")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_real_ctrl_c_stops_the_conversion_and_keeps_the_old_outputs(tmp_path, rng, monkeypatch, workers):
    import os
    import signal

    from polstereo.data.h5 import H5Writer

    write_folder_dataset(tmp_path / "src", rng, 6)
    out = tmp_path / "out"
    convert_dataset(ConvertConfig(src=tmp_path / "src", out=out, split_ratios=(0.5, 0.5, 0)))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_append = H5Writer.append
    appended = []

    def append_then_ctrl_c(self, sample):
        appended.append(sample.name)
        if len(appended) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # a real signal, as from the terminal, mid-conversion
        return real_append(self, sample)
    monkeypatch.setattr(H5Writer, "append", append_then_ctrl_c)
    handler = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN in a background job
    with pytest.raises(KeyboardInterrupt):
        convert_dataset(ConvertConfig(src=tmp_path / "src", out=out, split_ratios=(1, 0, 0), overwrite=True,
                                      workers=workers))
    assert len(appended) == 2  # stopped at the next sample, not at the end
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # old set whole, no staging left
    assert signal.getsignal(signal.SIGINT) is handler  # restored
