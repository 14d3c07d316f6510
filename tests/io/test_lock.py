import os
import signal
import subprocess
import sys

import pytest

from polstereo.errors import PolstereoError
from polstereo.io.lock import lock_path, output_lock

HOLD = "import sys, time\nfrom polstereo.io.lock import output_lock\nwith output_lock(sys.argv[1]):\n" \
       "    print('held', flush=True)\n    time.sleep(60)\n"


def hold_in_subprocess(output) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(output)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_the_lock_lives_beside_the_output_not_inside(tmp_path):
    assert lock_path(tmp_path / "runs" / "A") == tmp_path / "runs" / ".A.polstereo-lock"
    assert lock_path(tmp_path / "model.onnx") == tmp_path / ".model.onnx.polstereo-lock"


def test_a_second_writer_is_refused_naming_the_holders_pid(tmp_path):
    holder = hold_in_subprocess(tmp_path / "out")
    try:
        with pytest.raises(PolstereoError) as err:
            with output_lock(tmp_path / "out", "data set"):
                pass
        message = str(err.value)
        assert f"pid {holder.pid}" in message and "data set" in message and "\n" not in message
        assert err.value.exit_code == 1
    finally:
        holder.kill()
        holder.wait()


def test_a_second_lock_in_the_same_process_is_refused_too(tmp_path):
    with output_lock(tmp_path / "out"):
        with pytest.raises(PolstereoError, match=f"pid {os.getpid()}"):
            with output_lock(tmp_path / "out"):
                pass


def test_the_lock_of_a_killed_holder_never_blocks(tmp_path):
    holder = hold_in_subprocess(tmp_path / "out")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_path(tmp_path / "out").exists()  # left behind by kill -9 ...
    with output_lock(tmp_path / "out"):          # ... and taken at once
        pass


def test_a_clean_exit_removes_the_lock_file_and_the_folders_made_for_it(tmp_path):
    with output_lock(tmp_path / "new" / "deeper" / "out") as path:
        assert path.exists()
    assert not (tmp_path / "new").exists()


def test_an_error_inside_the_block_releases_the_lock(tmp_path):
    with pytest.raises(RuntimeError):
        with output_lock(tmp_path / "out"):
            raise RuntimeError("boom")
    with output_lock(tmp_path / "out"):
        pass


def test_other_outputs_lock_independently(tmp_path):
    with output_lock(tmp_path / "a"), output_lock(tmp_path / "b"):
        pass
