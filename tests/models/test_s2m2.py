"""The S2M2 wrapper, driven by a stand-in with the official constructor/forward signature."""

import math
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from polstereo.errors import PolstereoError
from polstereo.models import build_model, load_model, model_config, save_model
from polstereo.models.files import write_payload
from polstereo.models.base.s2m2 import S2M2Base, size_from_weights_name, srgb_encode, weights_file_name


class Backbone(nn.Module):
    def forward(self, images):
        return F.avg_pool2d(images, 4), F.avg_pool2d(images, 2)


class StandIn(nn.Module):
    """Same call signature as S2M2: images in 0-255, returns (disparity, visible, confidence)."""

    def __init__(self, feature_channels, dim_expansion, num_transformer, use_positivity=False,
                 output_upsample=False, refine_iter=3):
        super().__init__()
        self.kwargs = dict(feature_channels=feature_channels, dim_expansion=dim_expansion,
                           num_transformer=num_transformer, use_positivity=use_positivity, refine_iter=refine_iter)
        self.refine_iter = refine_iter
        self.cnn_backbone = Backbone()
        self.proj = nn.Conv2d(3, feature_channels // 64, 1)
        self.calls = []

    def forward(self, img0, img1):
        self.calls.append((img0, img1, self.refine_iter))
        self.cnn_backbone(torch.cat([img0, img1], dim=0))
        disparity = img0[:, :1] - 100.0             # identifiable, partly negative
        visible = (img1[:, :1] > 127.5).to(img0.dtype)
        confidence = img0[:, 2:3] / 255.0
        if self.kwargs["use_positivity"]:
            disparity = disparity.clamp(min=0)
        return disparity, visible, confidence


@pytest.fixture
def wrapper():
    return S2M2Base(size="S", factory=StandIn)


def test_builds_official_constructor_arguments_per_size():
    for size, channels, transformers in (("S", 128, 1), ("M", 192, 2), ("L", 256, 3), ("XL", 384, 3)):
        inner = S2M2Base(size=size, refine_iter=4, factory=StandIn).model
        assert inner.kwargs == dict(feature_channels=channels, dim_expansion=1, num_transformer=transformers,
                                    use_positivity=True, refine_iter=4)


def test_input_is_padded_to_32_srgb_encoded_scaled_to_255_and_mono_replicated(wrapper):
    left, right = torch.rand(1, 1, 37, 53), torch.rand(1, 1, 37, 53)
    wrapper(left, right)
    img0, img1, _ = wrapper.model.calls[-1]
    assert img0.shape == img1.shape == (1, 3, 64, 64)
    assert torch.equal(img0[:, 0], img0[:, 1]) and torch.equal(img0[:, 0], img0[:, 2])
    assert torch.allclose(img0[0, 0, :37, :53], srgb_encode(left[0, 0]) * 255, atol=1e-4)
    assert torch.allclose(img1[0, 0, :37, :53], srgb_encode(right[0, 0]) * 255, atol=1e-4)
    # replicate padding at the bottom/right: the padded region repeats the last row/column
    assert torch.equal(img0[0, 0, 37:, :53], img0[0, 0, 36:37, :53].expand(27, 53))
    assert torch.equal(img0[0, 0, :, 53:], img0[0, 0, :, 52:53].expand(64, 11))


def test_outputs_are_mapped_and_cropped_back():
    wrapper = S2M2Base(size="S", input_encoding="linear", factory=StandIn)
    left, right = torch.rand(2, 3, 37, 53), torch.rand(2, 3, 37, 53)
    out = wrapper(left, right)
    assert out["disparity"].shape == out["confidence"].shape == out["occlusion"].shape == (2, 1, 37, 53)
    assert torch.allclose(out["disparity"], (left[:, :1] * 255 - 100).clamp(min=0), atol=1e-4)
    assert torch.allclose(out["confidence"], left[:, 2:3], atol=1e-6)
    # S2M2 marks visible pixels with 1; polstereo's occlusion is 1 where occluded
    assert torch.equal(out["occlusion"], (right[:, :1] * 255 <= 127.5).float())
    assert out["disparities"] == [out["disparity"]]
    assert out["features"].shape == (2, 3, 10, 14)
    assert torch.allclose(out["features"][..., :9, :13], F.avg_pool2d(left * 255, 4), atol=1e-4)


# ---------------------------------------------------------------------------- sRGB input encoding
def test_srgb_encode_gives_the_standards_values():
    linear = torch.tensor([0.0, 0.001, 0.0031308, 0.18, 0.21586050011389926, 0.5, 1.0], dtype=torch.float64)
    expected = torch.tensor([0.0, 0.01292, 0.040449936, 0.4613561295004, 128 / 255, 0.7353569830524495, 1.0],
                            dtype=torch.float64)
    torch.testing.assert_close(srgb_encode(linear), expected, atol=1e-9, rtol=0)


def test_srgb_encode_is_continuous_monotonic_and_clips_nothing():
    x = torch.linspace(-0.1, 1.2, 2001, dtype=torch.float64)
    y = srgb_encode(x)
    assert (y.diff() > 0).all()
    assert math.isclose(srgb_encode(torch.tensor(0.0031308 + 1e-12, dtype=torch.float64)).item(),
                        12.92 * 0.0031308, abs_tol=1e-6)
    assert y[0] < 0 and y[-1] > 1


def test_srgb_encode_has_finite_analytic_gradients_down_to_zero():
    x = torch.tensor([0.0, 0.002, 0.25, 0.9], dtype=torch.float64, requires_grad=True)
    srgb_encode(x).sum().backward()
    slope = 1.055 / 2.4 * x.detach() ** (1 / 2.4 - 1)
    expected = torch.where(x.detach() <= 0.0031308, torch.full_like(slope, 12.92), slope)
    torch.testing.assert_close(x.grad, expected)
    assert torch.autograd.gradcheck(srgb_encode, (torch.tensor([0.001, 0.1, 0.7], dtype=torch.float64,
                                                                requires_grad=True),))


def test_linear_encoding_feeds_s2m2_the_scaled_linear_values():
    wrapper = S2M2Base(size="S", input_encoding="linear", factory=StandIn)
    left, right = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    wrapper(left, right)
    img0, img1, _ = wrapper.model.calls[-1]
    assert torch.allclose(img0[:, 0], left[:, 0] * 255) and torch.allclose(img1[:, 0], right[:, 0] * 255)


def test_gradients_reach_the_input_through_the_encoding():
    left = torch.rand(1, 1, 32, 32, requires_grad=True)
    out = S2M2Base(size="S", allow_negative=True, factory=StandIn)(left, torch.rand(1, 1, 32, 32))
    out["disparity"].sum().backward()  # the stand-in's disparity is its left input - 100
    x = left.detach().clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(255 * srgb_encode(x).sum(), x)
    torch.testing.assert_close(left.grad, expected)


def test_unknown_input_encoding_is_refused():
    with pytest.raises(PolstereoError, match="unknown S2M2 input_encoding 'gamma22'"):
        S2M2Base(size="S", input_encoding="gamma22", factory=StandIn)


def test_encoding_default_is_srgb_for_names_and_released_weights_and_linear_for_old_configs(tmp_path):
    assert build_model({"base": "s2m2-S"}, s2m2_factory=StandIn).base.input_encoding == "srgb"
    path = tmp_path / weights_file_name("S")
    torch.save({"state_dict": StandIn(128, 1, 1).state_dict()}, path)
    fresh = build_model({"base": {"kind": "s2m2", "size": "S", "weights": str(path)}}, s2m2_factory=StandIn)
    assert fresh.base.input_encoding == "srgb"
    # a model_config written before the key existed: its model was trained on linear input
    old = build_model({"base": {"kind": "s2m2", "size": "S", "refine_iter": 3, "allow_negative": False}},
                      s2m2_factory=StandIn)
    assert old.base.input_encoding == "linear"


def test_checkpoint_without_the_encoding_key_loads_with_linear_input(tmp_path, stacks):
    model = build_model({"base": {"kind": "s2m2", "size": "S", "input_encoding": "linear"}}, s2m2_factory=StandIn)
    path = save_model(tmp_path / "old.pth", model.eval())
    payload = torch.load(path, weights_only=True)
    del payload["model_config"]["base"]["input_encoding"]
    write_payload(path, payload)  # as a polstereo from before the key wrote it
    loaded, _ = load_model(path, s2m2_factory=StandIn)
    assert loaded.base.input_encoding == "linear"
    left, right = stacks()
    assert torch.equal(loaded.eval()(left, right)["disparity"], model(left, right)["disparity"])


def test_negative_disparity_only_when_allowed():
    left, right = torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)
    assert (S2M2Base(factory=StandIn)(left, right)["disparity"] == 0).all()
    allowed = S2M2Base(allow_negative=True, factory=StandIn)
    assert not allowed.model.kwargs["use_positivity"]
    assert (allowed(left, right)["disparity"] == -100).all()


