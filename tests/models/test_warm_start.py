"""The polarization-adapter warm start (models/adapter.py): the base, exactly, at step 0."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from polstereo.data.h5 import write_samples
from polstereo.errors import PolstereoError
from polstereo.models.adapter import PolarizationAdapter, adapter_features
from polstereo.models.base.s2m2 import weights_file_name
from polstereo.models.files import load_model, save_model, write_payload
from polstereo.models.polarization_volume import PolarizationVolume
from polstereo.models.registry import build_model, model_config
from polstereo.training.checkpoint import load_checkpoint
from polstereo.training.config import TrainConfig
from polstereo.training.setup import prepare_model, set_up, starting_point
from polstereo.training.stages import STAGES
from polstereo.training.trainer import train
from tests.models.test_s2m2 import StandIn
from tests.training.conftest import shifted_sample

ADAPTER = "polarization-adapter"
VOLUME = "polarization-volume"
SHIPPED_SMALL = Path(__file__).resolve().parents[2] / "models" / "polstereo-small.ckpt"
OUTPUTS = ("disparity", "base_disparity", "confidence")


def polarized_stacks(b=2, c=1, h=40, w=56, seed=0):
    """Physically valid angle stacks (DoLP up to 0.6) ``(B, 4, C, H, W)`` in [0, 1], seeded."""
    from polstereo.polar.stokes import angles_from_stokes

    g = torch.Generator().manual_seed(seed)
    views = []
    for _ in range(2):
        s0 = 0.1 + 0.8 * torch.rand(b, 1, c, h, w, generator=g)
        dolp, aolp = 0.6 * torch.rand(b, 1, c, h, w, generator=g), torch.pi * torch.rand(b, 1, c, h, w, generator=g)
        stokes = torch.cat([s0, s0 * dolp * torch.cos(2 * aolp), s0 * dolp * torch.sin(2 * aolp)], dim=1)
        views.append(angles_from_stokes(stokes, axis=1).clamp(0.0, 1.0))
    return views


def outputs(model, left, right) -> dict:
    with torch.no_grad():
        return model(left, right)


def assert_same_outputs(a: dict, b: dict) -> None:
    for name in OUTPUTS:
        assert torch.equal(a[name], b[name]), name


def adapt_config(tmp_path, **options) -> TrainConfig:
    return TrainConfig.from_flat(stage="A", out=tmp_path / "run", train=[], **{"base_input": ADAPTER, **options})


def with_adapter(model, tmp_path, seed=0):
    """``model`` given the adapter the way ``adapt --base-input polarization-adapter`` gives it."""
    return prepare_model(model, adapt_config(tmp_path, seed=seed), STAGES["A"], color_channels=1)


# ---------------------------------------------------------------------------- step 0 is the base
# both warm starts that add polarization to a base: the part each attaches and its type
WARM_STARTS = pytest.mark.parametrize("base_input,part,part_type", [
    (ADAPTER, "adapter", PolarizationAdapter), (VOLUME, "polarization_volume", PolarizationVolume)])


@WARM_STARTS
@pytest.mark.parametrize("config,channels", [({"base": "small"}, 1),
                                             ({"base": "tiny", "correction": {"color_channels": 3}}, 3)],
                         ids=["small-mono", "tiny-rgb-with-correction"])
def test_warm_start_equals_the_base_exactly_at_step_0(config, channels, base_input, part, part_type, tmp_path):
    model = build_model(config).eval()
    left, right = polarized_stacks(c=channels)
    before = outputs(model, left, right)
    plain_intensity = model.forward_intensity(left[:, 0], right[:, 0])["disparity"]
    cfg = adapt_config(tmp_path, base_input=base_input)
    warm = prepare_model(model, cfg, STAGES["A"], color_channels=1).eval()
    assert warm.base_input == base_input and isinstance(getattr(warm, part), part_type)
    assert_same_outputs(outputs(warm, left, right), before)
    assert torch.equal(warm.forward_intensity(left[:, 0], right[:, 0])["disparity"], plain_intensity)


@WARM_STARTS
@pytest.mark.skipif(not SHIPPED_SMALL.exists(), reason="no shipped small model")
def test_warm_start_from_the_shipped_small_model_equals_it_at_step_0(base_input, part, part_type, tmp_path):
    cfg = TrainConfig.from_flat(stage="A", out=tmp_path / "run", train=[], init=str(SHIPPED_SMALL),
                                base_input=base_input)
    warm = prepare_model(starting_point(cfg, STAGES["A"], tmp_path / "last.ckpt").model, cfg, STAGES["A"], 1)
    shipped, _ = load_model(SHIPPED_SMALL)
    left, right = polarized_stacks(b=1, h=32, w=48)
    with torch.no_grad():
        expected = shipped.eval()(left, right, iters=2)
        got = warm.eval()(left, right, iters=2)
    assert_same_outputs(got, expected)
    assert torch.equal(got["correction"], expected["correction"])  # its correction module is kept, frozen
    assert isinstance(getattr(warm, part), part_type)
    assert warm.is_frozen("correction") and not warm.is_frozen("base")


@pytest.fixture
def official_s2m2_weights(tmp_path, monkeypatch):
    """Random S2M2-S weights in the release format; the stand-in installed as the official package."""
    for name in ("s2m2", "s2m2.core", "s2m2.core.model", "s2m2.core.model.s2m2"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setattr(sys.modules["s2m2.core.model.s2m2"], "S2M2", StandIn, raising=False)
    path = tmp_path / weights_file_name("S")
    torch.save({"state_dict": StandIn(128, 1, 1).state_dict()}, path)
    return path


def test_warm_start_from_official_s2m2_weights_equals_them_at_step_0(official_s2m2_weights, tmp_path):
    cfg = TrainConfig.from_flat(stage="A", out=tmp_path / "run", train=[], init=str(official_s2m2_weights),
                                model="s2m2-S", base_input=ADAPTER)
    plain = starting_point(cfg, STAGES["A"], tmp_path / "last.ckpt").model.eval()
    warm = prepare_model(starting_point(cfg, STAGES["A"], tmp_path / "last.ckpt").model, cfg, STAGES["A"], 1).eval()
    left, right = polarized_stacks()
    assert_same_outputs(outputs(warm, left, right), outputs(plain, left, right))
    with torch.no_grad():
        warm.adapter.out.bias.fill_(0.05)  # once trained, the stand-in sees the residual
    assert not torch.equal(outputs(warm, left, right)["disparity"], outputs(plain, left, right)["disparity"])


# ---------------------------------------------------------------------------- it learns
def test_last_adapter_layer_gets_gradient_and_one_step_changes_the_output(tmp_path):
    model = with_adapter(build_model({"base": "tiny"}), tmp_path).train()
    left, right = polarized_stacks()
    before = outputs(model.eval(), left, right)["disparity"]
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model(left, right, iters=1)["disparity"].mean().backward()
    assert model.adapter.out.weight.grad.abs().sum() > 0 and model.adapter.out.bias.grad.abs().sum() > 0
    optimizer.step()
    assert model.adapter.out.weight.abs().sum() > 0
    assert not torch.equal(outputs(model.eval(), left, right)["disparity"], before)


def test_adapter_is_seeded_and_frozen_with_the_base(tmp_path):
    a = with_adapter(build_model({"base": "tiny"}), tmp_path, seed=5).adapter
    b = with_adapter(build_model({"base": "tiny"}), tmp_path, seed=5).adapter
    c = with_adapter(build_model({"base": "tiny"}), tmp_path, seed=6).adapter
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.net[0].weight, c.net[0].weight)
    model = with_adapter(build_model({"base": "tiny", "correction": True}), tmp_path)
    prepare_model(model, TrainConfig.from_flat(stage="B", out=tmp_path, train=[]), STAGES["B"], 1)
    assert not any(p.requires_grad for p in model.adapter.parameters())
    assert all(p.requires_grad for p in model.correction.parameters())
    prepare_model(model, TrainConfig.from_flat(stage="C", out=tmp_path, train=[]), STAGES["C"], 1)
    assert all(p.requires_grad for p in model.adapter.parameters())


def test_adapter_features_are_grey_stokes_and_dolp():
    left, _ = polarized_stacks(b=1, c=3, h=8, w=8)
    features = adapter_features(left, (0.0, 45.0, 90.0, 135.0))
    assert features.shape == (1, 4, 8, 8)
    s1, s2, dolp = features[:, 1], features[:, 2], features[:, 3]
    torch.testing.assert_close(dolp, torch.hypot(s1, s2))
    assert dolp.max() <= 1.0 and dolp.max() > 0.05


# ---------------------------------------------------------------------------- files
def test_save_load_round_trips_the_adapter_and_base_input(tmp_path):
    model = with_adapter(build_model({"base": "tiny"}), tmp_path, seed=2)
    with torch.no_grad():
        model.adapter.out.weight.normal_()
    loaded, payload = load_model(save_model(tmp_path / "m.pth", model))
    assert payload["model_config"]["base_input"] == ADAPTER and loaded.base_input == ADAPTER
    adapter_keys = [k for k in payload["state_dict"] if k.startswith("adapter.")]
    assert adapter_keys and all(torch.equal(payload["state_dict"][k], model.state_dict()[k]) for k in adapter_keys)
    left, right = polarized_stacks(b=1)
    assert_same_outputs(outputs(loaded.eval(), left, right), outputs(model.eval(), left, right))


def test_checkpoint_without_base_input_or_adapter_still_loads(tmp_path):
    model = build_model({"base": "tiny", "correction": True})
    config = {k: v for k, v in model_config(model).items() if k != "base_input"}  # as before the key existed
    path = write_payload(tmp_path / "old.pth", {"model_config": config, "state_dict": model.state_dict()})
    loaded, _ = load_model(path)
    assert loaded.base_input == "intensity" and loaded.adapter is None


def test_adapter_checkpoint_without_adapter_weights_is_refused(tmp_path):
    model = build_model({"base": "tiny"})
    path = write_payload(tmp_path / "bad.pth", {"model_config": {**model_config(model), "base_input": ADAPTER},
                                                "state_dict": model.state_dict()})
    with pytest.raises(PolstereoError, match="weights do not match"):
        load_model(path)


# ---------------------------------------------------------------------------- adapt
@pytest.fixture(scope="module")
def pol_data(tmp_path_factory):
    rng = np.random.default_rng(11)
    folder = tmp_path_factory.mktemp("pol_data")
    write_samples(folder / "train.h5", [shifted_sample(rng) for _ in range(4)])
    return folder / "train.h5"


@pytest.fixture(scope="module")
def tiny_init(tmp_path_factory):
    torch.manual_seed(1)
    return save_model(tmp_path_factory.mktemp("init") / "tiny.pth", build_model({"base": "tiny"}))


QUICK = dict(steps=2, batch_size=2, crop_size=(32, 48), workers=0, val_every=0, save_every=0, quiet=True, iters=1,
             deterministic=True, seed=4)


def test_adapt_attaches_a_zero_adapter_keeps_the_base_and_trains_it(pol_data, tiny_init, tmp_path):
    cfg = TrainConfig.from_flat(stage="A", out=tmp_path / "run", train=[pol_data], init=str(tiny_init),
                                base_input=ADAPTER, **QUICK)
    setup = set_up(cfg, log=lambda msg: None)
    init_state = load_checkpoint(tiny_init)["state_dict"]
    state = setup.model.state_dict()
    assert all(torch.equal(init_state[k], state[k]) for k in init_state)  # every base weight, step 0
    assert not setup.model.adapter.out.weight.any() and not setup.model.adapter.out.bias.any()
    trained = {id(p) for p in setup.optimiser.parameters}
    assert all(id(p) in trained for p in setup.model.adapter.parameters())

    from click.testing import CliRunner

    from polstereo.cli.main import cli

    args = ["adapt", "--init", tiny_init, "--base-input", ADAPTER, "--train", pol_data, "--out", tmp_path / "run",
            "--steps", 2, "--batch-size", 2, "--crop-size", 32, 48, "--workers", 0, "--iters", 1, "--val-every", 0,
            "--save-every", 0, "--seed", 4, "--quiet", "--deterministic"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    payload = load_checkpoint(tmp_path / "run" / "last.ckpt")
    assert payload["model_config"]["base_input"] == ADAPTER and payload["step"] == 2
    assert payload["state_dict"]["adapter.out.weight"].any()  # the zero layer moved
    adapter_ids = {id(p) for p in setup.model.adapter.parameters()}
    indices = [i for i, p in enumerate(setup.optimiser.parameters) if id(p) in adapter_ids]
    assert len(indices) == len(adapter_ids) and all(i in payload["optimizer"]["state"] for i in indices)


def test_adapt_with_the_adapter_resumes_to_the_same_weights(pol_data, tiny_init, tmp_path):
    def run(out, **kw):
        train(TrainConfig.from_flat(stage="A", out=out, train=[pol_data], init=str(tiny_init), base_input=ADAPTER,
                                    **QUICK, **kw), log=lambda msg: None)

    run(tmp_path / "full")
    run(tmp_path / "split", stop_after=1)
    run(tmp_path / "split", resume=True)
    full = load_checkpoint(tmp_path / "full" / "last.ckpt")["state_dict"]
    split = load_checkpoint(tmp_path / "split" / "last.ckpt")["state_dict"]
    assert full.keys() == split.keys() and any(k.startswith("adapter.") for k in full)
    for key, value in full.items():
        assert torch.equal(value, split[key]), key


# ---------------------------------------------------------------------------- ONNX
def test_onnx_export_of_a_model_with_the_adapter_and_a_correction_passes_parity(tmp_path):
    """With a correction module; without one: tests/export/test_onnx.py (the warm-start inputs)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from tests.export.conftest import export

    model = build_model({"base": "tiny", "correction": True, "base_input": ADAPTER}).eval()
    with torch.no_grad():  # a trained adapter: its residual is part of the graph
        model.adapter.out.weight.normal_(std=0.05)
        model.adapter.out.bias.fill_(0.02)
    report = export(model, tmp_path / "adapter.onnx", iters=1)
    assert report["graph"] == "full" and report["parity"]["passed"]
    assert report["metadata"]["model_config"]["base_input"] == ADAPTER
