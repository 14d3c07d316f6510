import json

import pytest
import torch

from polstereo.errors import InfeasibleError, PolstereoError
from polstereo.training.checkpoint import load_checkpoint
from polstereo.training.step import MAX_CONSECUTIVE_NONFINITE, stage_loss
from polstereo.training.trainer import TrainConfig, train

silent = lambda msg: None  # noqa: E731


def run(stage, out, data, init=None, *, loss=stage_loss, max_consecutive_nonfinite=MAX_CONSECUTIVE_NONFINITE, **kw):
    return train(TrainConfig.from_flat(stage=stage, out=out, train=[data / "train.h5"], val=data / "val.h5",
                                       init=init, **kw), log=silent, loss=loss,
                 max_consecutive_nonfinite=max_consecutive_nonfinite)


@pytest.fixture(scope="module")
def stage_a(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("A")
    run("A", out, tiny_data, steps=3, batch_size=2, crop_size=(32, 48), workers=0, val_every=0, save_every=0,
        quiet=True, iters=1)
    return out / "last.ckpt"


def test_stage_a_writes_checkpoints_with_lineage_and_metrics(stage_a):
    payload = load_checkpoint(stage_a)
    assert payload["stage"] == "A" and payload["step"] == 3
    (entry,) = payload["lineage"]
    assert entry["stage"] == "A" and entry["complete"] and entry["steps_done"] == 3 and entry["init"] == "none"
    assert set(entry["metrics"]) == {"all", "transparent", "opaque"}
    assert (stage_a.parent / "best.ckpt").exists() and (stage_a.parent / "metrics.jsonl").exists()
    records = [json.loads(x) for x in (stage_a.parent / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["type"] == "train"]
    waits = [r["data_wait_s"] for r in train_records]
    # cumulative seconds blocked on the loader; with workers=0 every batch is read in next()
    assert waits == sorted(waits) and waits[-1] > 0
    assert all(0 <= r["data_wait_share"] <= 1 for r in train_records)
    assert all(r["data_wait_s"] <= r["seconds"] + 0.01 for r in train_records)
    import cv2

    curves = cv2.imread(str(stage_a.parent / "train_curves.png"))
    assert curves is not None and curves.shape[0] == 300 and curves.shape[1] >= 960  # loss + EPE panels


def test_learn_pol_trains_only_the_correction(stage_a, tiny_data, tmp_path, quick):
    run("B", tmp_path, tiny_data, init=str(stage_a), max_correction=50.0, **quick)
    before, after = load_checkpoint(stage_a)["state_dict"], load_checkpoint(tmp_path / "last.ckpt")["state_dict"]
    base_keys = [k for k in after if k.startswith("base.")]
    corr_keys = [k for k in after if k.startswith("correction.")]
    assert base_keys and corr_keys
    assert all(torch.equal(before[k], after[k]) for k in base_keys)  # frozen, BN stats included
    payload = load_checkpoint(tmp_path / "last.ckpt")
    assert [e["stage"] for e in payload["lineage"]] == ["A", "B"]
    assert payload["model_config"]["max_correction"] == 50.0
    assert payload["feasibility"]["feasible"] is True


def test_learn_pol_refuses_a_checkpoint_without_stage_a(stage_a, tiny_data, tmp_path, quick):
    with pytest.raises(PolstereoError, match="needs --init with a stage A checkpoint"):
        run("B", tmp_path, tiny_data, init="none", **quick)


def test_finetune_refuses_stage_a_checkpoint_unless_forced(stage_a, tiny_data, tmp_path, quick):
    with pytest.raises(PolstereoError, match=r"needs a checkpoint that went through stage B \(learn-pol\); this one has A"):
        run("C", tmp_path / "c1", tiny_data, init=str(stage_a), **quick)
    run("C", tmp_path / "c2", tiny_data, init=str(stage_a), force=True, **quick)
    assert [e["stage"] for e in load_checkpoint(tmp_path / "c2" / "last.ckpt")["lineage"]] == ["A", "C"]


def test_learn_pol_refuses_an_infeasible_start(stage_a, tiny_data, tmp_path, quick):
    with pytest.raises(InfeasibleError, match="infeasible stage B start") as err:
        run("B", tmp_path, tiny_data, init=str(stage_a), max_correction=0.001, **quick)
    assert err.value.exit_code == 3
    assert not (tmp_path / "last.ckpt").exists()


def test_resumed_run_ends_with_the_same_weights(tiny_data, tmp_path, quick):
    opts = dict(quick, steps=4, deterministic=True, seed=3)
    run("A", tmp_path / "full", tiny_data, **opts)
    run("A", tmp_path / "split", tiny_data, stop_after=2, **opts)
    assert load_checkpoint(tmp_path / "split" / "last.ckpt")["step"] == 2
    run("A", tmp_path / "split", tiny_data, resume=True, **opts)
    full = load_checkpoint(tmp_path / "full" / "last.ckpt")
    split = load_checkpoint(tmp_path / "split" / "last.ckpt")
    assert split["step"] == 4 and split["lineage"][-1]["complete"]
    for key, value in full["state_dict"].items():
        assert torch.equal(value, split["state_dict"][key]), key
    assert full["optimizer"]["state"].keys() == split["optimizer"]["state"].keys()


def test_existing_run_is_not_overwritten_without_resume(stage_a, tiny_data, quick):
    with pytest.raises(PolstereoError, match="use --resume"):
        run("A", stage_a.parent, tiny_data, **quick)


def test_resume_of_another_stage_is_refused(stage_a, tiny_data, quick):
    with pytest.raises(PolstereoError, match="is a stage A run, not stage B"):
        run("B", stage_a.parent, tiny_data, resume=True, **quick)


def test_ctrl_c_stops_at_a_step_boundary_and_resumes_to_the_same_weights(tiny_data, tmp_path, quick, monkeypatch):
    import os
    import signal

    from polstereo.models.full import PolStereoModel

    opts = dict(quick, steps=5, deterministic=True)
    run("A", tmp_path / "full", tiny_data, **opts)
    original = PolStereoModel.forward
    calls = {"n": 0}

    def ctrl_c_during_step_three(self, *args, **kwargs):
        if self.training:
            calls["n"] += 1
            if calls["n"] == 3:
                os.kill(os.getpid(), signal.SIGINT)  # arrives mid-step: the step must still complete
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PolStereoModel, "forward", ctrl_c_during_step_three)
    with pytest.raises(PolstereoError, match="interrupted at step 3") as err:
        run("A", tmp_path / "split", tiny_data, **opts)
    assert err.value.exit_code == 130
    monkeypatch.setattr(PolStereoModel, "forward", original)
    run("A", tmp_path / "split", tiny_data, resume=True, **opts)
    full, split = load_checkpoint(tmp_path / "full" / "last.ckpt"), load_checkpoint(tmp_path / "split" / "last.ckpt")
    for key, value in full["state_dict"].items():
        assert torch.equal(value, split["state_dict"][key]), key
    records = [json.loads(x) for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["type"], r["step"]) for r in records]
    assert len(keys) == len(set(keys))  # no duplicate records after the resume


