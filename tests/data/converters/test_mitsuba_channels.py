"""Pure pieces of the mitsuba layout (no renderer needed)."""

import numpy as np
import pytest

from polstereo.data.converters.base import SkipSample
from polstereo.data.converters.mitsuba import (
    angle_images, depth_channel, disparity_from_depth, range_to_z, stokes_from_channels,
)


def planes(*values, shape=(2, 3)):
    return [np.full(shape, v, np.float32) for v in values]


def test_rgb_stokes_channels_stack_as_stokes_then_colour():
    channels = {f"S{k}.{c}": p for (k, c), p in zip([(k, c) for k in range(4) for c in "RGB"], planes(*range(12)))}
    stokes = stokes_from_channels(channels)
    assert stokes.shape == (3, 3, 2, 3) and stokes[:, :, 0, 0].tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


@pytest.mark.parametrize("suffix", ["", ".Y"])
def test_mono_stokes_channel_names(suffix):
    channels = dict(zip([f"S0{suffix}", f"S1{suffix}", f"S2{suffix}"], planes(4, 1, -1)))
    assert stokes_from_channels(channels)[:, 0, 0, 0].tolist() == [4, 1, -1]


def test_unnamed_channels_after_the_film_channels_are_stokes():
    channels = {f"ch{i:02d}": p for i, p in enumerate(planes(*range(15)))}  # R G B S0.R ... S3.B
    assert stokes_from_channels(channels)[:, :, 0, 0].tolist() == [[3, 4, 5], [6, 7, 8], [9, 10, 11]]


def test_file_without_stokes_channels_skips_the_sample():
    with pytest.raises(SkipSample, match="no Stokes channels"):
        stokes_from_channels(dict(zip("RGB", planes(1, 2, 3))), "x.exr")


def test_angle_images_follow_malus_law_and_stay_non_negative():
    stokes = np.array([2.0, 1.0, 0.0], np.float32).reshape(3, 1, 1, 1)
    assert angle_images(stokes, (0, 45, 90, 135))[:, 0, 0, 0].tolist() == pytest.approx([1.5, 1.0, 0.5, 1.0])
    noisy = np.array([1.0, 0.0, -1.2], np.float32).reshape(3, 1, 1, 1)  # |S_lin| > S0 by noise
    assert angle_images(noisy, (45,)).min() == 0.0


def test_range_to_z_flattens_the_ray_distance_to_a_plane():
    f, z = 10.0, 2.0
    y, x = np.mgrid[0:5, 0:7].astype(float)
    distance = z * np.sqrt(f**2 + (x - 3) ** 2 + (y - 2) ** 2) / f
    assert np.allclose(range_to_z(distance, f), z)


def test_disparity_is_f_b_over_z_and_nan_without_a_hit():
    assert disparity_from_depth(np.array([[2.0, 0.0, np.inf]]), 100.0, 0.1).tolist()[0][0] == pytest.approx(5.0)
    assert np.isnan(disparity_from_depth(np.array([[2.0, 0.0, np.inf]]), 100.0, 0.1)[0, 1:]).all()


def test_depth_channel_by_name_suffix_or_only_extra_channel():
    r, g, b, d = planes(1, 2, 3, 4)
    assert depth_channel({"R": r, "depth.T": d}, "depth") is d
    assert depth_channel({"R": r, "G": g, "B": b, "Z": d}, "depth") is d
    assert depth_channel({"R": r, "G": g, "B": b, "Z": d}, "depth", guess=False) is None
    assert depth_channel({"a": r, "b": d}, "depth") is None


def test_depth_of_another_size_skips_the_sample(tmp_path):
    from polstereo.data.converters.mitsuba import MitsubaConverter
    from polstereo.data.converters.base import SourceOptions
    from polstereo.io.images import write_exr

    np.save(tmp_path / "depth.npy", np.ones((3, 3), np.float32))
    converter = MitsubaConverter(SourceOptions(focal_px=10.0, baseline_m=0.1))
    with pytest.raises(SkipSample, match="depth is 3x3, images are 4x2"):
        converter.load_disparity(tmp_path, {}, (2, 4))
    write_exr(tmp_path / "left.exr", {"S0": np.ones((2, 4), np.float32)})
    (tmp_path / "depth.npy").unlink()
    with pytest.raises(SkipSample, match="disparity .* depth .* or a 'depth' channel in left.exr"):
        converter.load_disparity(tmp_path, {}, (2, 4))


def test_overpolarized_render_noise_keeps_the_stokes_relation():
    import numpy as np

    stokes = np.array([[[[1.0]]], [[[0.9]]], [[[0.6]]]], dtype=np.float32)  # DoLP 1.08 (Monte Carlo noise)
    images = angle_images(stokes, (0.0, 45.0, 90.0, 135.0))[:, 0, 0, 0]
    assert (images >= 0).all()
    assert abs((images[0] + images[2]) - (images[1] + images[3])) < 1e-6
    assert abs(images[0] + images[2] - 1.0) < 1e-6  # S0 kept
