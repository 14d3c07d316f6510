"""Set-up of a run (training/setup.py): --init from official S2M2 weights, DDP's unused-parameter search."""

import sys
import types

import pytest
import torch
from torch import nn

from polstereo.errors import PolstereoError
from polstereo.models.base.s2m2 import S2M2Base, weights_file_name
from polstereo.models.registry import build_model
from polstereo.training.config import TrainConfig
from polstereo.training.setup import may_leave_parameters_unused, prepare_model, starting_point
from polstereo.training.stages import STAGES
from polstereo.training.trainer import train


class StandInS2M2(nn.Module):
    """The official S2M2 constructor and call signature; a 1x1 convolution inside."""

    def __init__(self, feature_channels, dim_expansion, num_transformer, use_positivity=False, refine_iter=3):
        super().__init__()
        self.refine_iter = refine_iter
        self.proj = nn.Conv2d(3, 1, 1)

    def forward(self, img0, img1):
        disparity = self.proj(img0)
        return disparity, torch.ones_like(disparity), torch.ones_like(disparity)


@pytest.fixture
def s2m2_weights(tmp_path, monkeypatch):
    """S2M2-S weights in the release format, and the stand-in installed as the official package."""
    for name in ("s2m2", "s2m2.core", "s2m2.core.model", "s2m2.core.model.s2m2"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setattr(sys.modules["s2m2.core.model.s2m2"], "S2M2", StandInS2M2, raising=False)
    path = tmp_path / weights_file_name("S")
    torch.save({"state_dict": StandInS2M2(128, 1, 1).state_dict()}, path)
    return path


@pytest.mark.parametrize("stage", ["B", "C"])
def test_later_stages_refuse_official_s2m2_weights_without_stage_a(s2m2_weights, tiny_data, tmp_path, quick, stage):
    cfg = TrainConfig.from_flat(stage=stage, out=tmp_path / "run", train=[tiny_data / "train.h5"],
                                init=str(s2m2_weights), model="s2m2-S", **quick)
    required = STAGES[STAGES[stage].requires]
    needs = rf"needs a checkpoint that went through stage {required.name} \({required.command}\)"
    with pytest.raises(PolstereoError, match=needs + "; official S2M2 weights have no stage. Use --force") as err:
        train(cfg, log=lambda msg: None)
    assert "\n" not in str(err.value) and not (tmp_path / "run").exists()


def test_forced_learn_pol_starts_from_official_s2m2_weights(s2m2_weights, tmp_path):
    cfg = TrainConfig.from_flat(stage="B", out=tmp_path, train=[], init=str(s2m2_weights), model="s2m2-S", force=True)
    start = starting_point(cfg, STAGES["B"], tmp_path / "last.ckpt")
    assert isinstance(start.model.base, S2M2Base)
    assert (start.lineage, start.init_desc) == ([], f"s2m2:{s2m2_weights}")
    saved = torch.load(s2m2_weights, weights_only=True)["state_dict"]
    assert torch.equal(start.model.base.model.proj.weight, saved["proj.weight"])


def test_adapt_starts_from_official_s2m2_weights(s2m2_weights, tmp_path):
    cfg = TrainConfig.from_flat(stage="A", out=tmp_path, train=[], init=str(s2m2_weights), model="s2m2-S")
    assert isinstance(starting_point(cfg, STAGES["A"], tmp_path / "last.ckpt").model.base, S2M2Base)


def test_ddp_searches_for_unused_parameters_only_where_a_trainable_s2m2_base_may_leave_some(s2m2_weights,
                                                                                            tmp_path):
    cfg = TrainConfig.from_flat(stage="A", out=tmp_path, train=[], init=str(s2m2_weights), model="s2m2-S")
    s2m2_model = starting_point(cfg, STAGES["A"], tmp_path / "last.ckpt").model
    assert may_leave_parameters_unused(prepare_model(s2m2_model, cfg, STAGES["A"], 1))  # adapt trains the base
    assert not may_leave_parameters_unused(prepare_model(s2m2_model, cfg, STAGES["B"], 1))  # base frozen
    assert may_leave_parameters_unused(prepare_model(s2m2_model, cfg, STAGES["C"], 1))  # finetune trains it
    assert not may_leave_parameters_unused(prepare_model(build_model({"base": "tiny"}), cfg, STAGES["A"], 1))


def test_new_correction_replaces_the_init_module_in_stage_b_only(tmp_path):
    """--new-correction: stage B builds a module of the asked shape in place of the checkpoint's;
    without it the other shape is refused; a --resume keeps last.ckpt's module; A and C refuse it."""
    from polstereo.models.correction import CorrectionConfig, CorrectionModule

    def with_module():
        model = build_model({"base": "tiny"})
        model.correction = CorrectionModule(CorrectionConfig(color_channels=1))  # dilated context
        return model

    def config(stage, **options):
        return TrainConfig.from_flat(stage=stage, out=tmp_path, train=[], correction_context="unet", **options)

    model = with_module()
    with pytest.raises(PolstereoError, match="already has a correction module with context dilated"):
        prepare_model(model, config("B"), STAGES["B"], 1)
    old = model.correction
    fresh = prepare_model(model, config("B", new_correction=True), STAGES["B"], 1)
    assert fresh.correction is not old and fresh.correction.config.context == "unet"
    assert all(p.requires_grad for p in fresh.correction.parameters())
    assert not any(p.requires_grad for p in fresh.base.parameters())  # stage B freezes the base
    kept = fresh.correction
    assert prepare_model(fresh, config("B", new_correction=True), STAGES["B"], 1, resuming=True).correction is kept
    for stage in ("A", "C"):
        with pytest.raises(PolstereoError, match="only learn-pol"):
            prepare_model(with_module(), TrainConfig.from_flat(stage=stage, out=tmp_path, train=[], new_correction=True),
                          STAGES[stage], 1)
