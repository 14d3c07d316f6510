"""Tests for polstereo.polar.mosaic: layouts, round trips, polanalyser agreement, errors."""

from __future__ import annotations

import numpy as np
import pytest

from polstereo.errors import PolstereoError
from polstereo.polar.mosaic import LAYOUTS, MosaicLayout, demosaic, layout_angles_deg, layout_period, mosaic

ANGLE_VALUE = {0.0: 10, 45.0: 20, 90.0: 30, 135.0: 40}


def sony_tile_raw(height: int = 4, width: int = 6) -> np.ndarray:
    """A mono raw image whose value names the polarizer angle of each pixel (10 -> 0°, ...)."""
    tile = np.array([[ANGLE_VALUE[90.0], ANGLE_VALUE[45.0]], [ANGLE_VALUE[135.0], ANGLE_VALUE[0.0]]])
    return np.tile(tile, (height // 2, width // 2)).astype(np.uint8)


def constant_stack(channels: int, height: int, width: int) -> np.ndarray:
    """(4, C, H, W) with a different constant per angle and colour."""
    values = np.arange(1, 4 * channels + 1, dtype=np.float32).reshape(4, channels, 1, 1)
    return np.broadcast_to(values, (4, channels, height, width)).copy()


# ---------------------------------------------------------------------------- layouts
def test_sony_layout_puts_90_45_135_0_in_the_super_pixel():
    stack = demosaic(sony_tile_raw(), method="superpixel")
    assert stack.shape == (4, 1, 2, 3)
    np.testing.assert_array_equal(stack[:, 0, 0, 0], [10, 20, 30, 40])


def test_bilinear_of_a_uniform_angle_tile_is_constant_per_angle():
    stack = demosaic(sony_tile_raw())
    assert stack.shape == (4, 1, 4, 6) and stack.dtype == np.float32
    for index, value in enumerate([10, 20, 30, 40]):
        assert np.all(stack[index] == value)


def test_layout_angles_are_ascending():
    assert layout_angles_deg("IMX250MZR") == (0.0, 45.0, 90.0, 135.0)
    assert layout_angles_deg(((30, 0), (120, 60))) == (0.0, 30.0, 60.0, 120.0)


def test_colour_layouts_have_a_4_pixel_period():
    assert layout_period("IMX250MZR") == 2
    assert layout_period("IMX250MYR") == 4
    assert layout_period("IMX250MZR", color=True) == 4


def test_custom_pattern_is_read_row_major():
    raw = np.tile(np.array([[1, 2], [3, 4]], dtype=np.uint8), (2, 2))
    stack = demosaic(raw, layout=((0, 45), (90, 135)), method="superpixel")
    np.testing.assert_array_equal(stack[:, 0, 0, 0], [1, 2, 3, 4])


def test_layout_names_are_case_insensitive():
    raw = sony_tile_raw()
    np.testing.assert_array_equal(demosaic(raw, "imx250mzr"), demosaic(raw))


def test_color_true_on_a_mono_pattern_is_the_colour_sensor():
    raw = np.random.default_rng(0).integers(0, 256, (8, 8)).astype(np.uint8)
    np.testing.assert_array_equal(demosaic(raw, "IMX250MZR", color=True), demosaic(raw, "IMX250MYR"))


def test_colour_layout_puts_rggb_over_super_pixels():
    stack = constant_stack(3, 8, 8)
    raw = mosaic(stack, "IMX250MYR")
    # super-pixel (0, 0) is red, (0, 1) green, (1, 1) blue; 0° sits at offset (1, 1) in each.
    assert raw[1, 1] == stack[0, 0, 0, 0]
    assert raw[1, 3] == stack[0, 1, 0, 0]
    assert raw[3, 1] == stack[0, 1, 0, 0]
    assert raw[3, 3] == stack[0, 2, 0, 0]
    assert raw[0, 0] == stack[2, 0, 0, 0]  # 90°, red


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("layout,shape", [("IMX250MZR", (6, 10)), ("IMX250MYR", (8, 12))])
def test_mosaic_of_demosaic_gives_back_the_raw(layout, shape):
    raw = np.random.default_rng(1).integers(0, 65536, shape).astype(np.uint16)
    assert np.array_equal(mosaic(demosaic(raw, layout), layout), raw)


@pytest.mark.parametrize("channels,layout", [(1, "IMX250MZR"), (3, "IMX250MYR")])
@pytest.mark.parametrize("method", ["bilinear", "superpixel"])
def test_demosaic_of_mosaic_recovers_a_constant_stack_everywhere(channels, layout, method):
    stack = constant_stack(channels, 8, 12)
    recovered = demosaic(mosaic(stack, layout), layout, method=method)
    expected = stack if method == "bilinear" else stack[..., ::2, ::2]
    np.testing.assert_array_equal(recovered, expected)


def test_bilinear_reproduces_a_linear_ramp_in_the_interior():
    rows, cols = np.indices((8, 10), dtype=np.float32)
    ramp = 3.0 * rows + 2.0 * cols
    stack = np.stack([ramp + 100 * k for k in range(4)])[:, None]
    recovered = demosaic(mosaic(stack))
    np.testing.assert_allclose(recovered[..., 1:-1, 1:-1], stack[..., 1:-1, 1:-1], atol=1e-4)


def test_float64_raw_gives_float64_stack():
    assert demosaic(np.zeros((4, 4))).dtype == np.float64


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize("layout,shape", [("IMX250MZR", (5, 8)), ("IMX250MZR", (4, 7)), ("IMX250MYR", (6, 8))])
def test_sizes_off_the_layout_period_are_refused(layout, shape):
    with pytest.raises(PolstereoError, match="not a multiple of the"):
        demosaic(np.zeros(shape), layout)


def test_non_2d_raw_is_refused():
    with pytest.raises(PolstereoError, match="must be 2-D"):
        demosaic(np.zeros((4, 4, 3)))


def test_unknown_layout_is_refused_with_the_known_ones():
    with pytest.raises(PolstereoError, match="unknown mosaic layout 'XYZ'.*IMX250MZR"):
        demosaic(np.zeros((4, 4)), "XYZ")


def test_pattern_with_repeated_angles_is_refused():
    with pytest.raises(PolstereoError, match="4 different polarizer angles"):
        demosaic(np.zeros((4, 4)), ((0, 45), (90, 180)))


def test_unknown_method_is_refused():
    with pytest.raises(PolstereoError, match="unknown demosaic method"):
        demosaic(np.zeros((4, 4)), method="cubic")


def test_color_false_on_a_colour_layout_is_refused():
    with pytest.raises(PolstereoError, match="colour sensor"):
        demosaic(np.zeros((4, 4)), "IMX250MYR", color=False)


def test_mosaic_refuses_a_stack_of_the_wrong_colour_count():
    with pytest.raises(PolstereoError, match="needs C = 1"):
        mosaic(np.zeros((4, 3, 4, 4)), "IMX250MZR", color=False)
    with pytest.raises(PolstereoError, match=r"\(4, C, H, W\)"):
        mosaic(np.zeros((3, 1, 4, 4)))


def test_every_table_layout_resolves():
    for name, layout in LAYOUTS.items():
        assert isinstance(layout, MosaicLayout) and layout.name == name
        assert len(layout_angles_deg(name)) == 4
