import dataclasses

import numpy as np
import pytest
import torch

from polstereo.data.h5 import H5Reader, Sample, write_samples
from polstereo.errors import PolstereoError
from polstereo.evaluation.shape_evidence import (ShapeEvidenceConfig, accumulate, dataset_shape_evidence, erode,
                                                 reference_candidates, shape_evidence_counts, shape_regions,
                                                 summarize, table_header, table_rows)
from polstereo.polar.stokes import angles_from_stokes

ANGLES = (0.0, 45.0, 90.0, 135.0)
H, W = 64, 80
CY, CX, RADIUS = 31.5, 39.5, 26.0


def sphere_sample(seed: int = 0) -> Sample:
    """A glass sphere (d = k / Z) whose AoLP is the radial azimuth (y up), DoLP 0.3, in front
    of a tilted opaque wall whose AoLP is random."""
    y, x = np.mgrid[:H, :W].astype(np.float64)
    rho2 = (x - CX) ** 2 + (y - CY) ** 2
    inside = rho2 < RADIUS ** 2
    depth = 100.0 - np.sqrt(np.clip(RADIUS ** 2 - rho2, 0, None))
    disparity = np.where(inside, 1000.0 / depth, 6.0 + 0.05 * x + 0.03 * y)
    aolp = np.where(inside, np.arctan2(-(y - CY), x - CX), np.random.default_rng(seed).uniform(0, np.pi, (H, W)))
    s0 = np.full((H, W), 0.5)
    stokes = np.stack([s0, 0.3 * s0 * np.cos(2 * aolp), 0.3 * s0 * np.sin(2 * aolp)])
    left = angles_from_stokes(stokes, ANGLES, axis=0)[:, None].astype(np.float32)
    return Sample(left=left, right=left.copy(), disparity=disparity.astype(np.float32), transparent=inside)


def judge(sample: Sample, base=None, config=ShapeEvidenceConfig()) -> dict:
    as_t = lambda a: torch.from_numpy(np.asarray(a))[None, None]  # noqa: E731
    gt = as_t(sample.disparity)
    candidates = reference_candidates(gt, config)
    if base is not None:
        candidates["base"] = base
    totals = {}
    regions = shape_regions(torch.isfinite(gt), as_t(sample.transparent))
    accumulate(totals, shape_evidence_counts(torch.from_numpy(sample.left)[None], gt, regions, candidates, ANGLES,
                                             config))
    return summarize(totals, config)


def test_true_shape_agrees_with_the_aolp_and_a_flat_map_does_not():
    glass = judge(sphere_sample())["transparent"]
    assert glass["pixels"] > 1000
    assert glass["cost"]["gt"] < 0.02
    assert glass["cost"]["flat"] == pytest.approx(0.5)
    assert glass["cost"]["perturbed"] > glass["cost"]["gt"] + 0.1


def test_unrelated_aolp_costs_one_half_on_average():
    wall = judge(sphere_sample())["opaque"]
    assert wall["pixels"] > 1000 and 0.45 < wall["cost"]["gt"] < 0.55


def test_true_shape_beats_a_flat_base_that_is_off_everywhere():
    sample = sphere_sample()
    base = torch.full((1, 1, H, W), 5.0)  # the sphere's disparity is >= 10 px
    result = judge(sample, base=base)
    glass = result["transparent"]
    assert glass["compared_pixels"]["base"] == glass["pixels"]
    assert glass["gt_better_than"]["base"] == 1.0
    assert result["candidates"] == ["gt", "flat", "perturbed", "base"]


def test_a_base_within_min_error_is_not_compared():
    sample = sphere_sample()
    base = torch.from_numpy(sample.disparity)[None, None] + 0.5
    glass = judge(sample, base=base)["transparent"]
    assert glass["compared_pixels"]["base"] == 0 and glass["gt_better_than"]["base"] is None


