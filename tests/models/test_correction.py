import pytest
import torch

from polstereo.errors import PolstereoError
from polstereo.models.correction import (CorrectionConfig, CorrectionModule, bounded_correction,
                                         saturation_fraction, search_costs)


def inputs(c=1, h=37, w=53):
    return (torch.randn(2, 2 * c, h, w), torch.randn(2, 2 * c, h, w), torch.rand(2, 1, h, w),
            torch.rand(2, 1, h, w) > 0.2)


def test_bounded_correction_never_exceeds_max_correction():
    raw = torch.randn(1000) * 1e6
    correction = bounded_correction(raw, 4.0)
    assert correction.abs().max() <= 4.0
    assert torch.allclose(bounded_correction(torch.tensor([0.0, 100.0]), 4.0), torch.tensor([0.0, 4.0]))


def test_saturation_fraction_counts_pixels_beyond_threshold():
    raw = torch.tensor([0.0, 10.0, -10.0, 0.1]).view(1, 1, 2, 2)
    assert saturation_fraction(raw).item() == 0.5
    assert saturation_fraction(raw, threshold=0.05).item() == 0.75
    mask = torch.tensor([True, True, False, False]).view(1, 1, 2, 2)
    assert saturation_fraction(raw, mask=mask).item() == 0.5
    assert saturation_fraction(raw, mask=torch.zeros_like(mask)).item() == 0.0


def test_module_output_shape_on_odd_size_and_starts_near_zero():
    module = CorrectionModule(CorrectionConfig(width=8, dilations=(1, 2)))
    raw = module(*inputs())
    assert raw.shape == (2, 1, 37, 53)
    assert saturation_fraction(raw).item() == 0.0


def test_rgb_module_takes_six_channel_features():
    module = CorrectionModule(CorrectionConfig(color_channels=3, width=8, dilations=(1,)))
    assert module(*inputs(c=3, h=16, w=16)).shape == (2, 1, 16, 16)
    with pytest.raises(PolstereoError, match="input channels"):
        module(*inputs(c=1, h=16, w=16))


def test_config_round_trips_and_rejects_unknown_options():
    config = CorrectionConfig(width=16, dilations=(1, 3), norm="batch", saturation_threshold=0.95)
    assert CorrectionConfig.from_dict(config.to_dict()) == config
    with pytest.raises(PolstereoError, match="unknown correction module option"):
        CorrectionConfig.from_dict({"depth": 3})
    with pytest.raises(PolstereoError, match="color_channels"):
        CorrectionConfig(color_channels=2)


def test_search_offsets_and_channels():
    assert CorrectionConfig().search_offsets == () and CorrectionConfig().in_channels == 6
    cfg = CorrectionConfig(search_radius=10, search_step=2)
    assert cfg.search_offsets == tuple(float(k) for k in range(-10, 11, 2))
    assert cfg.in_channels == 6 + 2 * 11
    assert CorrectionConfig(search_radius=3, search_step=2).search_offsets == (-2.0, 0.0, 2.0)
    assert CorrectionConfig.from_dict({"color_channels": 1}).search_radius == 0  # configs saved before the option
    with pytest.raises(PolstereoError, match="search_radius"):
        CorrectionConfig(search_radius=-1)


def test_search_costs_vanish_at_the_true_offset():
    torch.manual_seed(0)
    h, w, shift = 8, 40, 3
    wide = torch.rand(1, 2, h, w + shift)
    left, right = wide[..., :w], wide[..., shift:]  # right(x) = left(x + 3): true disparity 3
    wide_i = torch.rand(1, 1, h, w + shift)
    costs = search_costs(left, right, wide_i[..., :w], wide_i[..., shift:], torch.full((1, 1, h, w), 1.0),
                         offsets=(0.0, 2.0, 4.0))
    assert costs.shape == (1, 6, h, w)
    inside = (slice(None), slice(None), slice(None), slice(shift, None))
    assert costs[:, 1][inside[1:]].abs().max() < 1e-5 and costs[:, 4][inside[1:]].abs().max() < 1e-5
    assert costs[:, 0][inside[1:]].mean() > 0.1 and costs[:, 2][inside[1:]].mean() > 0.1
    assert (costs[..., :1] == 1).all()  # the warp leaves the image at x = 0 for d >= 1: cost 1
    # a candidate disparity below zero is no disparity at all: cost 1 everywhere
    below = search_costs(left, right, wide_i[..., :w], wide_i[..., shift:], torch.full((1, 1, h, w), 1.0),
                         offsets=(-3.0,))
    assert (below == 1).all()


