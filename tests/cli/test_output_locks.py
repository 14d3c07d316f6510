"""One writer per output folder: a second command into the same --out is refused, the first completes."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from polstereo.cli.main import cli
from polstereo.io.lock import lock_path
from polstereo.training.checkpoint import load_checkpoint
from tests.training.conftest import tiny_data  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]
POLSTEREO = [sys.executable, "-c", "from polstereo.cli.main import main; main()"]
# the first run is frozen with SIGSTOP once it holds its lock, so the second always meets it
# running, however slow or fast the machine; SIGCONT lets it finish
ADAPT = ["--steps", "30", "--batch-size", "1", "--crop-size", "32", "48", "--workers", "0", "--iters", "1",
              "--val-every", "0", "--save-every", "10", "--log-every", "5", "--quiet"]


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([*POLSTEREO, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_lock(output, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not lock_path(output).exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the first run never took its lock"
        time.sleep(0.05)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_a_second_adapt_into_the_same_out_exits_1_and_the_first_completes_intact(tiny_data, tmp_path):
    out = tmp_path / "A"
    first = start("adapt", "--init", "none", "--train", tiny_data / "train.h5", "--out", out, *ADAPT)
    try:
        wait_for_lock(out, first)
        first.send_signal(signal.SIGSTOP)
        second = invoke("adapt", "--init", "none", "--train", tiny_data / "train.h5", "--out", out, *ADAPT)
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=600)
    assert second.exit_code == 1 and second.output.count("\n") == 1, second.output
    assert f"another polstereo process (pid {first.pid}" in second.output
    assert first.returncode == 0, err
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if json.loads(line).get("type") == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 30  # one run's lines, not two interleaved
    assert load_checkpoint(out / "last.ckpt")["step"] == 30
    assert not lock_path(out).exists()


def test_a_second_make_synthetic_is_refused_and_a_killed_one_leaves_no_blocking_lock(tmp_path):
    out = tmp_path / "set"
    args = ["make-synthetic", out, "--num", "40", "--size", "96", "64", "--workers", "1", "--quiet"]
    first = start(*args)
    try:
        wait_for_lock(out, first)
        first.send_signal(signal.SIGSTOP)
        second = invoke(*args, "--overwrite")
        assert first.poll() is None
        assert second.exit_code == 1 and second.output.count("\n") == 1, second.output
        assert f"pid {first.pid}" in second.output
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    again = invoke("make-synthetic", out, "--num", "6", "--size", "64", "48", "--workers", "1", "--quiet",
                   "--overwrite")
    assert again.exit_code == 0, again.output
    assert (out / "test.h5").exists() and not lock_path(out).exists()


HOLD = "import sys, time\nfrom polstereo.io.lock import output_lock\nwith output_lock(sys.argv[1]):\n" \
       "    print('held', flush=True)\n    time.sleep(120)\n"


@pytest.mark.parametrize("command", ["convert-dataset", "export", "infer"])
def test_every_writer_command_refuses_an_output_another_process_writes(command, tmp_path, h5_file):
    out = tmp_path / ("model.onnx" if command == "export" else "out")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        args = {"convert-dataset": ["convert-dataset", tmp_path, out],
                "export": ["export", ROOT / "models" / "polstereo-tiny-cpu.ckpt", out],
                "infer": ["infer", ROOT / "models" / "polstereo-tiny-cpu.ckpt", "--data", h5_file, "--out", out]}
        result = invoke(*args[command])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1 and f"another polstereo process (pid {holder.pid}" in result.output, result.output
    assert not out.exists()