def test_resume_with_different_options_is_refused(tiny_data, tmp_path, quick):
    run("A", tmp_path, tiny_data, stop_after=1, **dict(quick, steps=3))
    with pytest.raises(PolstereoError, match="options differ from the run.*--seed 0 -> 9"):
        run("A", tmp_path, tiny_data, resume=True, **dict(quick, steps=3, seed=9))
    run("A", tmp_path, tiny_data, resume=True, **dict(quick, steps=3, workers=0))  # workers may differ


def test_learn_pol_on_rgb_data(tmp_path, quick):
    import numpy as np

    from polstereo.data.h5 import write_samples
    from tests.training.conftest import shifted_sample

    rng = np.random.default_rng(1)
    samples = []
    for _ in range(2):
        s = shifted_sample(rng)
        s.left, s.right = np.repeat(s.left, 3, axis=1), np.repeat(s.right, 3, axis=1)
        samples.append(s)
    write_samples(tmp_path / "rgb.h5", samples, color="rgb")
    cfg = dict(quick, steps=2)
    train(TrainConfig.from_flat(stage="A", out=tmp_path / "A", train=[tmp_path / "rgb.h5"], **cfg), log=silent)
    train(TrainConfig.from_flat(stage="B", out=tmp_path / "B", train=[tmp_path / "rgb.h5"],
                                init=str(tmp_path / "A" / "last.ckpt"), max_correction=100.0, **cfg), log=silent)
    payload = load_checkpoint(tmp_path / "B" / "last.ckpt")
    assert payload["model_config"]["correction"]["color_channels"] == 3


