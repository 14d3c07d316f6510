import math

import numpy as np
import pytest
import torch

from polstereo.evaluation.evidence import accumulate, evidence_counts, evidence_line, summarize
from polstereo.evaluation.metrics import region_masks

ANGLES = (0.0, 45.0, 90.0, 135.0)
H, W, PAD = 24, 64, 40


def smooth_noise(rng, shape):
    x = rng.random(shape)
    return (x + np.roll(x, 1, -1) + np.roll(x, 1, -2)) / 3  # a little correlation, still textured


def stack(s0, n1, n2):
    """Angle stack (1, 4, 1, H, W) from S0 and the normalized Stokes n1 = S1/S0, n2 = S2/S0."""
    images = [0.5 * s0 * (1 + n1 * math.cos(2 * math.radians(a)) + n2 * math.sin(2 * math.radians(a)))
              for a in ANGLES]
    return torch.from_numpy(np.stack(images)[None, :, None].astype(np.float32))


def scene(d_pol, d_int, seed=0, independent_pol=False):
    """Left/right stacks whose polarization matches at disparity d_pol, intensity at d_int."""
    rng = np.random.default_rng(seed)
    s0 = 0.3 + 0.5 * smooth_noise(rng, (H, W + PAD))
    n1, n2 = (0.4 * (smooth_noise(rng, (H, W + PAD)) - 0.5) for _ in range(2))
    view = lambda a, d: a[:, PAD // 2 + d: PAD // 2 + d + W]  # noqa: E731  right(x) = P(x + d)
    left = stack(view(s0, 0), view(n1, 0), view(n2, 0))
    if independent_pol:
        n1, n2 = (0.4 * (smooth_noise(rng, (H, W + PAD)) - 0.5) for _ in range(2))
    right = stack(view(s0, d_int), view(n1, d_pol), view(n2, d_pol))
    return left, right


def run(left, right, gt_value, base_value, transparent=None, **kw):
    gt = torch.full((1, 1, H, W), float(gt_value))
    base = torch.full((1, 1, H, W), float(base_value))
    valid = torch.ones(1, 1, H, W, dtype=torch.bool)
    t = torch.zeros(1, 1, H, W, dtype=torch.bool) if transparent is None else transparent
    totals = {}
    accumulate(totals, evidence_counts(left, right, gt, base, region_masks(valid, t), ANGLES, **kw))
    return summarize(totals)


def test_polarization_points_at_the_truth_and_intensity_at_the_background():
    # glass-like: polarization sits at the surface (5 px), intensity shows the background (12 px)
    left, right = scene(d_pol=5, d_int=12)
    result = run(left, right, gt_value=5, base_value=12)
    a = result["all"]
    assert a["pixels"] > 0.7 * H * W  # only pixels whose warps stay inside the image count
    assert a["polarization"] > 0.97 and a["intensity"] < 0.03
    assert evidence_line(a["polarization"]) == "points at the truth"
    assert evidence_line(a["intensity"]).startswith("misleads")


def test_unrelated_polarization_is_a_coin_toss():
    left, right = scene(d_pol=5, d_int=5, independent_pol=True)
    a = run(left, right, gt_value=5, base_value=9, window=1)["all"]
    assert 0.35 < a["polarization"] < 0.65
    assert a["intensity"] > 0.97  # intensity still matches at 5


def test_only_pixels_the_base_gets_wrong_count_and_regions_split():
    left, right = scene(d_pol=5, d_int=12)
    transparent = torch.zeros(1, 1, H, W, dtype=torch.bool)
    transparent[..., :, W // 2:] = True
    right_on = run(left, right, gt_value=5, base_value=5.5, min_error=1.0)
    assert right_on["all"]["pixels"] == 0 and right_on["all"]["polarization"] is None
    split = run(left, right, gt_value=5, base_value=12, transparent=transparent)
    assert split["transparent"]["pixels"] + split["opaque"]["pixels"] == split["all"]["pixels"]
    assert split["transparent"]["pixels"] > 0 and split["opaque"]["pixels"] > 0


def test_non_finite_ground_truth_is_skipped():
    left, right = scene(d_pol=5, d_int=12)
    gt = torch.full((1, 1, H, W), 5.0)
    gt[..., :, : W // 2] = float("nan")
    valid = torch.isfinite(gt)
    counts = evidence_counts(left, right, gt, torch.full_like(gt, 12.0), region_masks(valid, None), ANGLES)
    assert 0 < counts["all"]["pixels"] <= H * W // 2


def test_window_must_be_odd():
    left, right = scene(d_pol=5, d_int=12)
    with pytest.raises(ValueError, match="odd"):
        run(left, right, 5, 12, window=4)


def test_unlabeled_neighbours_do_not_enter_the_window():
    # ground truth on every other row only: the unknown rows must not be warped by a
    # made-up disparity and mixed into the window means at the true disparity
    left, right = scene(d_pol=5, d_int=12)
    gt = torch.full((1, 1, H, W), 5.0)
    gt[..., 1::2, :] = float("nan")
    valid = torch.isfinite(gt)
    counts = evidence_counts(left, right, gt, torch.full_like(gt, 12.0), region_masks(valid, None), ANGLES)
    a = counts["all"]
    assert a["pixels"] > 0.3 * H * W
    assert a["polarization"] / a["pixels"] > 0.97 and a["intensity"] / a["pixels"] < 0.03


def test_evidence_lines_read_the_share():
    assert evidence_line(None) == "no pixels"
    assert evidence_line(0.85) == "points at the truth"
    assert evidence_line(0.68) == "weak signal"
    assert evidence_line(0.5).startswith("little or no signal")
    assert evidence_line(0.3).startswith("misleads")


def test_polarized_part_is_reported_beside_the_other_features():
    # one surface for everything: the unnormalized polarized part matches at 5 px too
    left, right = scene(d_pol=5, d_int=5)
    a = run(left, right, gt_value=5, base_value=9)["all"]
    assert a["polarized"] > 0.97 and a["polarization"] > 0.97


def test_polarized_part_is_the_unnormalized_linear_stokes():
    from polstereo.evaluation.evidence import polarized_part

    left, _ = scene(d_pol=5, d_int=12)
    part = polarized_part(left, ANGLES)
    assert part.shape == (1, 2, H, W)
    # I(0°) − I(90°) = S1 and I(45°) − I(135°) = S2
    assert torch.allclose(part[:, 0], left[:, 0, 0] - left[:, 2, 0], atol=1e-5)
    assert torch.allclose(part[:, 1], left[:, 1, 0] - left[:, 3, 0], atol=1e-5)
