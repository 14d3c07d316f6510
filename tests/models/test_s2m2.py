"""The S2M2 wrapper, driven by a stand-in with the official constructor/forward signature."""

import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from polstereo.errors import PolstereoError
from polstereo.models import build_model, load_model, model_config, save_model
from polstereo.models.base.s2m2 import S2M2Base, size_from_weights_name, weights_file_name


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


def test_input_is_padded_to_32_scaled_to_255_and_mono_replicated(wrapper):
    left, right = torch.rand(1, 1, 37, 53), torch.rand(1, 1, 37, 53)
    wrapper(left, right)
    img0, img1, _ = wrapper.model.calls[-1]
    assert img0.shape == img1.shape == (1, 3, 64, 64)
    assert torch.equal(img0[:, 0], img0[:, 1]) and torch.equal(img0[:, 0], img0[:, 2])
    assert torch.allclose(img0[0, 0, :37, :53], left[0, 0] * 255)
    # replicate padding at the bottom/right: the padded region repeats the last row/column
    assert torch.equal(img0[0, 0, 37:, :53], img0[0, 0, 36:37, :53].expand(27, 53))
    assert torch.equal(img0[0, 0, :, 53:], img0[0, 0, :, 52:53].expand(64, 11))


def test_outputs_are_mapped_and_cropped_back(wrapper):
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


def test_weights_of_another_size_or_missing_file_are_refused(tmp_path):
    path = tmp_path / weights_file_name("M")
    torch.save({"state_dict": StandIn(192, 1, 2).state_dict()}, path)
    with pytest.raises(PolstereoError, match="does not fit S2M2-S"):
        S2M2Base(size="S", weights=path, factory=StandIn)
    with pytest.raises(PolstereoError, match="not found"):
        S2M2Base(size="S", weights=tmp_path / "CH128NTR1.pth", factory=StandIn)


def test_full_model_with_s2m2_base_round_trips(tmp_path, stacks):
    model = build_model({"base": "s2m2-S", "correction": {"width": 8, "dilations": [1]}}, s2m2_factory=StandIn)
    assert model_config(model)["base"] == {"kind": "s2m2", "size": "S", "refine_iter": 3, "allow_negative": False}
    left, right = stacks()
    out = model(left, right)
    assert out["disparity"].shape == out["occlusion"].shape == (1, 1, 40, 56)
    loaded, _ = load_model(save_model(tmp_path / "s2m2.pth", model), s2m2_factory=StandIn)
    assert torch.equal(loaded.eval()(left, right)["disparity"], model.eval()(left, right)["disparity"])