def test_iters_overrides_refinement_for_one_call(wrapper):
    images = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    wrapper(*images, iters=5)
    wrapper(*images)
    assert [call[2] for call in wrapper.model.calls] == [5, 3]


def test_missing_package_raises_one_line_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "s2m2", None)  # makes `import s2m2...` fail
    with pytest.raises(PolstereoError, match="pip install git\\+https://github.com/junhong-3dv/s2m2") as err:
        S2M2Base(size="S")
    assert "\n" not in str(err.value)


def test_loads_released_weights_and_infers_size_from_name(tmp_path):
    source = StandIn(feature_channels=192, dim_expansion=1, num_transformer=2)
    path = tmp_path / weights_file_name("M")
    torch.save({"state_dict": source.state_dict()}, path)
    assert size_from_weights_name(path) == "M"
    wrapper = S2M2Base(size=None, weights=path, factory=StandIn)
    assert wrapper.size == "M"
    assert torch.equal(wrapper.model.proj.weight, source.proj.weight)


def test_polstereo_checkpoint_given_as_s2m2_weights_says_so_in_one_line(tmp_path):
    checkpoint = save_model(tmp_path / "last.ckpt", build_model({"base": "tiny"}))
    built = []
    with pytest.raises(PolstereoError, match="is a polstereo checkpoint, not official S2M2 weights") as err:
        S2M2Base(size="S", weights=checkpoint, factory=lambda **kw: built.append(kw) or StandIn(**kw))
    assert "without --model" in str(err.value) and "\n" not in str(err.value)
    assert built == []  # refused before building the network, so no s2m2 package is needed to hear it


def test_weights_of_another_size_or_missing_file_are_refused(tmp_path):
    path = tmp_path / weights_file_name("M")
    torch.save({"state_dict": StandIn(192, 1, 2).state_dict()}, path)
    with pytest.raises(PolstereoError, match="does not fit S2M2-S"):
        S2M2Base(size="S", weights=path, factory=StandIn)
    with pytest.raises(PolstereoError, match="not found"):
        S2M2Base(size="S", weights=tmp_path / "CH128NTR1.pth", factory=StandIn)


def test_full_model_with_s2m2_base_round_trips(tmp_path, stacks):
    model = build_model({"base": "s2m2-S", "correction": {"width": 8, "dilations": [1]}}, s2m2_factory=StandIn)
    assert model_config(model)["base"] == {"kind": "s2m2", "size": "S", "refine_iter": 3, "allow_negative": False,
                                           "input_encoding": "srgb"}
    left, right = stacks()
    out = model(left, right)
    assert out["disparity"].shape == out["occlusion"].shape == (1, 1, 40, 56)
    loaded, _ = load_model(save_model(tmp_path / "s2m2.pth", model), s2m2_factory=StandIn)
    assert torch.equal(loaded.eval()(left, right)["disparity"], model.eval()(left, right)["disparity"])
