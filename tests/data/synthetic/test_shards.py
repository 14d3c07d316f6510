"""Sharded output, worker-side compression and resume of ``generate_dataset``."""

import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner

from polstereo.data.h5 import H5Reader, ShardedReader, data_files, open_dataset, validate
from polstereo.data.loader import AugmentConfig, StereoCropDataset
from polstereo.data.synthetic import generate
from polstereo.data.synthetic.config import SyntheticConfig
from polstereo.data.synthetic.generate import RESUME_STAGING, generate_dataset
from polstereo.errors import EXIT_USAGE, PolstereoError

TINY = SyntheticConfig(width=32, height=24, noise=True, seed=3)
FIELDS = ("left", "right", "disparity", "transparent", "valid", "occlusion")
SPLIT = (0.6, 0.2, 0.2)


def _samples(reader):
    return [reader.read(i, normalize=False) for i in range(len(reader))]


def _same(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f), equal_nan=f == "disparity") for f in FIELDS) \
        and (a.name, a.scene_id) == (b.name, b.scene_id)


def _bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_sharded_output_holds_the_unsharded_samples_in_order(tmp_path):
    generate_dataset(tmp_path / "whole", TINY, 5, split=SPLIT, progress=False)
    generate_dataset(tmp_path / "shards", TINY, 5, split=SPLIT, shard_size=2, progress=False)
    names = sorted(p.name for p in (tmp_path / "shards").iterdir())
    assert names == ["test-00000.h5", "train-00000.h5", "train-00001.h5", "val-00000.h5"]
    for path in (tmp_path / "shards").iterdir():
        assert validate(path) == []
    for split in ("train", "val", "test"):
        whole = _samples(H5Reader(tmp_path / "whole" / f"{split}.h5"))
        sharded = _samples(open_dataset(tmp_path / "shards" / f"{split}-*.h5"))
        assert len(whole) == len(sharded) and all(_same(a, b) for a, b in zip(whole, sharded))
    provenance = H5Reader(tmp_path / "shards" / "train-00001.h5").attrs["provenance"]
    assert (provenance["sample_indices"], provenance["shard"], provenance["num_shards"]) == ([2, 3], 1, 2)


def test_shards_do_not_depend_on_the_number_of_workers(tmp_path):
    generate_dataset(tmp_path / "one", TINY, 3, split=(1, 0, 0), shard_size=2, workers=1, progress=False)
    generate_dataset(tmp_path / "two", TINY, 3, split=(1, 0, 0), shard_size=2, workers=2, progress=False)
    assert _bytes(tmp_path / "one") == _bytes(tmp_path / "two")


def test_with_workers_each_shard_is_written_by_a_worker_not_this_process(tmp_path, monkeypatch):
    passed_through = []
    real = generate._encoded_samples
    monkeypatch.setattr(generate, "_encoded_samples",
                        lambda config, indices, workers: passed_through.extend(indices) or real(config, indices, workers))
    generate_dataset(tmp_path / "two", TINY, 4, split=(1, 0, 0), shard_size=2, workers=2, progress=False)
    assert passed_through == []  # no sample came back to the main process to be written
    generate_dataset(tmp_path / "one", TINY, 4, split=(1, 0, 0), shard_size=2, workers=1, progress=False)
    assert passed_through == [0, 1, 2, 3]
    assert _bytes(tmp_path / "one") == _bytes(tmp_path / "two")


def _interrupt_at(monkeypatch, stop_index):
    real = generate._sample_at

    def ctrl_c(config, index):
        if index == stop_index:
            raise KeyboardInterrupt
        return real(config, index)
    monkeypatch.setattr(generate, "_sample_at", ctrl_c)


def test_an_interrupted_sharded_run_resumes_to_the_uninterrupted_set(tmp_path, monkeypatch):
    generate_dataset(tmp_path / "ref", TINY, 5, split=SPLIT, shard_size=2, progress=False)
    _interrupt_at(monkeypatch, 3)  # the train shards (0-1, 2) are complete, val-00000 (3) is being written
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "out", TINY, 5, split=SPLIT, shard_size=2, progress=False)
    staged = tmp_path / "out" / RESUME_STAGING
    assert sorted(p.name for p in staged.iterdir()) == ["train-00000.h5", "train-00001.h5"]  # only whole ones
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [RESUME_STAGING]
    (staged / ".val-00000.partial-x.h5").write_bytes(b"what a killed run leaves")
    monkeypatch.undo()
    made = []
    real = generate._sample_at
    monkeypatch.setattr(generate, "_sample_at", lambda config, index: made.append(index) or real(config, index))
    summary = generate_dataset(tmp_path / "out", TINY, 5, split=SPLIT, shard_size=2, resume=True, progress=False)
    assert made == [3, 4] and summary["resumed_files"] == 2
    assert _bytes(tmp_path / "out") == _bytes(tmp_path / "ref")  # the staging folder went too
    assert summary["transparent_share"] == pytest.approx(
        generate_dataset(tmp_path / "ref", TINY, 5, split=SPLIT, shard_size=2, progress=False,
                         overwrite=True)["transparent_share"])


