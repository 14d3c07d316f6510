import pytest
import torch

from polstereo.models.warp import offset_candidates, warp, warp_disagreement, warp_disagreement_candidates


def test_integer_shift_warps_back_exactly():
    left = torch.rand(2, 3, 5, 12)
    right = torch.zeros_like(left)
    right[..., :-4] = left[..., 4:]           # left pixel u sees right pixel u - 4
    warped, valid = warp(right, torch.full((2, 1, 5, 12), 4.0))
    assert torch.equal(warped[..., 4:], left[..., 4:])
    assert valid[..., 4:].all() and not valid[..., :4].any()


def test_fractional_per_row_shift_is_exact_on_a_linear_image():
    h, w = 6, 16
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    shift = (2.25 + 0.5 * v)                   # a different fractional disparity per row

    def image(x):                              # bilinear sampling is exact on linear images
        return (0.1 + 0.03 * x + 0.05 * v).view(1, 1, h, w)

    left = image(u)
    right = image(u + shift)                   # so that right(u - d) = left(u)
    warped, valid = warp(right, shift.view(1, 1, h, w))
    assert torch.allclose(warped[valid], left[valid], atol=1e-12)
    assert torch.equal(valid[0, 0], (u - shift) >= 0)


def test_samples_outside_the_image_are_masked_and_zeroed():
    x = torch.rand(1, 2, 3, 8)
    disparity = torch.tensor([-1.0, 0.0, 7.0, 7.5, 8.0, float("nan"), 2.0, float("inf")]).view(1, 1, 1, 8).expand(1, 1, 3, 8)
    warped, valid = warp(x, disparity)
    # u - d: 1, 1, -5, -4.5, -4, nan, 4, -inf  -> only u=0,1,6 sample inside [0, 7]
    assert valid[0, 0, 0].tolist() == [True, True, False, False, False, False, True, False]
    assert (warped[~valid.expand_as(warped)] == 0).all()
    assert torch.isfinite(warped).all()


def test_warp_is_differentiable_in_image_and_disparity():
    x = torch.rand(1, 1, 3, 7, dtype=torch.float64, requires_grad=True)
    d = torch.full((1, 1, 3, 7), 1.3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, d: warp(x, d)[0], (x, d))


def test_half_precision_images_are_sampled_at_full_precision_positions():
    # bf16 cannot represent every integer beyond 256: coordinates must not inherit it.
    left = torch.rand(1, 1, 2, 600).to(torch.bfloat16)
    right = torch.zeros_like(left)
    right[..., :-3] = left[..., 3:]
    warped, valid = warp(right, torch.full((1, 1, 2, 600), 3.0))
    assert warped.dtype == torch.bfloat16
    # (bf16 positions would land on neighbouring pixels: errors of order 0.5)
    assert torch.allclose(warped[..., 3:].float(), left[..., 3:].float(), atol=1e-3)


@pytest.mark.parametrize("channels", [1, 2, 6])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_one_pass_offsets_equal_one_warp_per_offset_bit_for_bit(dtype, channels):
    # 6 channels: the colour model's polarization features, where a plain sum over the
    # channels adds in a layout-dependent order
    g = torch.Generator().manual_seed(0)
    left, right = (torch.rand(2, channels, 37, 53, generator=g).to(dtype) for _ in range(2))
    disparity = torch.rand(2, 1, 37, 53, generator=g) * 12 - 1  # some warps leave the image
    disparity[0, 0, 0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    offsets = (-4.0, -1.5, 0.0, 2.0, 4.0)
    candidates = offset_candidates(disparity, offsets)
    cost, valid = warp_disagreement_candidates(left, right, candidates, batched=True)
    singles = [warp_disagreement(left, right, disparity + k) for k in offsets]
    assert cost.shape == valid.shape == (2, 5, 37, 53) and cost.dtype == dtype
    assert torch.equal(valid, torch.cat([v for _, v in singles], 1))
    assert torch.equal(cost, torch.cat([c for c, _ in singles], 1))
    assert not valid[0, :, 0, :3].any()
    loop, loop_valid = warp_disagreement_candidates(left, right, candidates, batched=False)
    assert torch.equal(loop, cost) and torch.equal(loop_valid, valid)
