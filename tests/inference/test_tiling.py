"""Row bands and downscaling: same results as a whole-image run where the math says so."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polstereo.errors import PolstereoError
from polstereo.inference.tiling import (band_weights, resize, row_bands, run_downscaled, run_in_row_bands,
                                        scaled_size)
from polstereo.polar.stokes import stokes_from_angles
from tests.inference.conftest import LocalBase


def predictor(model):
    return lambda left, right: model(left, right)


def test_row_bands_cover_every_row_with_at_least_the_overlap():
    bands = row_bands(100, rows=32, overlap=8)
    assert bands[0][0] == 0 and bands[-1][1] == 100
    assert all(b - a == 32 for a, b in bands)
    assert all(prev[1] - nxt[0] >= 8 for prev, nxt in zip(bands, bands[1:]))


def test_one_band_when_it_is_taller_than_the_image():
    assert row_bands(40, rows=64, overlap=8) == [(0, 40)]


def test_overlap_must_be_smaller_than_the_band():
    with pytest.raises(PolstereoError, match="band overlap"):
        row_bands(100, rows=16, overlap=16)


def test_band_weights_vanish_near_cuts_but_never_sum_to_zero():
    height, overlap = 100, 8
    total = np.zeros(height)
    for a, b in row_bands(height, 32, overlap):
        w = band_weights(height, a, b, overlap)
        if a > 0:
            assert (w[:overlap // 4] == 0).all()
        if b < height:
            assert (w[-(overlap // 4):] == 0).all()
        total[a:b] += w
    assert (total > 0).all()
    np.testing.assert_array_equal(band_weights(height, 0, 32, overlap)[:10], 1.0)  # image top: no cut


def test_bands_equal_the_whole_image_for_a_model_with_local_rows():
    model = LocalBase(radius=2)  # rows depend on rows within 2 = overlap // 4
    left = torch.rand(1, 1, 70, 24)
    whole = model(left, left)["disparity"]
    tiled = run_in_row_bands(predictor(model), left, left, rows=24, overlap=8)["disparity"]
    torch.testing.assert_close(tiled, whole, rtol=1e-6, atol=1e-6)


def test_bands_without_overlap_differ_at_the_cuts():
    # The check above can fail: without overlap the zero padding at each cut shows.
    model = LocalBase(radius=2)
    left = torch.rand(1, 1, 70, 24)
    whole = model(left, left)["disparity"]
    tiled = run_in_row_bands(predictor(model), left, left, rows=24, overlap=0)["disparity"]
    assert (tiled - whole).abs().max() > 0.1


def test_bands_work_on_angle_stacks():
    model = LocalBase(radius=1)
    stack = torch.rand(1, 4, 1, 40, 16)
    seen = []

    def predict(left, right):
        seen.append(tuple(left.shape))
        return model(left[:, 0], right[:, 0])

    out = run_in_row_bands(predict, stack, stack, rows=16, overlap=4)
    assert out["disparity"].shape == (1, 1, 40, 16) and seen[0] == (1, 4, 1, 16, 16)


def test_downscaled_run_multiplies_disparity_by_the_width_scale():
    model = LocalBase(constant=3.0)
    left = torch.rand(1, 3, 48, 64)
    out = run_downscaled(predictor(model), left, left, max_size=32, disparity_keys=("disparity",))
    assert out["disparity"].shape == (1, 1, 48, 64)
    torch.testing.assert_close(out["disparity"], torch.full((1, 1, 48, 64), 6.0))
    torch.testing.assert_close(out["confidence"], torch.full((1, 1, 48, 64), 0.5))  # not a disparity


def test_no_downscaling_when_the_image_is_small_enough():
    assert scaled_size(48, 64, 64) == (48, 64)
    assert scaled_size(48, 64, 32) == (24, 32)


def test_resize_keeps_stokes_relations():
    # Bilinear resizing is linear: Stokes of the resized stack = resized Stokes.
    stack = torch.rand(4, 1, 20, 30, dtype=torch.float64)
    a = stokes_from_angles(resize(stack, (10, 15)), axis=0)
    b = resize(stokes_from_angles(stack, axis=0), (10, 15))
    torch.testing.assert_close(a, b)
