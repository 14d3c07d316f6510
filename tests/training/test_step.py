"""One optimisation step (training/step.py) on a hand-made batch, without a data loader."""

import numpy as np
import pytest
import torch

from polstereo.errors import PolstereoError
from polstereo.models.registry import build_model
from polstereo.polar.stokes import DEFAULT_ANGLES_DEG
from polstereo.training.config import TrainConfig
from polstereo.training.mim import EMATeacher, ReconstructionHead, StudentWithHead
from polstereo.training.setup import prepare_model
from polstereo.training.stages import STAGES
from polstereo.training.step import StepCounters, TrainStep, make_optimiser, stage_loss
from tests.training.conftest import shifted_sample

CPU = torch.device("cpu")


def tiny_batch() -> dict:
    """Two 32x48 pairs shifted by 4 px, in [0, 1]; the top rows have no ground truth."""
    rng = np.random.default_rng(3)
    samples = [shifted_sample(rng, h=32, w=48) for _ in range(2)]
    stack = lambda key: torch.from_numpy(np.stack([getattr(s, key) for s in samples]))  # noqa: E731
    disparity = stack("disparity")[:, None]
    valid = torch.ones_like(disparity, dtype=torch.bool)
    valid[..., :4, :] = False
    return {"left": stack("left"), "right": stack("right"), "disparity": disparity, "valid": valid,
            "transparent": stack("transparent")[:, None], "inside": torch.ones_like(valid)}


def make_step(stage="A", model=None, head=None, amp_dtype=None, **kwargs):
    """A TrainStep for ``stage`` on a tiny model (or ``model``), prepared as the trainer prepares it."""
    options = {k: kwargs.pop(k) for k in list(kwargs) if k in TrainConfig.flat_fields()}
    cfg = TrainConfig.from_flat(stage=stage, out=None, train=[], iters=1, **options)
    torch.manual_seed(0)
    model = prepare_model(model or build_model({"base": "tiny"}), cfg, STAGES[stage], color_channels=1).train()
    parameters = [p for p in model.parameters() if p.requires_grad] + (list(head.parameters()) if head else [])
    optimiser = make_optimiser(parameters, cfg, STAGES[stage], total_steps=10, device=CPU, amp_dtype=amp_dtype)
    train_model = StudentWithHead(model, head) if head is not None else model
    return TrainStep(model, STAGES[stage], cfg, optimiser, angles_deg=DEFAULT_ANGLES_DEG, amp_dtype=amp_dtype,
                     train_model=train_model, **kwargs), model


def parameters(module) -> dict:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def changed(before: dict, module) -> list[str]:
    return [name for name, p in module.named_parameters() if not torch.equal(before[name], p)]


def nan_loss(*args):
    return stage_loss(*args) * float("nan")


def test_a_step_updates_the_weights_and_advances_the_schedule():
    step, model = make_step("A")
    before = parameters(model)
    loss, out = step(tiny_batch())
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert out["disparity"].shape == (2, 1, 32, 48)
    assert len(changed(before, model)) == len(before)
    assert step.counters == StepCounters(step=1, skipped=0, overflow_steps=0) and not step.updating
    assert step.optimiser.optimizer.param_groups[0]["lr"] < STAGES["A"].lr  # cosine decay has begun


def test_a_nonfinite_loss_is_skipped_and_leaves_the_weights_alone():
    step, model = make_step("A", loss=nan_loss)
    before = parameters(model)
    loss, _ = step(tiny_batch())
    assert torch.isnan(loss)
    assert changed(before, model) == []
    assert not step.optimiser.optimizer.state  # AdamW never stepped
    assert step.counters == StepCounters(step=1, skipped=1, overflow_steps=0) and not step.updating


def test_consecutive_nonfinite_losses_end_the_run_with_a_one_line_error():
    step, _ = make_step("A", loss=nan_loss, max_consecutive_nonfinite=2)
    step(tiny_batch())
    with pytest.raises(PolstereoError, match=r"^2 consecutive non-finite losses at step 1; lower --lr"):
        step(tiny_batch())


def test_learn_pol_step_trains_the_correction_and_leaves_the_frozen_base_alone():
    step, model = make_step("B")
    base_before = {k: v.clone() for k, v in model.base.state_dict().items()}
    correction_before = parameters(model.correction)
    step(tiny_batch())
    assert all(torch.equal(v, model.base.state_dict()[k]) for k, v in base_before.items())  # BN stats included
    assert changed(correction_before, model.correction)


def test_the_teacher_follows_the_student_by_one_minus_its_decay():
    torch.manual_seed(0)
    model = build_model({"base": "tiny"})
    teacher = EMATeacher(model, decay=0.75)
    step, model = make_step("A", model=model, teacher=teacher)
    before = parameters(model)
    step(tiny_batch())
    for name, p in teacher.model.named_parameters():
        assert torch.equal(p, torch.lerp(before[name], dict(model.named_parameters())[name].detach(), 0.25)), name


def test_masked_modelling_trains_the_reconstruction_head():
    torch.manual_seed(0)
    head = ReconstructionHead(build_model({"base": "tiny"}).base.config.feature_dim, 1)
    step, _ = make_step("A", head=head, mask_ratio=0.5, mask_patch=8)
    before = parameters(head)
    loss, out = step(tiny_batch())
    assert torch.isfinite(loss) and out["reconstruction"].shape == (2, 1, 32, 48)
    assert len(changed(before, head)) == len(before)


def test_an_fp16_overflow_is_counted_and_leaves_the_weights_alone():
    step, model = make_step("A", amp_dtype=torch.float16, loss=lambda *args: stage_loss(*args) * 1e30)
    scale = step.optimiser.scaler.get_scale()
    before = parameters(model)
    step(tiny_batch())
    assert step.counters == StepCounters(step=1, skipped=0, overflow_steps=1)
    assert changed(before, model) == []
    assert step.optimiser.scaler.get_scale() == scale * 0.5
