"""The helper scripts under scripts/ that training and GPU sessions rely on."""

import subprocess
import sys
from pathlib import Path

import torch
from click.testing import CliRunner

from polstereo.cli.main import cli
from polstereo.models.files import read_payload, save_model
from polstereo.models.registry import build_model
from tests.training.conftest import tiny_data  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--batch-size", "1", "--crop-size", "32", "48", "--workers", "0", "--iters", "1", "--val-every", "0",
        "--save-every", "0", "--quiet"]


def compare(a, b):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "lab" / "compare_checkpoints.py"), str(a), str(b)],
                          capture_output=True, text=True)


def test_compare_checkpoints_reports_identical_and_different_weights(tmp_path):
    torch.manual_seed(0)
    model = build_model({"base": "tiny"})
    save_model(tmp_path / "a.ckpt", model)
    save_model(tmp_path / "b.ckpt", model)
    same = compare(tmp_path / "a.ckpt", tmp_path / "b.ckpt")
    assert same.returncode == 0 and "max |difference| 0 (identical weights)" in same.stdout
    with torch.no_grad():
        next(model.parameters()).add_(0.5)
    save_model(tmp_path / "c.ckpt", model)
    different = compare(tmp_path / "a.ckpt", tmp_path / "c.ckpt")
    assert different.returncode == 1 and "max |difference| 0.5 (largest in" in different.stdout
    torch.manual_seed(0)
    save_model(tmp_path / "d.ckpt", build_model({"base": "small"}))
    mismatch = compare(tmp_path / "a.ckpt", tmp_path / "d.ckpt")
    assert mismatch.returncode == 1 and mismatch.stderr.startswith("Error: ")


def test_run_stage_resumes_interrupted_runs_and_refuses_changed_options(tiny_data, tmp_path):
    train = str(tiny_data / "train.h5")
    # an interrupted run: --stop-after 1 of 3 steps leaves an incomplete last.ckpt
    result = CliRunner().invoke(cli, ["adapt", "--train", train, "--out", str(tmp_path / "A"), "--steps", "3",
                                      "--stop-after", "1", *FAST])
    assert result.exit_code == 0, result.output

    def run_stage(steps):
        script = (f'source "{ROOT}/scripts/training_options.sh"; '
                  f'run_stage "{tmp_path}/A" "{sys.executable}" -m polstereo.cli.main adapt --train "{train}" '
                  f'--steps {steps} {" ".join(FAST)}')
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True)

    first = run_stage(3)
    assert first.returncode == 0, first.stderr
    last = tmp_path / "A" / "last.ckpt"
    lineage = read_payload(last)["lineage"][-1]
    assert lineage["complete"] and lineage["steps_done"] == 3
    before = last.read_bytes()
    again = run_stage(3)  # complete: ends at once, the checkpoint untouched
    assert again.returncode == 0, again.stderr
    assert last.read_bytes() == before
    changed = run_stage(5)  # a different plan must not pass for the finished one
    assert changed.returncode == 1 and "options differ" in changed.stderr


def options(env: dict[str, str], command: str) -> subprocess.CompletedProcess:
    script = f'source "{ROOT}/scripts/training_options.sh"; {command}'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **env})


def test_step_counts_scale_by_step_scale_and_data_by_scale():
    # SCALE multiplies both unless STEP_SCALE (fractional allowed) takes the steps: the shipped
    # tiny recipe (SCALE=1) keeps its 1000 steps; the GPU lease's STEP_SCALE=1.83 gave A 1830
    same = options({"SCALE": "1"}, "echo $(n 600) $(steps 1000) $(steps 100)")
    assert same.stdout.split() == ["600", "1000", "100"]
    lease = options({"SCALE": "5", "STEP_SCALE": "1.83"}, "echo $(n 600) $(steps 1500) $(steps 1000) $(steps 600)")
    assert lease.stdout.split() == ["3000", "2745", "1830", "1098"]
    assert options({"STEP_SCALE": "0.0001"}, "steps 100").stdout.split() == ["1"]  # never 0 steps
    bad = options({"STEP_SCALE": "1,5"}, "steps 100")
    assert bad.returncode == 2 and "STEP_SCALE must be a number like 1.5, got '1,5'" in bad.stderr


