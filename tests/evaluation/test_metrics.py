import math

import torch

from polstereo.evaluation.metrics import MetricAccumulator, metrics_from_sums, error_sums


def t(values):
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 1, -1)


def test_known_values_on_five_pixels():
    gt = t([10.0, 10.0, 20.0, 100.0, 5.0])
    pred = t([10.5, 12.5, 23.5, 104.0, 5.0])  # errors 0.5, 2.5, 3.5, 4, 0
    acc = MetricAccumulator()
    acc.update(pred, gt, torch.ones_like(gt, dtype=torch.bool))
    m = acc.result()["all"]
    assert m["pixels"] == 5
    assert math.isclose(m["epe"], (0.5 + 2.5 + 3.5 + 4 + 0) / 5)
    assert math.isclose(m["rmse"], math.sqrt((0.25 + 6.25 + 12.25 + 16) / 5))
    assert m["bad1"] == 60.0 and m["bad2"] == 60.0 and m["bad3"] == 40.0
    assert m["acc1"] == 40.0 and m["acc3"] == 60.0 and m["acc5"] == 100.0
    assert math.isclose(m["relepe"], (0.05 + 0.25 + 0.175 + 0.04 + 0) / 5, rel_tol=1e-6)
    # D1: err > 3 and > 5 % of gt: pixel 3 (3.5 > 1.0) yes, pixel 4 (4 > 5.0) no
    assert m["d1"] == 20.0


def test_invalid_and_nonfinite_pixels_are_ignored():
    gt = t([1.0, float("nan"), 3.0])
    pred = t([2.0, 100.0, 3.0])
    valid = torch.tensor([True, True, False]).reshape(1, 1, 1, 3)
    acc = MetricAccumulator()
    acc.update(pred, gt, valid)
    m = acc.result()["all"]
    assert m["pixels"] == 1 and m["epe"] == 1.0


def test_regions_split_transparent_and_opaque():
    gt, pred = t([0.0, 0.0, 0.0, 0.0]), t([1.0, 1.0, 3.0, 3.0])
    transparent = torch.tensor([False, False, True, True]).reshape(1, 1, 1, 4)
    acc = MetricAccumulator()
    acc.update(pred, gt, torch.ones_like(transparent), transparent)
    r = acc.result()
    assert r["opaque"]["epe"] == 1.0 and r["transparent"]["epe"] == 3.0 and r["all"]["epe"] == 2.0


def test_dataset_values_are_pixel_weighted_not_sample_averaged():
    acc = MetricAccumulator()
    acc.update(t([1.0]), t([0.0]), torch.ones(1, 1, 1, 1, dtype=torch.bool))        # 1 px, err 1
    acc.update(t([0.0] * 3), t([0.0] * 3), torch.ones(1, 1, 1, 3, dtype=torch.bool))  # 3 px, err 0
    assert acc.result()["all"]["epe"] == 0.25
    assert [s["all"]["epe"] for s in acc.per_sample] == [1.0, 0.0]


def test_empty_region_gives_nan():
    m = metrics_from_sums(error_sums(t([1.0]), t([1.0]), torch.zeros(1, 1, 1, 1, dtype=torch.bool))[0])
    assert m["pixels"] == 0 and math.isnan(m["epe"])
