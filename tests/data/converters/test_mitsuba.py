"""The mitsuba layout against real Mitsuba 3 renders (tiny, rendered in the test)."""

import numpy as np
import pytest

from polstereo.data.converters import ConvertConfig, SourceOptions, convert_dataset
from polstereo.data.converters.mitsuba import mitsuba_stokes_to_image
from polstereo.data.converters.pipeline import ConversionFailed
from polstereo.data.h5 import H5Reader
from polstereo.io.images import read_exr
from polstereo.polar.stokes import stokes_from_angles
from tests.data.converters.fixtures import write_mitsuba_sample

pytest.importorskip("mitsuba", reason="mitsuba (pip install mitsuba) renders the fixtures")

STOKES_CHANNELS = [f"S{k}.{c}" for k in range(4) for c in "RGB"]


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    """One glass-sphere pair (named channels, and the same renders unnamed) and one mirror-like pair."""
    root = tmp_path_factory.mktemp("mitsuba")
    meta = write_mitsuba_sample(root / "src" / "sphere", unnamed_dir=root / "unnamed" / "sphere")
    write_mitsuba_sample(root / "reflect" / "sphere", reflection_only=True, depth_in_stokes_file=True)
    return root, meta


def convert(src, out, **source):
    convert_dataset(ConvertConfig(src=src, out=out, layout="mitsuba", split_ratios=(1, 0, 0),
                                  source=SourceOptions(**source)))
    return H5Reader(out / "train.h5").read(0, normalize=False)


def test_mitsuba_writes_stokes_as_named_rgb_channels(renders):
    root, _ = renders
    assert sorted(read_exr(root / "src" / "sphere" / "left.exr")) == sorted(["R", "G", "B", *STOKES_CHANNELS])
    assert "depth.T" in read_exr(root / "reflect" / "sphere" / "left.exr")  # a nested aov integrator


def test_depth_channel_inside_the_stokes_file_is_used(renders, tmp_path):
    root, _ = renders
    sample = convert(root / "reflect", tmp_path / "out")
    assert np.isfinite(sample.disparity).any() and np.isnan(sample.disparity[0, 0])


def test_angle_images_are_half_s0_plus_linear_stokes(renders, tmp_path):
    root, meta = renders
    sample = convert(root / "src", tmp_path / "out")
    channels = read_exr(root / "src" / "sphere" / "left.exr")
    s = {k: np.stack([channels[f"S{k}.{c}"] for c in "RGB"]) for k in range(3)}
    s[1], s[2] = mitsuba_stokes_to_image(s[1], s[2], meta["focal_px"])  # meta.json has the focal length
    assert sample.left.dtype == np.float32 and sample.left.shape == (4, 3, 48, 64)
    for i, theta in enumerate(np.radians([0, 45, 90, 135])):
        expected = 0.5 * (s[0] + s[1] * np.cos(2 * theta) + s[2] * np.sin(2 * theta))
        assert np.allclose(sample.left[i], np.clip(expected, 0, None), atol=1e-6)
    assert np.allclose(stokes_from_angles(sample.left)[0], s[0], atol=1e-5)


def test_disparity_comes_from_ray_depth_focal_and_baseline(renders, tmp_path):
    root, meta = renders
    sample = convert(root / "src", tmp_path / "out")
    nearest_z = 3.0  # camera at z=4, sphere of radius 1 at the origin
    expected = meta["focal_px"] * meta["baseline_m"] / nearest_z
    assert np.nanmax(sample.disparity) == pytest.approx(expected, rel=5e-3)
    assert np.isnan(sample.disparity[0, 0])  # a corner sees only the sky: no depth
    assert np.array_equal(np.isfinite(sample.disparity), sample.transparent)
    assert (sample.focal_px, sample.baseline_m) == (meta["focal_px"], meta["baseline_m"])


def test_treating_ray_depth_as_z_would_shrink_off_axis_disparity(renders, tmp_path):
    root, _ = renders
    as_range = convert(root / "src", tmp_path / "a")
    as_z = convert(root / "src", tmp_path / "b", depth_kind="z")
    ok = np.isfinite(as_range.disparity)
    assert (as_z.disparity[ok] <= as_range.disparity[ok] + 1e-5).all()
    assert as_z.disparity[ok].min() < as_range.disparity[ok].min() - 0.01


def test_unnamed_write_bitmap_channels_give_the_same_images(renders, tmp_path):
    root, meta = renders
    named = convert(root / "src", tmp_path / "a")
    unnamed = convert(root / "unnamed", tmp_path / "b", patterns={"disparity": "", "mask": ""},
                      focal_px=meta["focal_px"])
    assert np.allclose(named.left, unnamed.left, atol=1e-6) and np.allclose(named.right, unnamed.right, atol=1e-6)


