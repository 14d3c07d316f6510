"""Photo textures: scikit-image's bundled photos and a user's folder, mapped onto surfaces."""

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from polstereo.data.synthetic.config import SyntheticConfig
from polstereo.data.synthetic.generate import generate_dataset, generate_sample, sample_rng
from polstereo.data.synthetic.photos import BUNDLED_PHOTOS, photo_library
from polstereo.data.synthetic.render import render_pair
from polstereo.data.synthetic.scene import MATERIAL_KINDS, Material, StereoRig, random_photo_texture, random_scene
from polstereo.data.synthetic.textures import PhotoTexture, Texture
from polstereo.errors import EXIT_USAGE, PolstereoError
from tests.data.synthetic.scenes import away_from_depth_edges, scene_of, sphere, wall, warp_right_to_left

RIG = StereoRig(96, 64, 96.0, 0.1)
TINY = SyntheticConfig(width=48, height=32, noise=False, textures="photo")


def _write_photo(path: Path, seed: int = 0, size: int = 64) -> Path:
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    assert cv2.imwrite(str(path), image)
    return path


def _surface_textures(scene):
    return [obj.material.texture for obj in scene.objects if obj.material.texture is not None]


def test_bundled_photos_are_files_inside_the_scikit_image_package():
    import skimage

    package = Path(skimage.__file__).parent
    photos = photo_library(None, 1)
    assert [p.name for p in photos] == [Path(name).stem for name in BUNDLED_PHOTOS]
    assert all((package / "data" / name).is_file() for name in BUNDLED_PHOTOS)
    assert all(p.levels[0].min() >= 0.0 and p.levels[0].max() <= 1.0 for p in photos)


@pytest.mark.parametrize("channels", [1, 3])
def test_photo_texture_albedo_stays_between_the_drawn_levels(channels):
    photos = photo_library(None, channels)
    points = np.random.default_rng(1).uniform(-0.5, 0.5, (3, 4000))
    for seed in range(8):
        rng = np.random.default_rng(seed)
        for extent in (None, np.array([0.3, 0.2, 0.4])):
            texture = random_photo_texture(rng, photos, 2.0, RIG, channels, extent)
            local = points.copy()
            if extent is None:
                local[2] = 0.0
            footprint = np.exp(rng.uniform(np.log(1e-4), np.log(0.1), local.shape[1]))
            albedo = texture.albedo(local, footprint)
            lo = np.minimum(texture.color0, texture.color1)[:, None] - 1e-6
            hi = np.maximum(texture.color0, texture.color1)[:, None] + 1e-6
            assert albedo.shape == (channels, local.shape[1])
            assert ((albedo >= lo) & (albedo <= hi)).all()
            sharp = texture.albedo(local, np.full(local.shape[1], 1e-4))
            assert sharp.std() > 0.01  # a photo, not a flat colour


def test_photo_mode_textures_every_surface_with_photos_and_procedural_mode_with_patterns():
    for index in range(3):
        photo = random_scene(TINY, sample_rng(0, index))
        procedural = random_scene(dataclasses.replace(TINY, textures="procedural"), sample_rng(0, index))
        assert all(isinstance(t, PhotoTexture) for t in _surface_textures(photo))
        assert all(isinstance(t, Texture) for t in _surface_textures(procedural))
    a = generate_sample(TINY, sample_rng(0, 0))
    b = generate_sample(dataclasses.replace(TINY, textures="procedural"), sample_rng(0, 0))
    assert not np.array_equal(a.left, b.left)