def test_interrupt_saves_a_resumable_checkpoint(tiny_data, tmp_path, quick, monkeypatch):
    from polstereo.models.full import PolStereoModel

    calls = {"n": 0}
    original = PolStereoModel.forward

    def flaky(self, *args, **kwargs):
        if self.training:
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PolStereoModel, "forward", flaky)
    with pytest.raises(PolstereoError, match="interrupted at step 2") as err:
        run("A", tmp_path, tiny_data, **dict(quick, steps=5))
    assert err.value.exit_code == 130
    assert load_checkpoint(tmp_path / "last.ckpt")["step"] == 2
    monkeypatch.setattr(PolStereoModel, "forward", original)
    run("A", tmp_path, tiny_data, resume=True, **dict(quick, steps=5))
    assert load_checkpoint(tmp_path / "last.ckpt")["step"] == 5


def loss_scaled_on_second_step(factor: float):
    """The stage's loss, times ``factor`` on step 2 only."""
    calls = {"n": 0}

    def scaled(*args):
        calls["n"] += 1
        loss = stage_loss(*args)
        return loss * factor if calls["n"] == 2 else loss

    return scaled


def test_nonfinite_losses_are_skipped_and_counted(tiny_data, tmp_path, quick):
    result = run("A", tmp_path, tiny_data, loss=loss_scaled_on_second_step(float("nan")), **quick)
    assert result.skipped_steps == 1 and result.steps_done == 3
    assert load_checkpoint(tmp_path / "last.ckpt")["skipped_steps"] == 1


def test_a_diverging_run_stops_with_a_one_line_error(tiny_data, tmp_path, quick):
    # lr 1e9 drives the weights to inf/NaN within a few steps; every later loss is NaN
    with pytest.raises(PolstereoError, match=r"^3 consecutive non-finite losses at step \d+; lower --lr"):
        run("A", tmp_path, tiny_data, lr=1e9, lr_decay_method="constant", max_consecutive_nonfinite=3,
            **dict(quick, steps=30))


def test_a_run_that_fails_at_its_start_leaves_no_run_folder(tiny_data, tmp_path, quick):
    def failing_loss(*args):
        raise PolstereoError("failed after the run folder was made")

    with pytest.raises(PolstereoError, match="failed after the run folder"):
        run("A", tmp_path / "runs" / "A", tiny_data, loss=failing_loss, **quick)
    assert not (tmp_path / "runs").exists()
    (tmp_path / "mine").mkdir()
    with pytest.raises(PolstereoError, match="failed after the run folder"):
        run("A", tmp_path / "mine", tiny_data, loss=failing_loss, **quick)
    assert (tmp_path / "mine").is_dir()


def test_dataset_steps_must_add_up(tiny_data, tmp_path, quick):
    with pytest.raises(PolstereoError, match="--dataset-steps sum to 5 but --steps is 3"):
        run("A", tmp_path, tiny_data, dataset_steps=[5], **quick)


def test_missing_training_file_is_a_one_line_error(tiny_data, tmp_path, quick):
    with pytest.raises(PolstereoError, match="no such file"):
        train(TrainConfig.from_flat(stage="A", out=tmp_path, train=[tmp_path / "nope.h5"], **quick), log=silent)


def test_bf16_autocast_on_cpu_trains_without_nonfinite_losses(tiny_data, tmp_path, quick):
    result = run("A", tmp_path, tiny_data, amp="bf16", **dict(quick, steps=3))
    assert result.steps_done == 3 and result.skipped_steps == 0
    assert all(torch.isfinite(v).all() for v in load_checkpoint(tmp_path / "last.ckpt")["state_dict"].values()
               if v.is_floating_point())


