"""Full and read-only disks, and an --out that is a file: one line naming the path, exit 1, nothing left."""

from __future__ import annotations

import errno
import os
import subprocess
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from polstereo.cli.main import cli, os_error_line
from polstereo.models.registry import build_model
from polstereo.training.checkpoint import save_checkpoint
from tests.training.conftest import tiny_data  # noqa: F401  (fixture)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, path) -> str:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    (line,) = [x for x in result.output.splitlines() if x.startswith("Error: ")]
    assert str(path) in line
    return line


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    return save_checkpoint(path, build_model({"base": "tiny", "correction": True}), stage="C",
                           lineage=[{"stage": "A"}, {"stage": "B"}, {"stage": "C"}])


@pytest.mark.parametrize("err, text", [
    (OSError(errno.ENOSPC, "No space left on device", "/data/x.h5"), "/data/x.h5: no space left on device"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/run"), "/ro/run: read-only file system"),
    (FileExistsError(errno.EEXIST, "File exists", "runs/A"), "runs/A: exists and is not a directory"),
    (OSError(errno.EIO, "Input/output error"), "Input/output error"),
])
def test_os_errors_become_one_line_naming_the_path(err, text):
    assert os_error_line(err) == text


def test_adapt_with_out_an_existing_file_is_one_line_exit_1(tiny_data, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("x")
    result = invoke("adapt", "--init", "none", "--train", tiny_data / "train.h5", "--steps", 1, "--out", taken)
    assert "exists and is not a directory" in one_line_error(result, taken)
    assert taken.read_text() == "x"


def test_infer_with_out_an_existing_file_is_one_line_exit_1(tiny_data, ckpt, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("x")
    result = invoke("infer", ckpt, "--data", tiny_data / "val.h5", "--out", taken, "--quiet")
    one_line_error(result, taken)
    assert taken.read_text() == "x"


def test_eval_json_on_a_read_only_disk_is_one_line_exit_1(tiny_data, ckpt, tmp_path, monkeypatch):
    from polstereo.io import atomic

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / ".r.partial-abc.json"))
    monkeypatch.setattr(atomic.tempfile, "mkstemp", read_only)
    result = invoke("eval", ckpt, "--data", tiny_data / "val.h5", "--iters", 1, "--json", tmp_path / "r.json")
    assert one_line_error(result, tmp_path / "r.json").endswith("r.json: read-only file system")


def test_checkpoint_write_on_a_full_disk_is_one_line_and_leaves_no_file(tmp_path, monkeypatch):
    from polstereo.models import files
    from polstereo.training import checkpoint

    def no_space(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    monkeypatch.setattr(files.torch, "save", no_space)  # checkpoints are written by the model-file writer
    monkeypatch.setattr(files.shutil, "disk_usage", lambda p: SimpleNamespace(free=0))
    from polstereo.errors import PolstereoError

    with pytest.raises(PolstereoError, match="last.ckpt: cannot write \\(no space left on device\\)"):
        checkpoint.save_checkpoint(tmp_path / "last.ckpt", build_model({"base": "tiny"}), stage="A")
    assert list(tmp_path.iterdir()) == []


def test_make_synthetic_on_a_full_disk_stops_before_libhdf5_fails(tmp_path, monkeypatch):
    from polstereo.data.h5 import writer

    monkeypatch.setattr(writer.shutil, "disk_usage", lambda p: SimpleNamespace(free=4096))
    result = invoke("make-synthetic", tmp_path / "d", "--num", 2, "--size", "32x24", "--no-noise", "--quiet")
    assert "no space left on device" in one_line_error(result, tmp_path / "d" / "train.h5")
    assert not (tmp_path / "d").exists()  # nor the folder the failed run created


@pytest.fixture
def full_tmpfs(tmp_path):
    """A 256 kB tmpfs filled to the brim, where the platform lets us mount one (root on Linux)."""
    mount = tmp_path / "full"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with open(mount / "filler", "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\0" * 4096)
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_commands_on_a_real_full_disk_give_one_line_and_leave_no_partial_file(full_tmpfs, tiny_data, ckpt):
    result = invoke("make-synthetic", full_tmpfs / "syn", "--num", 2, "--size", "32x24", "--quiet")
    assert "no space left on device" in one_line_error(result, full_tmpfs / "syn")
    result = invoke("eval", ckpt, "--data", tiny_data / "val.h5", "--iters", 1, "--json", full_tmpfs / "e.json")
    assert "no space left on device" in one_line_error(result, full_tmpfs / "e.json")
    leftovers = [p.name for p in full_tmpfs.rglob("*") if p.is_file() and p.name != "filler"]
    assert leftovers == []