def test_mix_draws_both_photos_and_patterns():
    config = dataclasses.replace(TINY, textures="mix")
    kinds = {type(t) for i in range(6) for t in _surface_textures(random_scene(config, sample_rng(0, i)))}
    assert kinds == {PhotoTexture, Texture}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_photo_wall_is_the_same_in_both_views_under_the_ground_truth_warp(seed):
    photos = photo_library(None, 1)
    depth = RIG.depth_for_disparity(6.0)
    texture = random_photo_texture(np.random.default_rng(seed), photos, depth, RIG, 1)
    pair = render_pair(scene_of(RIG, wall(RIG, 6.0, texture=texture)))
    left, right = pair.left.stokes[0, 0], pair.right.stokes[0, 0]
    inside = ~pair.occlusion & away_from_depth_edges(pair.disparity)
    error = np.abs(left - warp_right_to_left(right, pair.disparity))[inside]
    assert left[inside].std() > 0.02 * left[inside].mean()  # there is texture to compare
    assert error.mean() < 0.01 * left[inside].mean()
    assert np.percentile(error, 99) < 0.05 * left[inside].mean()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_photo_textured_scenes_agree_under_the_ground_truth_warp(seed):
    config = SyntheticConfig(width=96, height=64, noise=False, textures="photo")
    pair = render_pair(random_scene(config, sample_rng(seed, 0)))
    left, right = pair.left.stokes[0, 0], pair.right.stokes[0, 0]
    lambertian = (pair.kind == MATERIAL_KINDS.index("diffuse")) & ~pair.occlusion \
        & away_from_depth_edges(pair.disparity)
    error = np.abs(left - warp_right_to_left(right, pair.disparity))[lambertian]
    # (the 99th percentile is not bounded: box edges are shading creases that no mask removes)
    assert lambertian.sum() > 1000 and error.mean() < 0.01 * left[lambertian].mean()


def test_photo_textures_are_deterministic_per_seed_and_differ_between_samples():
    a = generate_sample(TINY, sample_rng(3, 1))
    b = generate_sample(TINY, sample_rng(3, 1))
    c = generate_sample(TINY, sample_rng(3, 2))
    assert np.array_equal(a.left, b.left) and np.array_equal(a.right, b.right)
    assert not np.array_equal(a.left, c.left)


def test_photo_datasets_do_not_depend_on_the_number_of_workers(tmp_path):
    config = dataclasses.replace(TINY, width=32, height=24, noise=True, seed=6)
    generate_dataset(tmp_path / "one", config, 3, split=(1.0, 0.0, 0.0), workers=1, progress=False)
    generate_dataset(tmp_path / "two", config, 3, split=(1.0, 0.0, 0.0), workers=2, progress=False)
    assert (tmp_path / "one" / "train.h5").read_bytes() == (tmp_path / "two" / "train.h5").read_bytes()


def test_a_texture_folder_adds_its_photos_to_the_drawn_ones(tmp_path):
    _write_photo(tmp_path / "mine.png")
    _write_photo(tmp_path / "also mine.JPG", seed=1)
    (tmp_path / "notes.txt").write_text("not an image")
    photos = photo_library(str(tmp_path), 1)
    assert [p.name for p in photos[-2:]] == ["also mine.JPG", "mine.png"]
    assert len(photos) == len(BUNDLED_PHOTOS) + 2
    config = dataclasses.replace(TINY, texture_dir=str(tmp_path))
    names = {t.name for i in range(12) for t in _surface_textures(random_scene(config, sample_rng(0, i)))}
    assert names & {"mine.png", "also mine.JPG"}


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing", "no such folder"),
    (lambda d: d, "no PNG or JPEG"),
    (lambda d: (d / "broken.png").write_bytes(b"\x89PNG not really") and d, "not a readable"),
    (lambda d: _write_photo(d / "tiny.png", size=16).parent, "too small"),
    (lambda d: (d / "file.png").write_bytes(b"x") and (d / "file.png"), "not a folder"),
])
def test_a_bad_texture_folder_is_a_one_line_usage_error_before_anything_is_written(tmp_path, make, message):
    folder = tmp_path / "textures"
    folder.mkdir()
    folder = make(folder)
    config = dataclasses.replace(TINY, texture_dir=str(folder))
    with pytest.raises(PolstereoError, match=message) as err:
        generate_dataset(tmp_path / "out", config, 2, progress=False)
    assert err.value.exit_code == EXIT_USAGE and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_photo_textured_opaque_objects_render_with_their_photo():
    photos = photo_library(None, 1)
    texture = random_photo_texture(np.random.default_rng(0), photos, 1.0, RIG, 1, extent=np.full(3, 0.15))
    pair = render_pair(scene_of(RIG, wall(RIG, 2.0), sphere(RIG, 12.0, 0.15, Material("diffuse", texture))))
    on_sphere = pair.left.object_index == 1
    assert on_sphere.sum() > 200
    assert pair.left.stokes[0, 0][on_sphere].std() > 0.01