def test_resume_redoes_a_kept_shard_of_another_configuration(tmp_path, monkeypatch):
    _interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "out", TINY, 5, split=SPLIT, shard_size=2, progress=False)
    monkeypatch.undo()
    other = dataclasses.replace(TINY, seed=4)
    summary = generate_dataset(tmp_path / "out", other, 5, split=SPLIT, shard_size=2, resume=True, progress=False)
    assert summary["resumed_files"] == 0
    assert H5Reader(tmp_path / "out" / "train-00000.h5").attrs["provenance"]["seed"] == 4


def test_a_rerun_without_resume_starts_over(tmp_path, monkeypatch):
    _interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "out", TINY, 5, split=SPLIT, shard_size=2, progress=False)
    monkeypatch.undo()
    summary = generate_dataset(tmp_path / "out", TINY, 5, split=SPLIT, shard_size=2, progress=False)
    assert summary["resumed_files"] == 0 and not (tmp_path / "out" / RESUME_STAGING).exists()


def test_overwrite_with_shards_removes_the_earlier_unsharded_set(tmp_path):
    generate_dataset(tmp_path / "out", TINY, 3, split=SPLIT, progress=False)
    with pytest.raises(PolstereoError, match="exists .* pass --overwrite"):
        generate_dataset(tmp_path / "out", TINY, 3, split=SPLIT, shard_size=2, progress=False)
    generate_dataset(tmp_path / "out", TINY, 3, split=SPLIT, shard_size=2, progress=False, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["test-00000.h5", "train-00000.h5",
                                                                    "val-00000.h5"]


def test_resume_without_shards_is_a_usage_error(tmp_path):
    with pytest.raises(PolstereoError, match="--shard-size") as err:
        generate_dataset(tmp_path / "out", TINY, 3, resume=True, progress=False)
    assert err.value.exit_code == EXIT_USAGE and not (tmp_path / "out").exists()


def test_a_glob_reads_all_shards_as_one_training_dataset(tmp_path):
    generate_dataset(tmp_path / "d", TINY, 5, split=(1, 0, 0), shard_size=2, progress=False)
    dataset = StereoCropDataset(str(tmp_path / "d" / "train-*.h5"), AugmentConfig.evaluation())
    assert len(dataset) == 5 and isinstance(dataset.reader, ShardedReader)
    whole = _samples(H5Reader(tmp_path / "d" / "train-00002.h5"))
    item = dataset[4]
    assert np.array_equal(item["left"].numpy(), whole[0].left)


def test_a_glob_that_matches_nothing_is_a_one_line_usage_error(tmp_path):
    with pytest.raises(PolstereoError) as err:
        data_files(tmp_path / "train-*.h5")
    assert err.value.exit_code == EXIT_USAGE and "no file matches" in str(err.value)
    assert "\n" not in str(err.value)


def test_adapt_refuses_a_glob_that_matches_nothing(tmp_path):
    from polstereo.cli.main import cli

    result = CliRunner().invoke(cli, ["adapt", "--train", str(tmp_path / "nothing-*.h5"), "--out",
                                      str(tmp_path / "run"), "--steps", "2", "--device", "cpu"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "no file matches this pattern" in result.output and len(result.output.strip().splitlines()) == 1


def test_make_synthetic_cli_writes_shards(tmp_path):
    from polstereo.cli.synthetic import make_synthetic_cmd

    result = CliRunner().invoke(make_synthetic_cmd, [str(tmp_path / "out"), "--num", "3", "--size", "32x24",
                                                     "--split", "1", "0", "0", "--shard-size", "2"])
    assert result.exit_code == 0, result.output
    assert "train-*.h5 (3 in 2 shards)" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["train-00000.h5", "train-00001.h5"]