def test_mono_output_is_the_luminance_of_the_rgb_images(renders, tmp_path):
    root, _ = renders
    rgb = convert(root / "src", tmp_path / "a")
    mono = convert(root / "src", tmp_path / "b", color="mono")
    luma = np.tensordot(rgb.left, np.array([0.2126, 0.7152, 0.0722], np.float32), axes=([1], [0]))
    assert mono.left.shape == (4, 1, 48, 64) and np.allclose(mono.left[:, 0], luma, atol=1e-6)


def test_aolp_of_sphere_reflection_is_perpendicular_to_the_normal_counter_clockwise(renders, tmp_path):
    """Fresnel reflection is polarized perpendicular to the plane of incidence, i.e. at the
    screen direction of the surface normal + 90 deg. In polstereo's convention (x right, y down,
    angles counter-clockwise on screen) the top-left of the sphere reads ~45 deg, the top-right
    ~135 deg; the clockwise reading would swap them."""
    root, _ = renders
    sample = convert(root / "reflect", tmp_path / "out", color="mono")
    s = stokes_from_angles(sample.left[:, 0].astype(np.float64))
    linear = s[1] + 1j * s[2]
    h, w = linear.shape
    y, x = np.mgrid[0:h, 0:w]
    cx = (w - 1) / 2 + sample.focal_px * sample.baseline_m / 2 / 4.0  # left camera sits at -B/2
    normal_on_screen = np.arctan2(-(y - (h - 1) / 2), x - cx)  # counter-clockwise from image-right
    weight = np.abs(linear).sum()
    ccw = (linear * np.exp(-2j * (normal_on_screen + np.pi / 2))).sum().real / weight
    cw = (linear * np.exp(-2j * (-normal_on_screen + np.pi / 2))).sum().real / weight
    assert ccw > 0.9 and abs(cw) < 0.2
    aolp = np.degrees(0.5 * np.angle(linear)) % 180
    top_left = (y < h / 2 - 6) & (x < cx - 6) & (np.abs(linear) > 0.01)
    top_right = (y < h / 2 - 6) & (x > cx + 6) & (np.abs(linear) > 0.01)
    assert 20 < np.median(aolp[top_left]) < 70 and 110 < np.median(aolp[top_right]) < 160


def test_missing_focal_length_skips_a_depth_only_sample(renders, tmp_path):
    root, _ = renders
    src = tmp_path / "src" / "sphere"
    src.mkdir(parents=True)
    for name in ("left.exr", "right.exr", "depth.exr", "mask.png"):
        (src / name).write_bytes((root / "src" / "sphere" / name).read_bytes())
    with pytest.raises(ConversionFailed, match="focal_px and baseline_m"), pytest.warns(UserWarning, match="focal_px"):
        convert(tmp_path / "src", tmp_path / "out")
    sample = convert(tmp_path / "src", tmp_path / "out2", focal_px=50.0, baseline_m=0.1)
    assert (sample.focal_px, sample.baseline_m) == (50.0, 0.1)
    assert np.nanmax(sample.disparity) == pytest.approx(50 * 0.1 / 3.0, rel=0.02)


def _copy_render(root, dst, meta):
    import json

    dst.mkdir(parents=True)
    for name in ("left.exr", "right.exr", "depth.exr", "mask.png"):
        (dst / name).write_bytes((root / "src" / "sphere" / name).read_bytes())
    (dst / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("kinds", [["solid-sphere", "pane"], "solid-sphere, pane"])
def test_glass_kinds_and_lighting_come_from_meta_json(renders, tmp_path, kinds):
    root, meta = renders
    _copy_render(root, tmp_path / "src" / "sphere", {**meta, "glass_kinds": kinds, "lighting": "area-lamp"})
    sample = convert(tmp_path / "src", tmp_path / "out")
    assert (sample.glass_kinds, sample.lighting) == (("solid-sphere", "pane"), "area-lamp")


def test_meta_json_without_kinds_leaves_them_unknown_and_an_empty_list_means_no_glass(renders, tmp_path):
    root, meta = renders
    _copy_render(root, tmp_path / "a" / "sphere", meta)
    _copy_render(root, tmp_path / "b" / "sphere", {**meta, "glass_kinds": []})
    assert (convert(tmp_path / "a", tmp_path / "out_a").glass_kinds, convert(tmp_path / "b", tmp_path / "out_b")
            .glass_kinds) == (None, ())


def test_malformed_glass_kinds_in_meta_json_skip_the_sample(renders, tmp_path):
    root, meta = renders
    _copy_render(root, tmp_path / "src" / "sphere", {**meta, "glass_kinds": [1, 2]})
    with pytest.raises(ConversionFailed, match="glass_kinds must be a list of names"):
        convert(tmp_path / "src", tmp_path / "out")