def test_fp16_overflow_is_counted_and_leaves_the_weights_alone(tiny_data, tmp_path, quick):
    run("A", tmp_path / "one", tiny_data, amp="fp16", device="cpu", **dict(quick, steps=1, deterministic=True))
    # a finite loss whose gradients overflow fp16: what the grad scaler must absorb
    run("A", tmp_path / "two", tiny_data, amp="fp16", device="cpu", loss=loss_scaled_on_second_step(1e30),
        **dict(quick, steps=2, deterministic=True, lr_decay_method="constant"))
    payload, first = load_checkpoint(tmp_path / "two" / "last.ckpt"), load_checkpoint(tmp_path / "one" / "last.ckpt")
    # the forced overflow is counted on top of whatever step 1 did, and halved the scale once more
    assert payload["overflow_steps"] == first["overflow_steps"] + 1 and payload["skipped_steps"] == 0
    assert payload["scaler"]["scale"] == first["scaler"]["scale"] * 0.5
    assert all(torch.equal(first["state_dict"][k], v) for k, v in payload["state_dict"].items())  # step 2: no update


def test_warp_source_override_is_recorded_and_checked(stage_a, tiny_data, tmp_path, quick):
    run("B", tmp_path / "b", tiny_data, init=str(stage_a), max_correction=50.0, warp_source="pred", **quick)
    assert load_checkpoint(tmp_path / "b" / "last.ckpt")["train_config"]["model"]["warp_source"] == "pred"
    with pytest.raises(PolstereoError, match="has no correction module"):
        run("A", tmp_path / "a", tiny_data, warp_source="pred", **quick)


def test_a_moved_run_resumes_with_a_symlinked_data_file(tiny_data, tmp_path, quick):
    import shutil

    run("A", tmp_path / "old", tiny_data, stop_after=1, **dict(quick, steps=3))
    shutil.move(str(tmp_path / "old"), str(tmp_path / "new"))
    (tmp_path / "data").mkdir()
    for name in ("train.h5", "val.h5"):
        (tmp_path / "data" / name).symlink_to(tiny_data / name)
    result = run("A", tmp_path / "new", tmp_path / "data", resume=True, **dict(quick, steps=3))
    assert result.steps_done == 3
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tiny_data / "train.h5", other / "train.h5")
    shutil.copy(tiny_data / "val.h5", other / "val.h5")
    run("A", tmp_path / "again", tiny_data, stop_after=1, **dict(quick, steps=3))
    with pytest.raises(PolstereoError, match="options differ.*--train"):  # a different file is a different run
        run("A", tmp_path / "again", other, resume=True, **dict(quick, steps=3))


def test_learn_pol_builds_a_shape_aware_unet_module_and_trains_with_the_shape_loss(stage_a, tiny_data, tmp_path,
                                                                                    quick):
    run("B", tmp_path / "b", tiny_data, init=str(stage_a), max_correction=50.0, correction_context="unet",
        correction_shape=True, shape_weight=2.0, **quick)
    payload = load_checkpoint(tmp_path / "b" / "last.ckpt")
    correction = payload["model_config"]["correction"]
    assert correction["context"] == "unet" and correction["shape_features"] is True
    assert payload["train_config"]["optim"]["shape_weight"] == 2.0
    # finetune keeps the module; asking it for another context is refused, not ignored
    with pytest.raises(PolstereoError, match="--correction-context dilated: the --init checkpoint already has"):
        run("C", tmp_path / "c", tiny_data, init=str(tmp_path / "b" / "last.ckpt"), correction_context="dilated",
            **quick)


def test_shape_loss_term_changes_the_loss_only_when_weighted():
    from polstereo.training.stages import STAGES

    torch.manual_seed(0)
    batch = {"disparity": torch.full((1, 1, 16, 16), 3.0), "valid": torch.ones(1, 1, 16, 16, dtype=torch.bool),
             "transparent": torch.zeros(1, 1, 16, 16, dtype=torch.bool),
             "inside": torch.ones(1, 1, 16, 16, dtype=torch.bool), "left": torch.rand(1, 4, 1, 16, 16)}
    disparity = (3.0 + 0.1 * torch.randn(1, 1, 16, 16)).requires_grad_()
    out = {"disparities": [disparity], "disparity": disparity, "correction": None}
    plain = stage_loss(out, batch, STAGES["A"], TrainConfig.from_flat(stage="A", out=None, train=[]), 16)
    shaped = stage_loss(out, batch, STAGES["A"],
                        TrainConfig.from_flat(stage="A", out=None, train=[], shape_weight=3.0), 16)
    from polstereo.polar.shape import shape_loss

    expected = plain + 3.0 * shape_loss(disparity, batch["left"], min_dolp=0.02)
    torch.testing.assert_close(shaped, expected)
    shaped.backward()
    assert disparity.grad.abs().sum() > 0


