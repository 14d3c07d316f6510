import pytest
import torch

from polstereo.errors import PolstereoError
from polstereo.models import build_model
from polstereo.polar.features import intensity_image

MAX_CORRECTION = 3.0


@pytest.fixture
def model():
    return build_model({"base": "tiny", "correction": {"width": 8, "dilations": [1, 2]},
                        "max_correction": MAX_CORRECTION})


def force_raw(model, monkeypatch, raw_fn):
    """Make the correction module output ``raw_fn(shape)`` whatever its input."""
    monkeypatch.setattr(model.correction, "forward",
                        lambda pol_diff, *rest: raw_fn(pol_diff[:, :1].shape))


def test_outputs_on_odd_size(model, stacks):
    left, right = stacks(b=2, h=37, w=53)
    out = model(left, right)
    for key in ("disparity", "base_disparity", "correction", "raw", "confidence", "warp_valid"):
        assert out[key].shape == (2, 1, 37, 53), key
    assert out["pol_diff"].shape == (2, 2, 37, 53)
    assert out["saturation_fraction"].dim() == 0
    assert (out["disparity"] >= 0).all()


def test_final_is_base_plus_bounded_correction(model, stacks):
    out = model(*stacks())
    expected = (out["base_disparity"] + MAX_CORRECTION * torch.tanh(out["raw"])).clamp_min(0)
    assert torch.allclose(out["disparity"], expected)


@pytest.mark.parametrize("bound", [float("inf"), float("nan"), 0.0, -1.0])
def test_the_model_checks_its_bound_when_built_and_when_set(model, bound):
    with pytest.raises(PolstereoError, match="--max-correction must be a positive number"):
        build_model({"base": "tiny", "max_correction": bound})
    with pytest.raises(PolstereoError, match="--max-correction must be a positive number"):
        model.max_correction = bound
    assert model.max_correction == MAX_CORRECTION
    model.max_correction = 5
    assert model.max_correction == 5.0 and isinstance(model.max_correction, float)


def test_max_correction_bounds_final_minus_base_for_huge_raw(model, stacks, monkeypatch):
    force_raw(model, monkeypatch, lambda shape: torch.randn(shape) * 1e6)
    left, right = stacks()
    out = model(left * 50, right, warp_source="pred")
    assert (out["disparity"] - out["base_disparity"]).abs().max() <= MAX_CORRECTION + 1e-5


def test_saturation_fraction_of_forced_raw(model, stacks, monkeypatch):
    def half_saturated(shape):
        raw = torch.zeros(shape)
        raw[..., : shape[-1] // 2] = 100.0
        return raw
    force_raw(model, monkeypatch, half_saturated)
    out = model(*stacks())           # width 56: 28 saturated columns
    assert out["saturation_fraction"].item() == 0.5


def test_base_sees_the_unpolarized_intensity(model, stacks):
    left, right = stacks()
    out = model(left, right)
    direct = model.forward_intensity(intensity_image(left), intensity_image(right))
    assert torch.equal(out["base_disparity"], direct["disparity"])


def test_learn_pol_gradients_reach_correction_not_frozen_base(model, stacks):
    model.freeze_base()
    model.train()
    left, right = stacks()
    gt = torch.full((1, 1, 40, 56), 5.0)
    out = model(left, right, gt_disparity=gt, warp_source="gt")
    out["disparity"].mean().backward()
    assert all(p.grad is None for p in model.base.parameters())
    grads = [p.grad for p in model.correction.parameters()]
    assert all(g is not None for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)


def test_unfrozen_model_sends_gradients_to_both_parts(model, stacks):
    model.train()
    out = model(*stacks())
    out["disparity"].mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.base.parameters())
    assert all(p.grad is not None for p in model.correction.parameters())