@pytest.mark.parametrize("colors", [1, 3])
def test_batched_search_costs_equal_the_per_offset_loop_bit_for_bit(colors):
    g = torch.Generator().manual_seed(3)
    h, w = 37, 53
    pol_l, pol_r = (torch.rand(2, 2 * colors, h, w, generator=g) for _ in range(2))
    int_l, int_r = (torch.rand(2, colors, h, w, generator=g) for _ in range(2))
    disparity = torch.rand(2, 1, h, w, generator=g) * 8  # some candidates below 0 or off-image
    offsets = CorrectionConfig(search_radius=4, search_step=2).search_offsets
    loop = search_costs(pol_l, pol_r, int_l, int_r, disparity, offsets, batched=False)
    one_pass = search_costs(pol_l, pol_r, int_l, int_r, disparity, offsets, batched=True)
    assert torch.equal(loop, one_pass) and (loop == 1).any() and (loop < 1).any()


def test_module_takes_the_search_cost_volume():
    cfg = CorrectionConfig(search_radius=4, search_step=2)
    module = CorrectionModule(cfg)
    pol_diff, pol_left, disp, valid = inputs()
    cost = torch.rand(2, 2 * len(cfg.search_offsets), 37, 53)
    assert module(pol_diff, pol_left, disp, valid, cost).shape == (2, 1, 37, 53)
    with pytest.raises(PolstereoError, match="search offsets"):
        module(pol_diff, pol_left, disp, valid)  # the volume is part of the input


def test_dilated_context_keeps_odd_sizes():
    module = CorrectionModule(CorrectionConfig(width=8, dilations=(1,)))
    assert module(*inputs(h=37, w=53)).shape == (2, 1, 37, 53)
    assert module(*inputs(h=5, w=7)).shape == (2, 1, 5, 7)


def test_a_saved_config_with_a_removed_switch_at_its_old_default_reads_as_before():
    # what the shipped checkpoints store: context_stride 2 (all), integrate False (tiny-cpu)
    saved = {**CorrectionConfig(width=16).to_dict(), "context_stride": 2, "integrate": False}
    assert CorrectionConfig.from_dict(saved) == CorrectionConfig(width=16)


@pytest.mark.parametrize("name, value, flag", [("context_stride", 4, "--correction-context-stride"),
                                               ("integrate", True, "--correction-integrate")])
def test_a_saved_config_that_used_a_removed_lever_is_refused_naming_it_and_the_commit_that_has_it(name, value, flag):
    with pytest.raises(PolstereoError, match=f"{name}={value}: {flag}, removed as a lever") as err:
        CorrectionConfig.from_dict({"color_channels": 1, name: value})
    assert "commit 2b20068 still has it" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("size", [(37, 53), (5, 7)])
def test_unet_context_keeps_odd_sizes_and_starts_near_zero(size):
    module = CorrectionModule(CorrectionConfig(context="unet", width=8))
    raw = module(*inputs(h=size[0], w=size[1]))
    assert raw.shape == (2, 1, *size)
    assert saturation_fraction(raw).item() == 0.0


def test_unet_context_sees_a_whole_object():
    # a change at one corner reaches the opposite corner of a 64x64 image (dilated 1/2 context:
    # no); without normalization layers, whose image-wide statistics would connect everything
    torch.manual_seed(0)
    reach = {}
    for context in ("dilated", "unet"):
        module = CorrectionModule(CorrectionConfig(context=context, width=8, dilations=(1, 2), norm="none")).eval()
        x = inputs(h=64, w=64)
        pol_diff = x[0].clone().requires_grad_()
        module(pol_diff, *x[1:])[0, 0, -1, -1].backward()
        reach[context] = bool(pol_diff.grad[0, :, :4, :4].abs().sum() > 0)
    assert reach == {"dilated": False, "unet": True}


def test_shape_features_add_nine_channels_and_are_required():
    from polstereo.polar.shape import SHAPE_FEATURE_NAMES

    cfg = CorrectionConfig(shape_features=True, width=8, dilations=(1,))
    assert cfg.in_channels == CorrectionConfig(width=8).in_channels + len(SHAPE_FEATURE_NAMES) == 15
    module = CorrectionModule(cfg)
    shape = torch.rand(2, len(SHAPE_FEATURE_NAMES), 16, 16)
    assert module(*inputs(h=16, w=16), None, shape).shape == (2, 1, 16, 16)
    with pytest.raises(PolstereoError, match="shape features on"):
        module(*inputs(h=16, w=16))
    assert CorrectionConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(PolstereoError, match="unknown correction context"):
        CorrectionConfig(context="pyramid")
