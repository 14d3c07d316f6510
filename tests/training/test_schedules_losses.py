import math

import pytest
import torch

from polstereo.training.losses import masked_l1, pixel_weights, sequence_loss
from polstereo.training.schedules import Schedule
from polstereo.training.stages import STAGES


def test_warmup_then_cosine_towards_min_lr():
    s = Schedule(lr=1.0, total_steps=12, min_lr=0.1, warmup_steps=2, method="cosine")
    assert s(0) == 0.5 and s(1) == 1.0 and s(2) == 1.0
    assert math.isclose(s(7), 0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))  # halfway through 10 decay steps
    assert math.isclose(s(11), 0.1 + 0.45 * (1 + math.cos(math.pi * 0.9)))
    assert s(11) > 0.1  # the last step still learns


def test_decay_starts_after_decay_after_steps():
    s = Schedule(lr=1.0, total_steps=10, min_lr=0.0, decay_after_steps=5, method="linear")
    assert [s(i) for i in range(6)] == [1.0] * 6
    assert math.isclose(s(8), 0.4) and math.isclose(s(9), 0.2)


@pytest.mark.parametrize("method", ["cosine", "linear", "exponential"])
def test_schedules_are_monotone_after_warmup(method):
    s = Schedule(lr=1e-3, total_steps=50, min_lr=1e-5, method=method)
    values = [s(i) for i in range(50)] + [s(50)]  # s(50): just after the last step
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert values[-2] > 1e-5 and math.isclose(values[-1], 1e-5, rel_tol=1e-6)


def test_unknown_decay_method_is_refused():
    with pytest.raises(ValueError, match="unknown lr decay method"):
        Schedule(lr=1.0, total_steps=3, method="step")


def test_pixel_weights_ignore_invalid_large_and_weight_transparent():
    gt = torch.tensor([1.0, 2.0, 300.0, float("nan")]).reshape(1, 1, 1, 4)
    valid = torch.tensor([True, True, True, True]).reshape(1, 1, 1, 4)
    transparent = torch.tensor([False, True, False, False]).reshape(1, 1, 1, 4)
    w = pixel_weights(valid, transparent, gt, max_disparity=192, transparent_weight=3.0)
    assert w.flatten().tolist() == [1.0, 3.0, 0.0, 0.0]


def test_sequence_loss_weights_later_estimates_more():
    gt = torch.zeros(1, 1, 2, 2)
    w = torch.ones_like(gt)
    early_bad = sequence_loss([gt + 4, gt], gt, w, gamma=0.5)   # (0.5*4 + 1*0)/1.5
    late_bad = sequence_loss([gt, gt + 4], gt, w, gamma=0.5)    # (0.5*0 + 1*4)/1.5
    assert math.isclose(float(early_bad), 4 * 0.5 / 1.5, rel_tol=1e-6)
    assert math.isclose(float(late_bad), 4 / 1.5, rel_tol=1e-6)
    assert float(masked_l1(gt + 2, gt, w)) == 2.0


def test_stage_table_describes_the_plan():
    a, b, c = STAGES["A"], STAGES["B"], STAGES["C"]
    assert (a.trainable, a.with_correction, a.requires) == (("base",), False, None)
    assert (b.trainable, b.frozen, b.warp_source, b.requires) == (("correction",), ("base",), "gt", "A")
    assert (c.trainable, c.frozen, c.warp_source, c.requires) == (("base", "correction"), (), "pred", "B")
    assert b.feasibility_gate and not a.feasibility_gate and not c.feasibility_gate


def test_robust_error_is_l1_without_a_scale_and_logarithmic_beyond_it():
    from polstereo.training.losses import robust_error

    error = torch.tensor([-6.0, -0.01, 0.0, 2.0, 20.0], requires_grad=True)
    assert torch.equal(robust_error(error, None), error.abs())
    robust = robust_error(error, 2.0)
    expected = 2.0 * torch.log1p(error.detach().abs() / 2.0)
    torch.testing.assert_close(robust, expected)
    assert abs(float(robust[1].detach()) - 0.01) < 1e-4  # small errors: |e|
    robust.sum().backward()
    # the gradient fades as 1 / (1 + |e| / scale): 1/4 at -6 px, 1/11 at 20 px
    torch.testing.assert_close(error.grad[[0, 3, 4]], torch.tensor([-0.25, 0.5, 1 / 11]))


def test_robust_scale_reaches_the_sequence_loss():
    from polstereo.training.losses import sequence_loss

    gt = torch.zeros(1, 1, 2, 2)
    estimates = [torch.full((1, 1, 2, 2), 10.0)]
    weight = torch.ones_like(gt)
    assert float(sequence_loss(estimates, gt, weight)) == 10.0
    torch.testing.assert_close(sequence_loss(estimates, gt, weight, robust_scale=1.0), torch.log1p(torch.tensor(10.0)))