def test_bench_anchor_needs_a_raft_stereo_checkout(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_anchor.py"), "--raft-stereo",
                             str(tmp_path / "nowhere"), "--device", "cpu"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"bench_anchor: no RAFT-Stereo checkout at {tmp_path / 'nowhere'} "
        f"(expected {tmp_path / 'nowhere' / 'core' / 'raft_stereo.py'})"]


def test_motorcycle_scene_is_a_middlebury_folder_eval_reads(tmp_path):
    from polstereo.evaluation.ordinary import OrdinaryStereoFolder

    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "motorcycle_scene.py"), str(tmp_path / "moto")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    batch = next(OrdinaryStereoFolder(tmp_path / "moto").batches("cpu", None, (0, 1)))
    assert batch.left.shape[-2:] == (500, 741) and 0.9 < batch.valid.float().mean() < 0.95


def test_compare_models_prints_the_overall_table_and_reuses_its_reports(h5_file, tmp_path):
    command = [sys.executable, str(ROOT / "scripts" / "compare_models.py"), str(tmp_path / "cmp"), "--data",
               str(h5_file), "a=sgbm", "b=sgbm"]
    first = subprocess.run(command, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    rows = [line for line in first.stdout.splitlines() if line.startswith("| a |") or line.startswith("| b |")]
    assert len(rows) == 3 * 2 and rows[0].split("|")[2:] == rows[1].split("|")[2:]  # the same method twice
    assert (tmp_path / "cmp" / "a.json").exists()
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.stdout == first.stdout


def test_compare_models_names_a_missing_model_in_one_line(h5_file, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_models.py"), str(tmp_path / "cmp"),
                             "--data", str(h5_file), f"a={tmp_path / 'none.ckpt'}"], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1


def test_warm_start_recipe_runs_a_b_c_and_resumes_without_retraining(tiny_data, tmp_path):
    """scripts/warm_start_small.sh with STAGES="A B C": stage A from --init, stage B with a new
    correction module, stage C on top, each a complete run; run again, nothing is retrained."""
    data = tmp_path / "data"
    for part in ("generic", "glass"):
        (data / part).mkdir(parents=True)
        for split, source in (("train", "train"), ("val", "val"), ("test", "val")):
            (data / part / f"{split}.h5").symlink_to(tiny_data / f"{source}.h5")
    torch.manual_seed(0)
    save_model(tmp_path / "init.ckpt", build_model({"base": "tiny"}))
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "OMP_NUM_THREADS": "1",
           "STEPS": "4", "B_STEPS": "2", "C_STEPS": "4", "CROP": "32 44", "BATCH": "1", "WORKERS": "0",
           "DEVICE": "cpu", "MAXCORR": "100", "INIT": str(tmp_path / "init.ckpt"), "DATA": str(data),
           "STAGES": "A B C", "B_ARGS": "--correction-context unet --new-correction", "A_ARGS": "--iters 1"}

    def run():
        return subprocess.run(["bash", str(ROOT / "scripts" / "warm_start_small.sh"), str(tmp_path / "ws"), "intensity"],
                              capture_output=True, text=True, env=env)

    first = run()
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith(f"done: {tmp_path}/ws/intensity-C/last.ckpt")
    stages = {}
    for name, stage in (("intensity", "A"), ("intensity-B", "B"), ("intensity-C", "C")):
        payload = read_payload(tmp_path / "ws" / name / "last.ckpt")
        assert payload["lineage"][-1]["stage"] == stage and payload["lineage"][-1]["complete"]
        stages[name] = (tmp_path / "ws" / name / "last.ckpt").read_bytes()
    assert read_payload(tmp_path / "ws" / "intensity-C" / "last.ckpt")["model_config"]["correction"]["context"] == "unet"
    again = run()
    assert again.returncode == 0, again.stderr
    assert all((tmp_path / "ws" / name / "last.ckpt").read_bytes() == before for name, before in stages.items())
