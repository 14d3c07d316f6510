"""The polarization volume (models/polarization_volume.py): a second, gated correlation volume
that leaves a warm-started base exactly as it was at step 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polstereo.data.h5 import write_samples
from polstereo.errors import PolstereoError
from polstereo.models.polarization_volume import PolarizationVolume, PolarizationVolumeConfig
from polstereo.models.files import load_model, save_model, write_payload
from polstereo.models.registry import build_model, model_config
from polstereo.training.checkpoint import load_checkpoint
from polstereo.training.config import TrainConfig
from polstereo.training.setup import prepare_model, set_up
from polstereo.training.stages import STAGES
from tests.models.test_s2m2 import StandIn
from tests.models.test_warm_start import assert_same_outputs, outputs, polarized_stacks
from tests.training.conftest import shifted_sample

VOLUME = "polarization-volume"


def with_volume(model, tmp_path, seed=0):
    """``model`` given the volume the way ``adapt --base-input polarization-volume`` gives it."""
    cfg = TrainConfig.from_flat(stage="A", out=tmp_path / "run", train=[], base_input=VOLUME, seed=seed)
    return prepare_model(model, cfg, STAGES["A"], color_channels=1)


def open_gate(model, value=0.05):
    """A trained gate: the volume's lookups now reach the refinement."""
    with torch.no_grad():
        model.polarization_volume.gate.weight.normal_(std=value)
        model.polarization_volume.gate.bias.fill_(value)
    return model


# ---------------------------------------------------------------------------- step 0 is the base
# (step-0 equality for a random base and the shipped small: tests/models/test_warm_start.py)
def test_an_open_gate_changes_the_output():
    model = build_model({"base": "tiny", "base_input": VOLUME}).eval()
    left, right = polarized_stacks()
    before = outputs(model, left, right)["disparity"]
    assert not torch.equal(outputs(open_gate(model), left, right)["disparity"], before)


# ---------------------------------------------------------------------------- it learns
def test_gate_gets_gradient_and_then_the_encoder_does(tmp_path):
    model = with_volume(build_model({"base": "tiny"}), tmp_path).train()
    volume = model.polarization_volume
    left, right = polarized_stacks()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(left, right, iters=2)["disparity"].mean().backward()
    assert volume.gate.weight.grad.abs().sum() > 0
    assert not volume.encoder.net[0].weight.grad.any()  # behind a zero gate, at first
    optimizer.step()
    optimizer.zero_grad()
    model(left, right, iters=2)["disparity"].mean().backward()
    assert volume.encoder.net[0].weight.grad.abs().sum() > 0


def test_volume_is_seeded_and_frozen_with_the_base(tmp_path):
    a = with_volume(build_model({"base": "tiny"}), tmp_path, seed=5).polarization_volume
    b = with_volume(build_model({"base": "tiny"}), tmp_path, seed=5).polarization_volume
    c = with_volume(build_model({"base": "tiny"}), tmp_path, seed=6).polarization_volume
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.encoder.net[0].weight, c.encoder.net[0].weight)
    model = with_volume(build_model({"base": "tiny", "correction": True}), tmp_path)
    prepare_model(model, TrainConfig.from_flat(stage="B", out=tmp_path, train=[]), STAGES["B"], 1)
    assert not any(p.requires_grad for p in model.polarization_volume.parameters())
    prepare_model(model, TrainConfig.from_flat(stage="C", out=tmp_path, train=[]), STAGES["C"], 1)
    assert all(p.requires_grad for p in model.polarization_volume.parameters())


# ---------------------------------------------------------------------------- files
def test_save_load_round_trips_the_volume_and_base_input(tmp_path):
    model = open_gate(build_model({"base": "tiny", "base_input": VOLUME,
                                   "polarization_volume": {"channels": 8, "hidden": 8, "levels": 1}}))
    loaded, payload = load_model(save_model(tmp_path / "m.pth", model))
    assert payload["model_config"]["base_input"] == VOLUME and loaded.base_input == VOLUME
    assert loaded.polarization_volume.config == PolarizationVolumeConfig(channels=8, hidden=8, levels=1)
    volume_keys = [k for k in payload["state_dict"] if k.startswith("base.polarization.")]
    assert volume_keys and all(torch.equal(payload["state_dict"][k], model.state_dict()[k]) for k in volume_keys)
    left, right = polarized_stacks(b=1)
    assert_same_outputs(outputs(loaded.eval(), left, right), outputs(model.eval(), left, right))