def test_weak_polarization_and_flat_ground_truth_are_not_judged():
    sample = sphere_sample()
    sample.left[:] = sample.left.mean(axis=0, keepdims=True)  # unpolarized: DoLP 0
    assert judge(sample)["transparent"]["pixels"] == 0
    flat = sphere_sample()
    flat.disparity[:] = 7.0
    assert judge(flat)["transparent"]["pixels"] == 0


def test_pixels_near_unknown_ground_truth_are_not_judged():
    sample = sphere_sample()
    full = judge(sample)["transparent"]["pixels"]
    sample.disparity[int(CY), :] = np.nan  # a row through the sphere
    holed = judge(sample)["transparent"]
    assert full - 7 * 2 * RADIUS < holed["pixels"] < full - 5 * 2 * (RADIUS - 6)
    assert holed["cost"]["gt"] < 0.02


def test_erode_keeps_pixels_whose_whole_window_is_inside():
    mask = torch.zeros(1, 1, 9, 9, dtype=torch.bool)
    mask[..., 1:8, 1:8] = True
    assert erode(mask, 5).sum() == 9 and erode(mask, 5)[..., 3:6, 3:6].all()
    assert erode(torch.ones(1, 1, 4, 4, dtype=torch.bool), 5).all()  # outside the image counts as inside


def test_perturbation_is_smooth_seeded_and_of_the_requested_size():
    gt = torch.full((1, 1, 64, 64), 10.0)
    config = ShapeEvidenceConfig(perturb_px=2.0)
    a, b = reference_candidates(gt, config, index=3), reference_candidates(gt, config, index=3)
    offset = a["perturbed"] - gt
    assert torch.equal(a["perturbed"], b["perturbed"])
    assert offset.pow(2).mean().sqrt().item() == pytest.approx(2.0, rel=1e-4)
    assert (offset[..., 1:] - offset[..., :-1]).abs().max() < 1.0  # smooth: no pixel-to-pixel jumps
    assert not torch.equal(a["perturbed"], reference_candidates(gt, config, index=4)["perturbed"])


def test_even_erosion_is_refused():
    with pytest.raises(PolstereoError, match="odd"):
        ShapeEvidenceConfig(erode=4).validated()


def test_table_lists_costs_and_pairwise_shares():
    result = judge(sphere_sample(), base=torch.full((1, 1, H, W), 5.0))
    header = table_header(result)
    assert header.split()[2:] == ["gt", "flat", "perturbed", "base", "gt<perturbed", "gt<base"]
    rows = dict(table_rows(result))
    assert set(rows) == {"transparent", "opaque"}
    assert rows["transparent"].split()[-1] == "1.000"


@pytest.fixture(scope="module")
def generated_glass(tmp_path_factory):
    from polstereo.data.synthetic.config import SyntheticConfig
    from polstereo.data.synthetic.generate import generate_sample, sample_rng

    config = SyntheticConfig(width=96, height=64, transparent=(2, 3), glass=("solid",), seed=5)  # curved glass
    path = tmp_path_factory.mktemp("glass") / "glass.h5"
    write_samples(path, [generate_sample(config, sample_rng(5, i), name=f"g{i}") for i in range(3)])
    return path


def test_generated_glass_agrees_better_with_its_true_shape_than_with_none(generated_glass):
    result = dataset_shape_evidence(H5Reader(generated_glass))
    glass = result["transparent"]
    assert glass["pixels"] > 100
    assert glass["cost"]["gt"] < glass["cost"]["flat"] - 0.1
    assert glass["cost"]["flat"] == pytest.approx(0.5)
    assert result["min_dolp"] == 0.01 and result["erode"] == 5


def test_max_samples_limits_the_samples_read(generated_glass):
    one = dataset_shape_evidence(H5Reader(generated_glass), max_samples=1)
    three = dataset_shape_evidence(H5Reader(generated_glass))
    assert 0 < one["transparent"]["pixels"] < three["transparent"]["pixels"]


def test_settings_travel_with_the_result():
    config = dataclasses.replace(ShapeEvidenceConfig(), min_dolp=0.05, perturb_px=3.0)
    result = judge(sphere_sample(), config=config)
    assert result["min_dolp"] == 0.05 and result["perturb_px"] == 3.0
