"""TrainConfig's sections and flat names: building, storing, and reading the flat form of old files."""

import dataclasses

import pytest

from polstereo.errors import PolstereoError
from polstereo.models.correction import CorrectionConfig
from polstereo.training.config import FLAT_PATHS, TrainConfig
from polstereo.training.setup import _check_resume_options


def test_flat_names_land_in_their_sections():
    cfg = TrainConfig.from_flat(stage="B", out="run", train=["a.h5"], model="small", max_correction=6.0,
                                correction_search=4.0, correction_shape=True, lr=1e-4, mask_ratio=0.4, steps=7)
    assert cfg.data.train == ["a.h5"] and cfg.run.out == "run" and cfg.run.steps == 7
    assert cfg.model.name == "small" and cfg.model.max_correction == 6.0 and cfg.optim.lr == 1e-4
    assert cfg.model.correction.search_radius == 4.0 and cfg.model.correction.shape_features is True
    assert cfg.mim.mask_ratio == 0.4


def test_every_correction_switch_is_a_model_option_under_the_modules_name():
    switches = {f.name: f.metadata["option"] for f in dataclasses.fields(CorrectionConfig) if "option" in f.metadata}
    assert switches  # search_radius, context, shape_features
    for name, flag in switches.items():
        assert FLAT_PATHS[flag[2:].replace("-", "_")] == ("model", "correction", name)


def test_plain_is_nested_and_flattens_back():
    cfg = TrainConfig.from_flat(stage="A", out="run", train=["a.h5"], correction_shape=True, seed=3)
    plain = cfg.plain()
    assert plain["model"]["correction"]["shape_features"] is True and plain["run"]["seed"] == 3
    assert plain["data"]["crop_size"] == [256, 320]  # lists: JSON- and weights_only-safe
    assert TrainConfig.flatten(plain) == cfg.flat()
    assert TrainConfig.from_flat(cfg.flat()) == TrainConfig.from_flat(TrainConfig.flatten(plain))


def test_a_flat_dict_of_an_old_checkpoint_flattens_to_itself():
    old = TrainConfig.from_flat(stage="A", out="run", train=["a.h5"], model="tiny").flat()  # the pre-section form
    assert TrainConfig.flatten(old) == old and old["model"] == "tiny"


def test_plain_omits_the_invocation_only_options():
    plain = TrainConfig.from_flat(stage="A", out="run", train=[], stop_after=2, resume=True).plain(
        omit=TrainConfig.INVOCATION_ONLY)
    assert "stage" not in plain and "resume" not in plain["run"] and "stop_after" not in plain["run"]


def test_an_unknown_option_is_refused():
    with pytest.raises(TypeError, match="unknown training option"):
        TrainConfig.from_flat(stage="A", out="run", train=[], learning_rate=0.1)


@pytest.mark.parametrize("form", ["flat", "nested"])
def test_resume_compares_old_flat_and_new_nested_options(form, tmp_path):
    cfg = TrainConfig.from_flat(stage="B", out=tmp_path, train=["a.h5"], correction_search=4.0, gamma=0.8)
    saved = cfg.flat() if form == "flat" else cfg.plain()
    _check_resume_options(cfg, saved, tmp_path / "last.ckpt")  # the same options
    changed = TrainConfig.from_flat(stage="B", out=tmp_path, train=["a.h5"], correction_search=2.0, gamma=0.8)
    with pytest.raises(PolstereoError, match=r"--correction-search 4\.0 -> 2\.0"):
        _check_resume_options(changed, saved, tmp_path / "last.ckpt")


def test_options_stored_before_the_levers_were_removed_read_without_them():
    # config.yaml of a run from before: the removed switches unset (None) or at the module's default
    stored = TrainConfig.from_flat(stage="B", out="run", train=["a.h5"], correction_search=4.0).plain()
    old = {**stored, "model": {**stored["model"], "correction": {**stored["model"]["correction"],
                                                                  "context_stride": None, "integrate": None}}}
    assert TrainConfig.without_retired(old) == stored
    flat = {**stored, "correction_integrate": False, "model": {**stored["model"], "correction-context-stride": 2}}
    assert TrainConfig.without_retired(flat) == stored


@pytest.mark.parametrize("options", [{"model": {"correction": {"integrate": True}}}, {"correction_context_stride": 4},
                                     {"model": {"correction-integrate": True}}])
def test_options_that_used_a_removed_lever_are_refused_naming_it(options):
    with pytest.raises(PolstereoError, match=r"removed as a lever .*commit 2b20068 still has it"):
        TrainConfig.without_retired(options)
