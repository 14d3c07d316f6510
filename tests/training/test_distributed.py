"""torchrun with 2 gloo processes on the CPU against a plain single-process run."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from polstereo.data.h5 import write_samples
from polstereo.models.files import load_model
from polstereo.models.registry import build_model
from polstereo.training.checkpoint import load_checkpoint
from tests.training.conftest import shifted_sample

# distinct samples, random crops and photometric augmentation: each slot of each step sees
# different data, so a rank taking the wrong slot or gradients not averaged would show
OPTS = ["--steps", "3", "--crop-size", "32", "48", "--workers", "0", "--iters", "1", "--val-every", "0",
        "--save-every", "0", "--quiet", "--seed", "5", "--device", "cpu", "--lr", "1e-2",
        "--lr-decay-method", "constant"]


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def polstereo(*args, nproc=None, cwd=None, timeout=180):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    prefix = [sys.executable, "-m"]
    if nproc:
        prefix += ["torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m"]
    cmd = prefix + ["polstereo.cli.main", *[str(a) for a in args]]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # torchrun starts each worker in a session of its own: kill them too, or they outlive the test
        for pid in _children(proc.pid) + [proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd[:6])} ... hung for {timeout} s; stderr ends:\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    rng = np.random.default_rng(0)
    write_samples(tmp_path / "d.h5", [shifted_sample(rng, shift=s) for s in (2.0, 4.0, 6.0, 3.0)])
    single = polstereo("adapt", "--train", tmp_path / "d.h5", "--val", tmp_path / "d.h5", "--out",
                       tmp_path / "one", "--batch-size", "2", *OPTS)
    assert single.returncode == 0, single.stderr
    multi = polstereo("adapt", "--train", tmp_path / "d.h5", "--val", tmp_path / "d.h5", "--out",
                      tmp_path / "two", "--batch-size", "1", *OPTS, nproc=2, cwd=tmp_path)
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["best.ckpt", "config.yaml", "last.ckpt",
                                                                    "metrics.jsonl", "train_curves.png"]
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["type"] for x in lines] == ["train", "val"]  # rank 0 logs once
    a, b = load_checkpoint(tmp_path / "one" / "last.ckpt"), load_checkpoint(tmp_path / "two" / "last.ckpt")
    assert b["global_batch"] == 2 and b["world_size"] == 2

    sample = shifted_sample(np.random.default_rng(9), shift=5.0)
    left, right = torch.from_numpy(sample.left)[None], torch.from_numpy(sample.right)[None]
    torch.manual_seed(5)
    untrained = build_model(a["model_config"]).eval()
    with torch.no_grad():
        out_a = load_model(tmp_path / "one" / "last.ckpt")[0].eval()(left, right, iters=1)["disparity"]
        out_b = load_model(tmp_path / "two" / "last.ckpt")[0].eval()(left, right, iters=1)["disparity"]
        out_0 = untrained(left, right, iters=1)["disparity"]
    moved = (out_a - out_0).abs().max().item()
    assert moved > 0.05, "training must change the outputs for this comparison to mean anything"
    # Biases just before a normalisation layer get ~0 gradient, which Adam turns into noise-driven
    # lr-sized steps; they do not affect the outputs, which must agree closely.
    torch.testing.assert_close(out_b, out_a, rtol=0, atol=1e-3)
    # validation metrics were reduced over both ranks: same pixels, same EPE as the single run
    assert a["val_metrics"]["final"]["all"]["pixels"] == b["val_metrics"]["final"]["all"]["pixels"]
    np.testing.assert_allclose(a["val_metrics"]["final"]["all"]["epe"], b["val_metrics"]["final"]["all"]["epe"],
                               rtol=1e-2)
    # a single-process resume of the 2-process run must refuse a different global batch
    more = polstereo("adapt", "--train", tmp_path / "d.h5", "--out", tmp_path / "two", "--batch-size", "1",
                     *OPTS, "--resume")
    assert more.returncode == 1 and "global batch of 2" in more.stderr


def test_a_run_that_fails_on_both_ranks_exits_cleanly_with_the_one_line_error(tmp_path):
    # lr 1e9 diverges: every rank agrees to skip the non-finite steps, then both stop with the
    # same error. They must leave the process group themselves: left to the interpreter's
    # exit, gloo's threads could abort a rank (exit code -6 in torchrun's report; 1 run in 5).
    rng = np.random.default_rng(0)
    write_samples(tmp_path / "d.h5", [shifted_sample(rng, shift=s) for s in (2.0, 4.0)])
    opts = [o if o != "1e-2" else "1e9" for o in OPTS]
    opts[opts.index("--steps") + 1] = "40"
    failed = polstereo("adapt", "--train", tmp_path / "d.h5", "--out", tmp_path / "two", "--batch-size", "1",
                       *opts, nproc=2, cwd=tmp_path)
    assert failed.returncode == 1
    # the first rank to end prints it; torchrun may stop the other (SIGTERM) before it does
    assert failed.stderr.count("Error: 20 consecutive non-finite losses at step 20; lower --lr") in (1, 2)
    # the first rank to end is torchrun's root cause (it then stops the other with SIGTERM)
    root = re.search(r"Root Cause.*?exitcode\s*:\s*(-?\d+)", failed.stderr, re.S)
    assert root and root.group(1) == "1", failed.stderr[-2000:]
    assert "[rank0]: Traceback" not in failed.stderr and "[rank1]: Traceback" not in failed.stderr


def test_release_after_error_frees_what_chained_frames_held_and_leaves_the_group(tmp_path):
    # the interrupt path: a KeyboardInterrupt inside the DDP forward becomes
    # `PolstereoError(...) from None`; the wrapper lives on in the *context's* frames
    import torch.distributed as dist
    import weakref

    from polstereo.errors import PolstereoError
    from polstereo.training.distributed import release_after_error

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        refs = []

        class Wrapper:
            pass

        def forward():
            wrapper = Wrapper()
            refs.append(weakref.ref(wrapper))
            raise KeyboardInterrupt

        try:
            try:
                forward()
            except KeyboardInterrupt:
                raise PolstereoError("interrupted at step 3") from None
        except PolstereoError as err:
            assert refs[0]() is not None
            release_after_error(err)
            assert refs[0]() is None and not dist.is_initialized()
            assert str(err) == "interrupted at step 3"
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
