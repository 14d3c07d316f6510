import pytest
import torch

from polstereo.models.base.refine import CorrPyramid, corr_lookup, corr_pyramid, sample_linear
from polstereo.models.base.upsample import convex_upsample, neighbours_3x3


def test_sample_linear_interpolates_and_zeroes_outside():
    volume = torch.tensor([[0.0, 10.0, 20.0, 30.0]])
    positions = torch.tensor([[0.0, 1.25, 2.5, 3.0, -1.0, 4.0, -0.5]])
    assert sample_linear(volume, positions).tolist() == [[0.0, 12.5, 25.0, 30.0, 0.0, 0.0, 0.0]]


def test_corr_pyramid_averages_pairs_along_candidates():
    corr = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 8, 8)
    pyramid = corr_pyramid(corr, 3)
    assert [p.shape[-1] for p in pyramid] == [8, 4, 2]
    assert pyramid[1][0, 0, 0].tolist() == [0.5, 2.5, 4.5, 6.5]


def test_corr_lookup_centre_sample_is_correlation_at_matched_pixel():
    corr = torch.randn(1, 2, 6, 6)
    disparity = torch.full((1, 1, 2, 6), 2.0)
    samples = corr_lookup([corr], disparity, radius=1)  # (1, 3, 2, 6): offsets -1, 0, +1
    for x in range(2, 6):
        assert samples[0, 1, 1, x] == corr[0, 1, x, x - 2]
        assert samples[0, 2, 1, x] == corr[0, 1, x, x - 1]


def test_corr_lookup_level_coordinates_follow_pooled_bins():
    # candidates hold their own index: level 1 bin j = mean(2j, 2j+1) = 2j + 0.5, so sampling
    # any matched position p on level 1 must give p back (linear function, exact).
    corr = torch.arange(16.0).view(1, 1, 1, 16).expand(1, 1, 16, 16).contiguous()
    disparity = torch.full((1, 1, 1, 16), 3.5)
    samples = corr_lookup(corr_pyramid(corr, 2), disparity, radius=0)  # (1, 2, 1, 16)
    x = torch.arange(16.0)
    inside = slice(5, 15)
    assert torch.allclose(samples[0, 0, 0, inside], (x - 3.5)[inside])
    assert torch.allclose(samples[0, 1, 0, inside], (x - 3.5)[inside])


def test_neighbours_are_row_major_with_replicated_edges():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    nb = neighbours_3x3(x)
    assert nb.shape == (1, 1, 9, 2, 3)
    assert nb[0, 0, :, 0, 0].tolist() == [0, 0, 1, 0, 0, 1, 3, 3, 4]


def test_convex_upsample_keeps_constants_and_picks_neighbours():
    x = torch.full((1, 1, 3, 4), 7.0)
    up = convex_upsample(x, torch.randn(1, 9 * 16, 3, 4), 4)
    assert up.shape == (1, 1, 12, 16)
    assert torch.allclose(up, torch.full_like(up, 7.0))
    # A mask that selects only the centre neighbour is nearest-neighbour upsampling.
    values = torch.randn(1, 1, 3, 4)
    mask = torch.full((1, 9, 4, 4, 3, 4), -1e4)
    mask[:, 4] = 0.0
    up = convex_upsample(values, mask.view(1, 144, 3, 4), 4)
    assert torch.equal(up, values.repeat_interleave(4, -2).repeat_interleave(4, -1))


def test_sample_linear_turns_non_finite_positions_into_nan_not_an_index_error():
    # a diverged network feeds NaN disparities to the lookup; NaN cast to int64 is -2**63
    volume = torch.tensor([[0.0, 10.0, 20.0, 30.0]])
    positions = torch.tensor([[float("nan"), float("inf"), -float("inf"), 1.5]])
    out = sample_linear(volume, positions)
    assert torch.isnan(out[0, :3]).all() and out[0, 3].item() == 15.0


def test_batched_lookup_equals_the_per_level_lookup_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    corr = torch.randn(2, 3, 20, 20, generator=g)
    disparity = torch.rand(2, 1, 3, 20, generator=g) * 24 - 2  # some samples off either end
    disparity[0, 0, 0, 0] = float("nan")
    pyramid = CorrPyramid(corr_pyramid(corr, 3), radius=2)
    one_pass = corr_lookup(pyramid, disparity, 2, batched=True)
    per_level = corr_lookup(pyramid, disparity, 2, batched=False)
    assert one_pass.shape == (2, 15, 3, 20)
    assert torch.equal(one_pass.nan_to_num(-7.0), per_level.nan_to_num(-7.0))
    assert torch.isnan(one_pass[0, :, 0, 0]).all()
    with pytest.raises(ValueError, match="built for radius 2"):
        corr_lookup(pyramid, disparity, 3)