@pytest.mark.parametrize("value", [-1.0, float("inf"), float("nan")])
def test_shape_weight_must_be_finite_and_not_negative(tiny_data, tmp_path, quick, value):
    with pytest.raises(PolstereoError, match="--shape-weight"):
        run("A", tmp_path, tiny_data, shape_weight=value, **quick)


def test_adapt_with_early_fusion_records_it_and_later_stages_keep_it(stage_a, tiny_data, tmp_path, quick):
    run("A", tmp_path / "a", tiny_data, init=str(stage_a), base_input="polarization", **quick)
    assert load_checkpoint(tmp_path / "a" / "last.ckpt")["model_config"]["base_input"] == "polarization"
    with pytest.raises(PolstereoError, match="only adapt"):
        run("B", tmp_path / "b", tiny_data, init=str(stage_a), base_input="polarization", max_correction=50.0,
            **quick)


def test_finetune_on_unlabeled_captures_learns_from_the_shape_loss_alone(stage_a, tiny_data, tmp_path, quick):
    import dataclasses

    import numpy as np

    from polstereo.data.h5 import H5Reader, write_samples

    reader = H5Reader(tiny_data / "train.h5")
    unlabeled = [dataclasses.replace(reader.read(i), disparity=None, transparent=None) for i in range(len(reader))]
    write_samples(tmp_path / "captures.h5", unlabeled)
    run("B", tmp_path / "b", tiny_data, init=str(stage_a), max_correction=50.0, **quick)
    before = load_checkpoint(tmp_path / "b" / "last.ckpt")["state_dict"]
    train(TrainConfig.from_flat(stage="C", out=tmp_path / "c", train=[tmp_path / "captures.h5"],
                                init=str(tmp_path / "b" / "last.ckpt"), shape_weight=1.0, **quick), log=silent)
    payload = load_checkpoint(tmp_path / "c" / "last.ckpt")
    after = payload["state_dict"]
    assert payload["skipped_steps"] == 0 if "skipped_steps" in payload else True
    changed = [k for k in after if after[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert any(k.startswith("correction.") for k in changed) and any(k.startswith("base.") for k in changed)
    assert np.isfinite([float(v.float().abs().max()) for v in after.values() if v.is_floating_point()]).all()


def test_freeze_holds_the_named_parameters_and_trains_the_rest(stage_a, tiny_data, tmp_path, quick):
    """--freeze base.update: the refinement's weights leave the run as they came in, the encoder's move."""
    before = load_checkpoint(stage_a)["state_dict"]
    run("A", tmp_path, tiny_data, stage_a, freeze=("base.update",), **dict(quick, lr=1e-2))
    after = load_checkpoint(tmp_path / "last.ckpt")["state_dict"]
    frozen = [k for k in before if k.startswith("base.update.")]
    trained = [k for k in before if k.startswith("base.encoder.") and before[k].is_floating_point()]
    assert frozen and trained
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in trained)


def test_freeze_refuses_a_name_the_model_lacks_and_a_resume_that_changes_it(stage_a, tiny_data, tmp_path, quick):
    with pytest.raises(PolstereoError, match=r"--freeze base\.updat: the model has no parameters under that name; "
                                             r"its parts: .*base\.update\.gru"):
        run("A", tmp_path / "a", tiny_data, stage_a, freeze=("base.updat",), **quick)
    assert not (tmp_path / "a" / "last.ckpt").exists()
    run("A", tmp_path / "b", tiny_data, stage_a, freeze=("base.update",), **dict(quick, stop_after=1))
    with pytest.raises(PolstereoError, match=r"options differ.*--freeze \['base.update'\] -> \[\]"):
        run("A", tmp_path / "b", tiny_data, stage_a, resume=True, **quick)
