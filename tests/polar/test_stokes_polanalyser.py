"""Agreement of polstereo.polar.stokes with polanalyser on random inputs.

polanalyser puts the Stokes axis last and takes polarizer angles in radians; its AoLP is
``mod(½·atan2(S2, S1), π)`` in the same angle convention as ours (a polarizer at θ has
Mueller first row ½(1, cos 2θ, sin 2θ)), so the mapping is a change of axis and units.
"""

from __future__ import annotations

import numpy as np
import pytest

from polstereo.polar.stokes import aolp, dolp, stokes_from_angles

pa = pytest.importorskip("polanalyser")

ANGLE_SETS = [(0.0, 45.0, 90.0, 135.0), (0.0, 60.0, 120.0), (5.0, 40.0, 80.0, 115.0, 160.0)]


def circular_difference(a: np.ndarray, b: np.ndarray, period: float = np.pi) -> np.ndarray:
    d = np.mod(a - b, period)
    return np.minimum(d, period - d)


@pytest.mark.parametrize("angles", ANGLE_SETS, ids=lambda a: f"N{len(a)}")
def test_stokes_agree_with_polanalyser_calc_stokes(angles):
    images = np.random.default_rng(0).uniform(0, 1, (len(angles), 6, 7))
    ours = stokes_from_angles(images, angles)
    theirs = np.moveaxis(pa.calcStokes(images, np.deg2rad(angles)), -1, 0)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("angles", ANGLE_SETS, ids=lambda a: f"N{len(a)}")
def test_dolp_and_aolp_agree_with_polanalyser(angles):
    images = np.random.default_rng(1).uniform(0.05, 1, (len(angles), 6, 7))
    theirs_stokes = pa.calcStokes(images, np.deg2rad(angles))
    ours_stokes = stokes_from_angles(images, angles)
    # polanalyser does not clip DoLP: random intensities can be "over-polarized".
    np.testing.assert_allclose(dolp(ours_stokes), np.minimum(pa.cvtStokesToDoLP(theirs_stokes), 1.0), atol=1e-5)
    assert circular_difference(aolp(ours_stokes), pa.cvtStokesToAoLP(theirs_stokes)).max() < 1e-5


def test_float32_inputs_agree_with_polanalyser_to_1e_5():
    images = np.random.default_rng(2).uniform(0.05, 1, (4, 8, 8)).astype(np.float32)
    ours = stokes_from_angles(images)
    theirs = pa.calcStokes(images.astype(np.float64), np.deg2rad((0, 45, 90, 135)))
    np.testing.assert_allclose(ours, np.moveaxis(theirs, -1, 0), atol=1e-5)
    np.testing.assert_allclose(dolp(ours), np.minimum(pa.cvtStokesToDoLP(theirs), 1.0), atol=1e-5)
