import os
import signal

import pytest

from polstereo.io import atomic
from polstereo.io.atomic import atomic_file_set, atomic_path


def test_a_file_set_replaces_its_namesakes_and_removes_stale_ones(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / name).write_text("old")
    (tmp_path / "other").write_text("keep")
    with atomic_file_set(tmp_path, ["a", "b", "c"]) as staged:
        (staged / "a").write_text("new")
        (staged / "b").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "other"]
    assert (tmp_path / "a").read_text() == (tmp_path / "b").read_text() == "new"


def test_a_failed_file_set_keeps_the_old_set_and_leaves_no_staging(tmp_path):
    (tmp_path / "a").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file_set(tmp_path, ["a", "b"]) as staged:
            (staged / "a").write_text("new")
            (staged / "b").write_text("new")
            raise RuntimeError("disk trouble")
    assert [p.name for p in tmp_path.iterdir()] == ["a"] and (tmp_path / "a").read_text() == "old"


def test_a_failed_file_set_removes_the_folder_it_created(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_file_set(tmp_path / "new" / "out", ["a"]):
            raise RuntimeError("failed at the start")
    assert not any(tmp_path.iterdir())


def test_a_failed_file_set_keeps_a_folder_that_existed(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(RuntimeError):
        with atomic_file_set(tmp_path / "out", ["a"]):
            raise RuntimeError("failed at the start")
    assert (tmp_path / "out").is_dir()


def test_a_failed_first_file_removes_the_folder_it_created_but_not_a_folder_with_files(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "run" / "x.txt"):
            raise RuntimeError("failed")
    assert not (tmp_path / "run").exists()
    with atomic_path(tmp_path / "run" / "x.txt") as tmp:
        tmp.write_text("kept")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "run" / "y.txt"):
            raise RuntimeError("failed")
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["x.txt"]


def test_ctrl_c_during_the_renames_waits_until_the_set_is_complete(tmp_path, monkeypatch):
    real_replace = os.replace
    calls = []

    def replace_and_interrupt(src, dst):
        calls.append(dst)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # arrives between the first and the second rename
        real_replace(src, dst)
    monkeypatch.setattr(atomic.os, "replace", replace_and_interrupt)
    with pytest.raises(KeyboardInterrupt):
        with atomic_file_set(tmp_path, ["a", "b"]) as staged:
            (staged / "a").write_text("new")
            (staged / "b").write_text("new")
    assert len(calls) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_atomic_path_names_the_final_file_when_the_disk_is_full(tmp_path):
    import errno

    with pytest.raises(OSError) as err:
        with atomic_path(tmp_path / "out.json") as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "out.json")
    assert list(tmp_path.iterdir()) == []