def test_frozen_base_stays_in_eval_mode_after_train(stacks):
    model = build_model({"base": {"name": "tiny", "config": {"norm": "batch"}}, "correction": True})
    model.freeze_base()
    model.train()
    assert not any(m.training for m in model.base.modules())
    assert all(m.training for m in model.correction.modules())
    assert all(not p.requires_grad for p in model.base.parameters())
    # Batch statistics of the frozen base must not move.
    stats = [b.running_mean.clone() for b in model.base.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    model(*stacks())
    after = [b.running_mean for b in model.base.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    assert stats and all(torch.equal(a, b) for a, b in zip(stats, after))
    model.unfreeze_base()
    assert model.base.training and all(p.requires_grad for p in model.base.parameters())


def test_frozen_correction_stays_in_eval_mode_after_train(model):
    model.freeze_correction()
    model.train()
    assert model.is_frozen("correction") and not model.correction.training
    assert model.base.training


def test_all_non_finite_gt_warps_like_the_prediction(model, stacks):
    model.eval()
    left, right = stacks()
    gt = torch.full((1, 40, 56), float("nan"))
    with torch.no_grad():
        from_gt = model(left, right, gt_disparity=gt, warp_source="gt")
        from_pred = model(left, right, warp_source="pred")
    assert torch.equal(from_gt["pol_diff"], from_pred["pol_diff"])
    assert torch.equal(from_gt["disparity"], from_pred["disparity"])


def test_gt_warp_uses_the_ground_truth_where_finite(model, stacks):
    model.eval()
    left, right = stacks()
    gt = torch.full((1, 1, 40, 56), 50.0)   # beyond the left edge for every u < 50
    gt[..., :, 52:] = float("inf")
    with torch.no_grad():
        out = model(left, right, gt_disparity=gt, warp_source="gt")
    assert not out["warp_valid"][..., :50].any()
    assert (out["pol_diff"][..., :50] == 0).all()


def test_detach_warp_controls_gradient_through_the_warp(model, stacks):
    model.freeze_correction()
    left, right = stacks()
    grads = []
    for detach in (True, False):
        model.zero_grad()
        out = model(left, right, warp_source="pred", detach_warp=detach)
        out["correction"].sum().backward()
        grads.append(model.base.update.delta_head[-1].bias.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def test_gt_warp_needs_ground_truth_of_matching_shape(model, stacks):
    left, right = stacks()
    with pytest.raises(PolstereoError, match="needs gt_disparity"):
        model(left, right, warp_source="gt")
    with pytest.raises(PolstereoError, match="gt_disparity has shape"):
        model(left, right, warp_source="gt", gt_disparity=torch.zeros(1, 1, 20, 28))
    with pytest.raises(PolstereoError, match="unknown warp_source"):
        model(left, right, warp_source="truth")


def test_rejects_stacks_that_do_not_match_the_angles(model, stacks):
    left, right = stacks(a=3)
    with pytest.raises(PolstereoError, match="3 images but 4 polarizer angles"):
        model(left, right)
    assert model(left, right, angles_deg=(0, 60, 120))["disparity"].shape == (1, 1, 40, 56)


def test_base_only_model_passes_the_base_disparity_through(stacks):
    model = build_model({"base": "tiny"})
    out = model(*stacks())
    assert torch.equal(out["disparity"], out["base_disparity"])
    assert out["correction"] is None and out["raw"] is None and out["saturation_fraction"] is None


def test_disparities_stay_float32_under_bf16_autocast(model, stacks):
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*stacks(), iters=2)
    assert out["disparity"].dtype == out["base_disparity"].dtype == torch.float32
    assert torch.isfinite(out["disparity"]).all()


def test_search_cost_volume_model_round_trips_and_keeps_ground_truth_out(stacks, tmp_path):
    from polstereo.models.files import load_model, save_model

    torch.manual_seed(0)
    model = build_model({"base": "tiny", "correction": {"width": 8, "dilations": [1], "search_radius": 4},
                         "max_correction": MAX_CORRECTION}).eval()
    left, right = stacks(b=1, h=37, w=53)
    with torch.no_grad():
        out = model(left, right)
        path = save_model(tmp_path / "m.ckpt", model)
        again, _ = load_model(path)
        assert again.correction.config.search_offsets == (-4.0, -2.0, 0.0, 2.0, 4.0)
        assert torch.equal(again.eval()(left, right)["disparity"], out["disparity"])
        # the cost volume is centred on the base prediction: with the gt warp, only pol_diff
        # changes, so two different ground truths give the same input volume
        seen = []
        original = model.correction.forward
        model.correction.forward = lambda *a: (seen.append(a[4]), original(*a))[1]
        for value in (1.0, 7.0):
            model(left, right, gt_disparity=torch.full((1, 1, 37, 53), value), warp_source="gt")
        assert seen[0].shape == (1, 10, 37, 53) and torch.equal(seen[0], seen[1])


@pytest.mark.parametrize("one_pass", [True, False], ids=["one-pass", "loop"])
@pytest.mark.parametrize("correction", [{"width": 8, "dilations": [1]}, {"width": 8, "dilations": [1], "search_radius": 4},
                                        {"width": 8, "context": "unet", "shape_features": True}],
                         ids=["plain", "search", "unet-shape"])
def test_forward_is_one_graph_for_torch_compile(stacks, correction, one_pass):
    # no graph breaks: no host syncs or data-dependent Python in the forward, so
    # torch.compile (and CUDA graphs with mode="reduce-overhead") see all of it, in the
    # one-pass forms CUDA runs as in the CPU's loops
    from polstereo.models.forms import prefer_one_pass

    torch._dynamo.reset()
    model = build_model({"base": "tiny", "correction": correction, "max_correction": MAX_CORRECTION}).eval()
    left, right = stacks(b=1, h=37, w=53)
    with torch.no_grad(), prefer_one_pass(one_pass):
        explanation = torch._dynamo.explain(model)(left, right)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


@pytest.mark.parametrize("colors", [1, 3])
def test_one_pass_and_loop_forms_give_the_same_model_outputs_and_gradients(stacks, colors):
    # CUDA runs the one-pass forms, CPUs the loops (polstereo.models.forms): the same outputs
    # bit for bit, the same gradients to rounding (the backward scatters in another order)
    from polstereo.models.forms import one_pass, prefer_one_pass

    torch.manual_seed(0)
    model = build_model({"base": "tiny", "correction": {"width": 8, "dilations": [1], "search_radius": 4,
                                                        "color_channels": colors}})
    left, right = stacks(b=2, h=37, w=53, c=colors)
    results = []
    for form in (True, False):
        model.zero_grad()
        with prefer_one_pass(form):
            assert one_pass(left) is form and one_pass(left, requested=not form) is (not form)
            out = model(left, right, iters=2)
        (out["disparity"].mean() + sum(d.mean() for d in out["disparities"])).backward()
        results.append((out["disparity"].detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    assert one_pass(left) is False  # the override ends with the block; CPU tensors loop
    (d1, g1), (d2, g2) = results
    assert torch.equal(d1, d2) and len(g1) == len(g2) > 0
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(g1, g2))


def test_shape_features_come_from_the_base_estimate_not_the_ground_truth(stacks):
    torch.manual_seed(0)
    model = build_model({"base": "tiny", "correction": {"width": 8, "context": "unet", "shape_features": True},
                         "max_correction": MAX_CORRECTION}).eval()
    left, right = stacks(b=1, h=37, w=53)
    seen = []
    original = model.correction.forward
    model.correction.forward = lambda *a: (seen.append(a[5]), original(*a))[1]
    with torch.no_grad():
        out = model(left, right)
        for value in (1.0, 7.0):
            model(left, right, gt_disparity=torch.full((1, 1, 37, 53), value), warp_source="gt")
    assert out["disparity"].shape == (1, 1, 37, 53)
    assert seen[0].shape == (1, 9, 37, 53) and torch.equal(seen[1], seen[2]) and torch.equal(seen[0], seen[1])


def test_early_fusion_base_image_carries_intensity_and_normalized_stokes():
    from polstereo.models.full import FUSION_GAIN, base_image
    from polstereo.polar.stokes import DEFAULT_ANGLES_DEG, angles_from_stokes

    stokes = torch.tensor([0.8, 0.08, -0.04]).reshape(1, 3, 1, 1, 1).expand(1, 3, 1, 2, 3)
    stack = angles_from_stokes(stokes, axis=1)
    image = base_image(stack, DEFAULT_ANGLES_DEG, "polarization")
    expected = torch.tensor([0.4, 0.5 + 0.5 * FUSION_GAIN * 0.1, 0.5 - 0.5 * FUSION_GAIN * 0.05])
    torch.testing.assert_close(image[0, :, 0, 0], expected)
    torch.testing.assert_close(base_image(stack, DEFAULT_ANGLES_DEG), torch.full((1, 1, 2, 3), 0.4))


def test_early_fusion_model_round_trips_and_takes_ordinary_images(stacks, tmp_path):
    from polstereo.models.files import load_model, save_model

    torch.manual_seed(0)
    model = build_model({"base": "tiny", "base_input": "polarization"}).eval()
    left, right = stacks(b=1, h=37, w=53)
    with torch.no_grad():
        out = model(left, right)["disparity"]
        again, _ = load_model(save_model(tmp_path / "m.ckpt", model))
        assert again.base_input == "polarization"
        assert torch.equal(again.eval()(left, right)["disparity"], out)
        assert model.forward_intensity(left[:, 0], right[:, 0])["disparity"].shape == (1, 1, 37, 53)
    with pytest.raises(PolstereoError, match="unknown base_input"):
        build_model({"base": "tiny", "base_input": "stokes"})
