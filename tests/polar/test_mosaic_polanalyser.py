"""Agreement of polstereo.polar.mosaic's bilinear demosaicing with polanalyser.

polanalyser.demosaicing runs OpenCV's bilinear Bayer demosaicing (``COLOR_Bayer*2BGR``,
no suffix) on integer images: it rounds every average to an integer and fills the outer
pixel rows/columns by copying their inner neighbours (overwriting even the sampled raw
values there). polstereo works in float and renormalises the interpolation at the border,
so the two agree exactly in the interior (1 pixel in from the border for mono, 3 for
colour, where OpenCV's border copy on the half-size colour images reaches) when the raw
values make every average an integer, and to within OpenCV's rounding otherwise.
"""

from __future__ import annotations

import numpy as np
import pytest

from polstereo.polar.mosaic import demosaic

pa = pytest.importorskip("polanalyser")

MONO_BORDER = 1
COLOUR_BORDER = 3


def polanalyser_stack(raw: np.ndarray, colour: bool) -> np.ndarray:
    """polanalyser's list of 4 (H, W[, 3 BGR]) images as our (4, C, H, W) RGB stack."""
    if not colour:
        return np.stack(pa.demosaicing(raw, pa.COLOR_PolarMono))[:, None].astype(np.float32)
    bgr = np.stack(pa.demosaicing(raw, pa.COLOR_PolarRGB))
    return bgr[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32)


def interior(stack: np.ndarray, border: int) -> np.ndarray:
    return stack[..., border:-border, border:-border]


def test_mono_bilinear_matches_polanalyser_exactly_in_the_interior():
    # Multiples of 4: averages of 2 and of 4 samples are integers, so OpenCV does not round.
    raw = (np.random.default_rng(0).integers(0, 16384, (12, 16)) * 4).astype(np.uint16)
    np.testing.assert_array_equal(interior(demosaic(raw, "IMX250MZR"), MONO_BORDER),
                                  interior(polanalyser_stack(raw, colour=False), MONO_BORDER))


def test_colour_bilinear_matches_polanalyser_exactly_in_the_interior():
    # Multiples of 16: both interpolation passes (colour, then polarization) stay integer.
    raw = (np.random.default_rng(1).integers(0, 4096, (16, 20)) * 16).astype(np.uint16)
    np.testing.assert_array_equal(interior(demosaic(raw, "IMX250MYR"), COLOUR_BORDER),
                                  interior(polanalyser_stack(raw, colour=True), COLOUR_BORDER))


@pytest.mark.parametrize("colour,border,rounding", [(False, MONO_BORDER, 0.5), (True, COLOUR_BORDER, 1.0)])
def test_bilinear_matches_polanalyser_up_to_opencv_rounding_on_uint8(colour, border, rounding):
    raw = np.random.default_rng(2).integers(0, 256, (16, 16)).astype(np.uint8)
    ours = demosaic(raw, "IMX250MYR" if colour else "IMX250MZR")
    difference = np.abs(interior(ours, border) - interior(polanalyser_stack(raw, colour), border))
    assert difference.max() <= rounding


def test_sampled_pixels_match_polanalyser_everywhere_but_its_copied_border():
    raw = np.random.default_rng(3).integers(0, 256, (8, 8)).astype(np.uint8)
    ours = demosaic(raw)
    theirs = polanalyser_stack(raw, colour=False)
    # Where a pixel sampled an angle, both keep the raw value (OpenCV: away from the border).
    angle_at = {(0, 0): 2, (0, 1): 1, (1, 0): 3, (1, 1): 0}
    for (dy, dx), index in angle_at.items():
        np.testing.assert_array_equal(ours[index, 0, dy::2, dx::2], raw[dy::2, dx::2])
        np.testing.assert_array_equal(theirs[index, 0, 2 + dy:-2:2, 2 + dx:-2:2], raw[2 + dy:-2:2, 2 + dx:-2:2])
