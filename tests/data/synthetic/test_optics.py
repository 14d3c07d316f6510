import numpy as np
import pytest

from polstereo.data.synthetic.optics import (brewster_angle, diffuse_dolp, fresnel_reflectance, image_angle_cos_sin,
                                             reflect, reflection_dolp, refract)


@pytest.mark.parametrize("n", [1.4, 1.5, 1.6])
def test_fresnel_reflectance_at_normal_incidence_is_the_closed_form(n):
    rs, rp = fresnel_reflectance(np.array([1.0]), 1.0, n)
    expected = ((n - 1) / (n + 1)) ** 2
    assert rs[0] == pytest.approx(expected, rel=1e-12) and rp[0] == pytest.approx(expected, rel=1e-12)


def test_fresnel_reflectance_is_the_same_from_either_side_at_normal_incidence():
    assert fresnel_reflectance(np.array([1.0]), 1.5, 1.0)[0][0] == pytest.approx(0.04)


@pytest.mark.parametrize("n", [1.4, 1.5, 1.6])
def test_reflection_dolp_is_one_at_brewsters_angle(n):
    theta_b = brewster_angle(n)
    assert theta_b == pytest.approx(np.arctan(n))
    rs, rp = fresnel_reflectance(np.array([np.cos(theta_b)]), 1.0, n)
    assert rp[0] < 1e-12
    assert reflection_dolp(np.array([np.cos(theta_b)]), n)[0] == pytest.approx(1.0, abs=1e-9)


def test_reflection_dolp_peaks_at_brewster_and_vanishes_at_normal_and_grazing_incidence():
    theta = np.radians(np.arange(0.0, 90.0, 0.5))
    rho = reflection_dolp(np.cos(theta), 1.5)
    assert abs(np.degrees(theta[np.argmax(rho)]) - np.degrees(np.arctan(1.5))) <= 0.5
    assert rho[0] == pytest.approx(0.0, abs=1e-12)
    assert reflection_dolp(np.array([1e-6]), 1.5)[0] < 1e-3


def test_rs_exceeds_rp_between_normal_and_grazing_incidence():
    rs, rp = fresnel_reflectance(np.cos(np.radians(np.arange(1.0, 89.0))), 1.0, 1.5)
    assert (rs > rp).all()


def test_total_internal_reflection_beyond_the_critical_angle():
    critical = np.arcsin(1 / 1.5)
    rs, rp = fresnel_reflectance(np.cos(np.array([critical + 0.01, critical - 0.01])), 1.5, 1.0)
    assert rs[0] == rp[0] == 1.0
    assert rs[1] < 1.0 and rp[1] < 1.0


@pytest.mark.parametrize("emission_deg", [10.0, 35.0, 60.0, 80.0])
def test_diffuse_dolp_equals_fresnel_transmission_from_inside_the_surface(emission_deg):
    """Diffuse polarization is the (Tp - Ts)/(Ts + Tp) of subsurface light refracted into air."""
    n = 1.5
    theta_e = np.radians(emission_deg)
    theta_inside = np.arcsin(np.sin(theta_e) / n)
    rs, rp = fresnel_reflectance(np.array([np.cos(theta_inside)]), n, 1.0)
    ts, tp = 1 - rs, 1 - rp
    assert diffuse_dolp(np.array([np.cos(theta_e)]), n)[0] == pytest.approx(((tp - ts) / (tp + ts))[0], rel=1e-9)


def test_diffuse_dolp_is_weak_except_near_grazing_view():
    assert diffuse_dolp(np.array([np.cos(np.radians(45.0))]), 1.5)[0] < 0.05
    grazing = diffuse_dolp(np.array([0.0]), 1.5)[0]
    assert grazing == pytest.approx((1.5 - 1 / 1.5) / (1.5 + 1 / 1.5))


def test_refraction_obeys_snells_law():
    theta_i = np.radians(40.0)
    d = np.array([[np.sin(theta_i)], [0.0], [np.cos(theta_i)]])
    n = np.array([[0.0], [0.0], [-1.0]])
    t, tir = refract(d, n, 1 / 1.5)
    assert not tir[0]
    assert np.linalg.norm(t[:, 0]) == pytest.approx(1.0)
    assert np.sin(theta_i) == pytest.approx(1.5 * t[0, 0], rel=1e-12)
    assert t[2, 0] > 0  # carries on into the medium


def test_refraction_flags_total_internal_reflection_and_mirrors_the_ray():
    theta_i = np.radians(60.0)  # beyond the 41.8 deg critical angle of glass
    d = np.array([[np.sin(theta_i)], [0.0], [np.cos(theta_i)]])
    n = np.array([[0.0], [0.0], [-1.0]])
    t, tir = refract(d, n, 1.5)
    assert tir[0]
    np.testing.assert_allclose(t, reflect(d, n))


@pytest.mark.parametrize("field, angle_deg", [
    ((1.0, 0.0, 0.0), 0.0),        # image-horizontal
    ((0.0, -1.0, 0.0), 90.0),      # towards image-up (-y)
    ((1.0, -1.0, 0.0), 45.0),      # up-right on screen: counter-clockwise from horizontal
    ((1.0, 1.0, 0.0), 135.0),      # down-right on screen
])
def test_image_angle_is_counter_clockwise_on_screen(field, angle_deg):
    e = np.array(field, dtype=np.float64)[:, None] / np.linalg.norm(field)
    d = np.array([[0.0], [0.0], [1.0]])
    cos2, sin2 = image_angle_cos_sin(e, d)
    assert cos2[0] == pytest.approx(np.cos(2 * np.radians(angle_deg)), abs=1e-12)
    assert sin2[0] == pytest.approx(np.sin(2 * np.radians(angle_deg)), abs=1e-12)
