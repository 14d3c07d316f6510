import numpy as np
import pytest
import torch

from polstereo.data.h5 import Sample, write_samples
from polstereo.data.loader import (AugmentConfig, MixtureDataset, MixturePlan, PlanSampler, StereoCropDataset,
                                   to_device)
from polstereo.errors import PolstereoError
from polstereo.polar.stokes import angles_from_stokes


def physical_stack(rng, h, w):
    """Angle images of partially polarized light: I0 + I90 == I45 + I135 holds."""
    s0 = rng.uniform(0.2, 0.8, (h, w))
    dolp, aolp = rng.uniform(0, 0.5, (h, w)), rng.uniform(0, np.pi, (h, w))
    stokes = np.stack([s0, s0 * dolp * np.cos(2 * aolp), s0 * dolp * np.sin(2 * aolp)])
    return angles_from_stokes(stokes).astype(np.float32)[:, None]  # (4, 1, H, W)


@pytest.fixture
def plane_file(tmp_path, rng):
    h, w = 40, 64
    disp = np.full((h, w), 5.0, np.float32)
    disp[:, :4] = np.nan
    transparent = np.zeros((h, w), bool)
    transparent[10:20, 20:40] = True
    sample = Sample(left=physical_stack(rng, h, w), right=physical_stack(rng, h, w), disparity=disp,
                    transparent=transparent)
    path = tmp_path / "plane.h5"
    write_samples(path, [sample, sample])
    return path


def finished(item):
    """One item as the trainer sees it: on the device, scaled to [0, 1], augmented."""
    batch = to_device({k: v[None] for k, v in item.items()}, "cpu")
    return {k: v[0] for k, v in batch.items()}


def no_photometric(**kw):
    return AugmentConfig(gain_range=(1, 1), offset_range=(0, 0), asymmetric_prob=0, **kw)


def test_crop_without_augmentation_is_the_stored_window(plane_file):
    ds = StereoCropDataset(plane_file, no_photometric(crop_size=(16, 24)), seed=3)
    item = ds[(1, 7, 2)]
    assert item["left"].shape == (4, 1, 16, 24) and item["disparity"].shape == (1, 16, 24)
    full = ds.reader.read(1)
    window = full.left[0, 0]
    # find the crop's offset in the full image: it must match one window exactly
    crop = item["left"][0, 0].numpy()
    hits = [(y, x) for y in range(40 - 16 + 1) for x in range(64 - 24 + 1)
            if np.array_equal(window[y:y + 16, x:x + 24], crop)]
    assert len(hits) == 1
    y, x = hits[0]
    np.testing.assert_array_equal(item["right"].numpy(), full.right[:, :, y:y + 16, x:x + 24])


def test_items_are_deterministic_in_seed_step_and_slot(plane_file):
    ds = StereoCropDataset(plane_file, AugmentConfig(crop_size=(16, 24), scale_range=(0.7, 1.4)), seed=3)
    a, b, c = ds[(0, 5, 1)], ds[(0, 5, 1)], ds[(0, 5, 2)]
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert not np.array_equal(a["left"].numpy(), c["left"].numpy())


def test_photometric_augmentation_keeps_stokes_relations(plane_file):
    ds = StereoCropDataset(plane_file, AugmentConfig(crop_size=(16, 24), gain_range=(0.5, 1.5),
                                                     offset_range=(-0.1, 0.1), asymmetric_prob=1.0), seed=0)
    for step in range(5):
        item = finished(ds[(0, step, 0)])
        for view in ("left", "right"):
            i0, i45, i90, i135 = item[view][:, 0].double().numpy()
            np.testing.assert_allclose(i0 + i90, i45 + i135, atol=1e-5)


def test_scaling_scales_disparity(plane_file):
    ds = StereoCropDataset(plane_file, no_photometric(crop_size=(20, 30), scale_range=(1.5, 1.5)), seed=0)
    item = ds[(0, 0, 0)]
    d = item["disparity"][item["valid"]]
    assert item["left"].shape[-2:] == (20, 30)
    np.testing.assert_allclose(d.numpy(), 5.0 * 30 / 20, rtol=1e-6)  # region 13x20 -> 20x30


def test_vertical_flip_mirrors_angles(plane_file):
    flipped = StereoCropDataset(plane_file, no_photometric(crop_size=None, vflip_prob=1.0))[0]
    plain = StereoCropDataset(plane_file, no_photometric(crop_size=None))[0]
    # 0 and 90 stay, 45 and 135 swap, rows reversed
    for k, src in enumerate((0, 3, 2, 1)):
        np.testing.assert_array_equal(flipped["left"][k].numpy(), plain["left"][src].numpy()[:, ::-1])
    np.testing.assert_array_equal(flipped["transparent"].numpy(), plain["transparent"].numpy()[:, ::-1])


