"""Visualisations: uint8 pictures of the right shape with known colours at known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polstereo.errors import PolstereoError
from polstereo.io.visualise import (aolp_to_rgb, apply_colormap, colormap_table, correction_to_rgb, disparity_to_rgb,
                                    image_to_rgb, unit_to_gray)

TURBO_START, TURBO_END = (48, 18, 59), (122, 4, 3)  # OpenCV's turbo table, RGB


def test_disparity_min_maps_to_colormap_start_and_max_to_end():
    disparity = np.array([[2.0, 5.0, 8.0]], dtype=np.float32)
    rgb = disparity_to_rgb(disparity)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    assert tuple(rgb[0, 0]) == TURBO_START and tuple(rgb[0, 2]) == TURBO_END
    assert tuple(rgb[0, 1]) == tuple(colormap_table("turbo")[128])


def test_fixed_range_clips_and_invalid_pixels_are_black():
    disparity = np.array([[-5.0, 0.0, 100.0, np.nan, np.inf]])
    rgb = disparity_to_rgb(disparity, vmin=0.0, vmax=10.0)
    assert tuple(rgb[0, 0]) == TURBO_START == tuple(rgb[0, 1])
    assert tuple(rgb[0, 2]) == TURBO_END
    assert rgb[0, 3:].max() == 0


def test_disparity_picture_has_the_image_shape():
    assert disparity_to_rgb(np.random.default_rng(0).random((48, 64))).shape == (48, 64, 3)


def test_correction_zero_is_the_diverging_midpoint_and_the_bound_its_ends():
    rgb = correction_to_rgb(np.array([[-4.0, 0.0, 4.0, 9.0]]), limit=4.0)
    assert tuple(rgb[0, 0]) == (59, 76, 192)     # cool end
    assert tuple(rgb[0, 2]) == (180, 4, 38) == tuple(rgb[0, 3])  # warm end, clipped beyond
    assert abs(int(rgb[0, 1, 0]) - 221) <= 1 and abs(int(rgb[0, 1, 2]) - 221) <= 1  # light grey


def test_aolp_hue_gives_red_green_blue_at_0_60_120_degrees():
    rgb = aolp_to_rgb(np.array([[0.0, math.pi / 3, 2 * math.pi / 3, math.pi - 1e-9]]))
    assert [tuple(c) for c in rgb[0]] == [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 0, 0)]


def test_dolp_as_value_darkens_and_as_saturation_whitens_unpolarized_pixels():
    aolp, dolp = np.array([[0.0, 0.0]]), np.array([[0.0, 1.0]])
    by_value = aolp_to_rgb(aolp, dolp, mode="value")
    by_saturation = aolp_to_rgb(aolp, dolp, mode="saturation")
    assert tuple(by_value[0, 0]) == (0, 0, 0) and tuple(by_saturation[0, 0]) == (255, 255, 255)
    assert tuple(by_value[0, 1]) == (255, 0, 0) == tuple(by_saturation[0, 1])


def test_unit_to_gray_scales_clips_and_zeroes_nan():
    assert unit_to_gray(np.array([[0.0, 0.5, 1.0, 2.0, np.nan]])).tolist() == [[0, 128, 255, 255, 0]]


def test_mono_image_becomes_grey_rgb():
    rgb = image_to_rgb(np.full((1, 2, 3), 0.5))
    assert rgb.shape == (2, 3, 3) and (rgb == 128).all()


def test_constant_map_uses_the_colormap_start():
    assert tuple(apply_colormap(np.full((2, 2), 7.0), 7.0, 7.0)[0, 0]) == TURBO_START


def test_unknown_colormap_is_an_error():
    with pytest.raises(PolstereoError, match="unknown colormap"):
        apply_colormap(np.zeros((2, 2)), 0, 1, cmap="jet2")


def test_comparison_pictures_share_the_ground_truth_range():
    import numpy as np

    from polstereo.io.visualise import colormap_table, comparison_pictures

    gt = np.array([[1.0, 3.0], [np.nan, 2.0]])
    pred = np.array([[1.0, 9.0], [2.0, 2.0]])
    pred_rgb, gt_rgb, err_rgb = comparison_pictures(pred, gt)
    table = colormap_table("turbo")
    assert (pred_rgb[0, 0] == table[0]).all() and (gt_rgb[0, 1] == table[-1]).all()
    assert (pred_rgb[0, 1] == table[-1]).all()           # beyond the range: clipped to its end
    assert (err_rgb[0, 0] == table[0]).all() and (err_rgb[0, 1] == table[-1]).all()  # 0 px and >= 5 px
    assert (err_rgb[1, 0] == 0).all()                    # no ground truth: black