def test_checkpoints_without_the_volume_key_load_as_before(tmp_path):
    model = build_model({"base": "tiny", "base_input": VOLUME})
    config = {k: v for k, v in model_config(model).items() if k != "polarization_volume"}  # the defaults
    loaded, _ = load_model(write_payload(tmp_path / "v.pth", {"model_config": config,
                                                              "state_dict": model.state_dict()}))
    assert loaded.polarization_volume.config == PolarizationVolumeConfig()
    plain = build_model({"base": "tiny"})
    assert "polarization_volume" not in model_config(plain)
    loaded, _ = load_model(save_model(tmp_path / "plain.pth", plain))
    assert loaded.polarization_volume is None


def test_volume_checkpoint_without_volume_weights_is_refused(tmp_path):
    model = build_model({"base": "tiny"})
    path = write_payload(tmp_path / "bad.pth", {"model_config": {**model_config(model), "base_input": VOLUME},
                                                "state_dict": model.state_dict()})
    with pytest.raises(PolstereoError, match="weights do not match"):
        load_model(path)


def test_s2m2_base_refuses_the_volume_in_one_line(tmp_path):
    with pytest.raises(PolstereoError, match="needs a built-in base") as built:
        build_model({"base": "s2m2-S", "base_input": VOLUME}, s2m2_factory=StandIn)
    model = build_model({"base": "s2m2-S"}, s2m2_factory=StandIn)
    with pytest.raises(PolstereoError, match="needs a built-in base"):
        with_volume(model, tmp_path)
    assert "\n" not in str(built.value) and model.base_input == "intensity"


def test_switching_away_drops_the_volume(tmp_path):
    model = with_volume(build_model({"base": "tiny"}), tmp_path)
    model.set_base_input("intensity")
    assert model.polarization_volume is None and "polarization_volume" not in model_config(model)


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


def test_adapt_attaches_a_gated_volume_keeps_the_base_and_trains_it(pol_data, tiny_init, tmp_path):
    quick = dict(steps=2, batch_size=2, crop_size=(32, 48), workers=0, val_every=0, save_every=0, quiet=True,
                 iters=1, deterministic=True, seed=4)
    setup = set_up(TrainConfig.from_flat(stage="A", out=tmp_path / "run", train=[pol_data], init=str(tiny_init),
                                         base_input=VOLUME, **quick), log=lambda msg: None)
    init_state = load_checkpoint(tiny_init)["state_dict"]
    state = setup.model.state_dict()
    assert all(torch.equal(init_state[k], state[k]) for k in init_state)  # every base weight, step 0
    gate = setup.model.polarization_volume.gate
    assert not gate.weight.any() and not gate.bias.any()
    trained = {id(p) for p in setup.optimiser.parameters}
    assert all(id(p) in trained for p in setup.model.polarization_volume.parameters())

    from click.testing import CliRunner

    from polstereo.cli.main import cli

    args = ["adapt", "--init", tiny_init, "--base-input", VOLUME, "--train", pol_data, "--out", tmp_path / "run",
            "--steps", 2, "--batch-size", 2, "--crop-size", 32, 48, "--workers", 0, "--iters", 1, "--val-every", 0,
            "--save-every", 0, "--seed", 4, "--quiet", "--deterministic"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    payload = load_checkpoint(tmp_path / "run" / "last.ckpt")
    assert payload["model_config"]["base_input"] == VOLUME and payload["step"] == 2
    assert payload["state_dict"]["base.polarization.gate.weight"].any()  # the gate opened
    load_model(tmp_path / "run" / "last.ckpt")


# ---------------------------------------------------------------------------- ONNX
def test_onnx_export_of_a_model_with_the_volume_and_a_correction_passes_parity(tmp_path):
    """With a correction module; without one: tests/export/test_onnx.py (the warm-start inputs)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from tests.export.conftest import export

    torch.manual_seed(0)
    model = open_gate(build_model({"base": "tiny", "correction": True, "base_input": VOLUME})).eval()
    report = export(model, tmp_path / "volume.onnx", iters=1)
    assert report["graph"] == "full" and report["parity"]["passed"]
    assert report["metadata"]["model_config"]["base_input"] == VOLUME
