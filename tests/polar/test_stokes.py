"""Tests for polstereo.polar.stokes: known values, round trips, numpy/torch, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polstereo.errors import PolstereoError
from polstereo.polar.stokes import (DEFAULT_ANGLES_DEG, angles_from_stokes, aolp, dolp,
                                    hflip_angle_permutation, normalized_stokes,
                                    stokes_from_angles, unpolarized_intensity)

ANGLE_SETS = {
    "N3": (0.0, 60.0, 120.0),
    "N4": DEFAULT_ANGLES_DEG,
    "N5": (0.0, 36.0, 72.0, 108.0, 144.0),
    "irregular": (10.0, 50.0, 100.0, 170.0),
}


def malus(total: float, dolp_value: float, aolp_deg: float, angles_deg) -> np.ndarray:
    """Intensities behind polarizers for partially polarized light, shape (N,)."""
    theta = np.deg2rad(np.asarray(angles_deg))
    phi = math.radians(aolp_deg)
    return 0.5 * total * (1.0 + dolp_value * np.cos(2.0 * (theta - phi)))


def random_valid_stokes(rng: np.random.Generator, shape) -> np.ndarray:
    """Physically valid (S0, S1, S2) stacked on axis 0: S0 in [0.1, 1], DoLP in [0, 1]."""
    s0 = rng.uniform(0.1, 1.0, shape)
    p = rng.uniform(0.0, 1.0, shape)
    phi = rng.uniform(0.0, math.pi, shape)
    return np.stack([s0, s0 * p * np.cos(2 * phi), s0 * p * np.sin(2 * phi)])


# ---------------------------------------------------------------------------- known values
@pytest.mark.parametrize("aolp_deg", [0.0, 30.0, 45.0, 90.0, 135.0, 170.0])
def test_fully_polarized_light_gives_dolp_one_and_its_angle(aolp_deg):
    stokes = stokes_from_angles(malus(1.0, 1.0, aolp_deg, DEFAULT_ANGLES_DEG))
    assert dolp(stokes) == pytest.approx(1.0, abs=1e-12)
    assert math.degrees(aolp(stokes)) == pytest.approx(aolp_deg, abs=1e-9)


def test_unpolarized_light_gives_zero_stokes_1_2_and_dolp_zero():
    stokes = stokes_from_angles(np.full(4, 0.3))
    np.testing.assert_allclose(stokes, [0.6, 0.0, 0.0], atol=1e-15)
    assert dolp(stokes) == pytest.approx(0.0, abs=1e-12)


def test_partially_polarized_light_gives_its_dolp_and_aolp():
    stokes = stokes_from_angles(malus(2.0, 0.25, 60.0, DEFAULT_ANGLES_DEG))
    np.testing.assert_allclose(stokes, [2.0, 0.5 * math.cos(math.radians(120)), 0.5 * math.sin(math.radians(120))],
                               atol=1e-12)
    assert dolp(stokes) == pytest.approx(0.25)
    assert aolp(stokes) == pytest.approx(math.radians(60.0))


def test_stokes_of_default_angles_is_the_textbook_formula():
    i0, i45, i90, i135 = 0.9, 0.2, 0.4, 0.7
    stokes = stokes_from_angles(np.array([i0, i45, i90, i135]))
    np.testing.assert_allclose(stokes, [(i0 + i45 + i90 + i135) / 2, i0 - i90, i45 - i135], atol=1e-12)


def test_unpolarized_intensity_is_half_of_s0():
    stokes = np.array([[0.8, 0.2], [0.1, 0.0], [-0.3, 0.0]])
    np.testing.assert_allclose(unpolarized_intensity(stokes), [0.4, 0.1])


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("angles", ANGLE_SETS.values(), ids=ANGLE_SETS.keys())
def test_stokes_to_angles_to_stokes_round_trips(angles):
    stokes = random_valid_stokes(np.random.default_rng(0), (2, 5, 6))
    recovered = stokes_from_angles(angles_from_stokes(stokes, angles), angles)
    np.testing.assert_allclose(recovered, stokes, atol=1e-12)


def test_three_angles_reproduce_any_intensities_exactly():
    angles = ANGLE_SETS["N3"]
    images = np.random.default_rng(1).uniform(0, 1, (3, 1, 4, 4))
    np.testing.assert_allclose(angles_from_stokes(stokes_from_angles(images, angles), angles), images, atol=1e-12)


def test_five_angles_give_the_least_squares_solution():
    angles = ANGLE_SETS["N5"]
    intensities = np.random.default_rng(2).uniform(0, 1, (5, 7))
    theta = np.deg2rad(angles)
    design = 0.5 * np.stack([np.ones(5), np.cos(2 * theta), np.sin(2 * theta)], axis=1)
    expected = np.linalg.lstsq(design, intensities, rcond=None)[0]
    np.testing.assert_allclose(stokes_from_angles(intensities, angles), expected, atol=1e-12)


def test_angle_axis_can_be_any_axis():
    images = np.random.default_rng(3).uniform(0, 1, (2, 4, 3, 5, 6))
    np.testing.assert_allclose(stokes_from_angles(images, axis=1),
                               np.moveaxis(stokes_from_angles(np.moveaxis(images, 1, 0)), 0, 1))
    np.testing.assert_allclose(stokes_from_angles(images, axis=-4), stokes_from_angles(images, axis=1))


# ---------------------------------------------------------------------------- errors
def test_fewer_than_three_angles_are_refused():
    with pytest.raises(PolstereoError, match="at least 3 polarizer angles"):
        stokes_from_angles(np.zeros((2, 4, 4)), (0.0, 90.0))


def test_angles_equal_modulo_180_are_refused_as_degenerate():
    with pytest.raises(PolstereoError, match="degenerate"):
        stokes_from_angles(np.zeros((3, 4, 4)), (0.0, 90.0, 180.0))


def test_mismatched_angle_axis_size_is_refused():
    with pytest.raises(PolstereoError, match="expected size 4 along axis 0"):
        stokes_from_angles(np.zeros((3, 4, 4)))


def test_non_stokes_axis_is_refused_by_dolp():
    with pytest.raises(PolstereoError, match="size 3 along axis 1"):
        dolp(np.zeros((3, 5)), axis=1)


# ---------------------------------------------------------------------------- safety
def test_exactly_unpolarized_stokes_give_aolp_zero():
    assert aolp(np.array([1.0, 0.0, 0.0])) == 0.0
    assert aolp(torch.zeros(3)) == 0.0


def test_black_pixels_give_finite_zero_dolp_and_normalized_stokes():
    stokes = np.zeros((3, 2, 2), dtype=np.float32)
    assert np.all(dolp(stokes) == 0)
    assert np.all(normalized_stokes(stokes) == 0)


def test_dolp_is_clipped_to_one_when_noise_exceeds_s0():
    stokes = np.array([1.0, 1.0, 1.0])  # |(S1, S2)| = 1.41 > S0: impossible, only noise does this
    assert dolp(stokes) == pytest.approx(1.0)
    n1, n2 = normalized_stokes(stokes)
    assert math.hypot(n1, n2) == pytest.approx(1.0)


def test_aolp_stays_below_pi_for_tiny_negative_angles():
    stokes = np.array([1.0, 1.0, -1e-300])
    value = aolp(stokes)
    assert 0.0 <= value < math.pi
    assert aolp(torch.tensor([1.0, 1.0, -1e-30])) < math.pi


def test_normalized_stokes_has_dolp_magnitude_and_twice_aolp_direction():
    stokes = random_valid_stokes(np.random.default_rng(4), (6,))
    n = normalized_stokes(stokes)
    np.testing.assert_allclose(np.hypot(n[0], n[1]), dolp(stokes), atol=1e-12)
    np.testing.assert_allclose(n[0], dolp(stokes) * np.cos(2 * aolp(stokes)), atol=1e-12)
    np.testing.assert_allclose(n[1], dolp(stokes) * np.sin(2 * aolp(stokes)), atol=1e-12)


def test_normalized_stokes_stacks_along_the_given_axis():
    assert normalized_stokes(np.ones((2, 3, 5)), axis=1).shape == (2, 2, 5)
    assert normalized_stokes(np.ones((2, 5, 3)), axis=-1).shape == (2, 5, 2)


# ---------------------------------------------------------------------------- numpy / torch
def test_numpy_and_torch_agree_on_every_function():
    images = np.random.default_rng(5).uniform(0, 1, (4, 3, 5, 6)).astype(np.float32)
    stokes_np = stokes_from_angles(images)
    stokes_t = stokes_from_angles(torch.from_numpy(images))
    assert isinstance(stokes_t, torch.Tensor)
    np.testing.assert_allclose(stokes_t.numpy(), stokes_np, atol=1e-6)
    for fn in (dolp, aolp, unpolarized_intensity, normalized_stokes):
        np.testing.assert_allclose(fn(stokes_t).numpy(), fn(stokes_np), atol=1e-5, err_msg=fn.__name__)
    np.testing.assert_allclose(angles_from_stokes(stokes_t).numpy(), angles_from_stokes(stokes_np), atol=1e-6)


def test_floating_dtypes_are_kept_and_integers_become_float32():
    assert stokes_from_angles(torch.zeros(4, 2, dtype=torch.float64)).dtype == torch.float64
    assert stokes_from_angles(np.zeros((4, 2), dtype=np.float64)).dtype == np.float64
    assert stokes_from_angles(np.zeros((4, 2), dtype=np.uint16)).dtype == np.float32
    assert stokes_from_angles(torch.zeros(4, 2, dtype=torch.uint8)).dtype == torch.float32


def test_normalized_stokes_passes_gradcheck_in_float64():
    stokes = torch.tensor(random_valid_stokes(np.random.default_rng(6), (2, 3)), dtype=torch.float64)
    stokes[0] += 0.5  # keep away from the DoLP = 1 kink of the clip
    assert torch.autograd.gradcheck(normalized_stokes, (stokes.requires_grad_(),))


def test_stokes_from_angles_passes_gradcheck_in_float64():
    images = torch.rand(5, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: stokes_from_angles(x, ANGLE_SETS["N5"]), (images,))


def test_gradients_flow_after_a_first_call_under_inference_mode():
    angles = (0.0, 50.0, 100.0, 150.0)  # an angle set no other test has cached
    with torch.inference_mode():
        stokes_from_angles(torch.rand(4, 2), angles)
    images = torch.rand(4, 2, requires_grad=True)
    stokes_from_angles(images, angles).sum().backward()
    assert images.grad is not None


def test_gradients_are_finite_at_black_unpolarized_pixels():
    stokes = torch.zeros(3, 4, requires_grad=True)
    (dolp(stokes).sum() + aolp(stokes).sum() + normalized_stokes(stokes).sum()).backward()
    assert torch.isfinite(stokes.grad).all()


# ---------------------------------------------------------------------------- horizontal flip
def test_hflip_swaps_45_and_135_for_default_angles():
    assert hflip_angle_permutation(DEFAULT_ANGLES_DEG) == (0, 3, 2, 1)


@pytest.mark.parametrize("angles", ANGLE_SETS.values(), ids=ANGLE_SETS.keys())
def test_hflip_permutation_mirrors_aolp(angles):
    if angles == ANGLE_SETS["irregular"]:
        angles = (10.0, 80.0, 100.0, 170.0)  # an irregular set closed under mirroring
    aolp_deg = np.array([0.0, 20.0, 45.0, 100.0, 150.0])
    images = np.stack([malus(1.0, 0.6, a, angles) for a in aolp_deg], axis=1)  # (N, 5)
    flipped = images[list(hflip_angle_permutation(angles))]
    error = np.mod(aolp(stokes_from_angles(flipped, angles)) - np.deg2rad(180.0 - aolp_deg), np.pi)
    assert np.minimum(error, np.pi - error).max() < 1e-9  # AoLP near 0 may come out as ~π


def test_hflip_refuses_angles_without_their_mirror():
    with pytest.raises(PolstereoError, match="mirror of 30.0 deg"):
        hflip_angle_permutation((0.0, 30.0, 90.0))