def test_invalid_and_too_large_disparities_are_masked(plane_file):
    item = StereoCropDataset(plane_file, no_photometric(crop_size=None, max_disparity=4.0))[0]
    assert not item["valid"].any()  # every disparity is 5 > 4 or NaN
    item = StereoCropDataset(plane_file, no_photometric(crop_size=None))[0]
    assert not item["valid"][0, :, :4].any() and item["valid"][0, :, 4:].all()
    assert (item["disparity"][0, :, :4] == 0).all()


def test_images_smaller_than_the_crop_are_padded_invalid(plane_file):
    item = StereoCropDataset(plane_file, no_photometric(crop_size=(48, 64)))[0]
    assert item["left"].shape[-2:] == (48, 64)
    assert not item["valid"][0, 40:].any()
    # `inside` tells image from padding (the MIM and pseudo-label losses use it)
    h, w = StereoCropDataset(plane_file, no_photometric(crop_size=None))[0]["left"].shape[-2:]
    inside = item["inside"][0]
    assert inside[:h, :w].all() and not inside[h:].any() and not inside[:, w:].any()
    assert StereoCropDataset(plane_file, no_photometric(crop_size=(16, 16)))[0]["inside"].all()


def test_sequential_plan_follows_dataset_steps():
    plan = MixturePlan([3, 5], [2, 3], global_batch=4, seed=0)
    assert [plan.batch(t)[0][0] for t in range(5)] == [0, 0, 1, 1, 1]


def test_shuffled_plan_keeps_proportions_and_covers_samples():
    plan = MixturePlan([3, 5], [20, 60], global_batch=2, seed=0, order="shuffle")
    datasets = [plan.batch(t)[0][0] for t in range(plan.total_steps)]
    assert datasets.count(0) == 20 and datasets.count(1) == 60 and datasets != sorted(datasets)
    drawn = [i for t in range(plan.total_steps) for d, i in plan.batch(t) if d == 1]
    assert sorted(set(drawn)) == list(range(5))
    assert max(drawn.count(i) for i in range(5)) - min(drawn.count(i) for i in range(5)) <= 1  # epochs


def test_ranks_split_the_global_batch_and_resume_continues_the_sequence():
    plan = MixturePlan([7], [6], global_batch=4, seed=1)
    full = list(PlanSampler(plan))
    ranks = [list(PlanSampler(plan, rank=r, world_size=2)) for r in range(2)]
    merged = [k for t in range(6) for r in range(2) for k in ranks[r][t * 2:(t + 1) * 2]]
    assert merged == full
    assert list(PlanSampler(plan, start_step=4)) == full[16:]


def test_mismatched_dataset_steps_is_an_error():
    with pytest.raises(PolstereoError, match="--dataset-steps"):
        MixturePlan([3, 4], [10], global_batch=1)


def test_mixture_dataset_routes_keys(plane_file, tmp_path, rng):
    other = tmp_path / "other.h5"
    s = Sample(left=physical_stack(rng, 40, 64), right=physical_stack(rng, 40, 64),
               disparity=np.full((40, 64), 9.0, np.float32))
    write_samples(other, [s])
    mix = MixtureDataset([StereoCropDataset(p, no_photometric(crop_size=None)) for p in (plane_file, other)])
    assert mix[(1, 0, 0, 0)]["disparity"].max() == 9.0
    assert mix[(0, 0, 0, 0)]["disparity"].max() == 5.0


def test_integer_images_cross_the_process_boundary_and_scale_on_the_device(tmp_path, rng):
    from tests.conftest import make_sample

    sample = make_sample(rng, dtype=np.uint16, h=24, w=40)
    sample.white_level = 4095.0
    sample.left, sample.right = sample.left % 4096, sample.right % 4096
    write_samples(tmp_path / "u16.h5", [sample])
    aug = AugmentConfig(crop_size=None, gain_range=(2.0, 2.0), offset_range=(0.1, 0.1), asymmetric_prob=0)
    item = StereoCropDataset(tmp_path / "u16.h5", aug)[0]
    assert item["left"].dtype == torch.int32
    np.testing.assert_allclose(item["photometric"].numpy(), [4095.0, 2.0, 0.1, 2.0, 0.1], rtol=1e-6)
    out = finished(item)
    np.testing.assert_allclose(out["left"].numpy(), sample.left / 4095.0 * 2.0 + 0.1, rtol=1e-5, atol=1e-6)
