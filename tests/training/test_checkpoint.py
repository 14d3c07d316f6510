"""Checkpoint integrity: a digest over weights and config, checked on every load."""

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from polstereo.cli.main import cli
from polstereo.errors import PolstereoError
from polstereo.models.files import save_model
from polstereo.models.registry import build_model
from polstereo.training.checkpoint import (DIGEST_KEY, load_checkpoint, load_for_inference, payload_digest,
                                           save_checkpoint)

ROOT = Path(__file__).resolve().parents[2]
LINEAGE = [{"stage": "A"}, {"stage": "B"}, {"stage": "C"}]


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model({"base": "tiny", "correction": True})


@pytest.fixture
def ckpt(tmp_path, tiny_model):
    return save_checkpoint(tmp_path / "c.ckpt", tiny_model, stage="C", lineage=LINEAGE, step=3)


def _rewrite(path: Path, change) -> None:
    """Load, change and re-save a payload as plain torch.save (keeping the stored digest)."""
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def test_saved_checkpoint_holds_a_sha256_digest_of_its_content(ckpt):
    payload = torch.load(ckpt, weights_only=True)
    assert payload[DIGEST_KEY].startswith("sha256:") and len(payload[DIGEST_KEY]) == len("sha256:") + 64
    assert payload[DIGEST_KEY] == payload_digest(payload)
    assert load_checkpoint(ckpt)["step"] == 3


def test_digest_does_not_depend_on_dict_order_but_on_every_value():
    a = {"state_dict": {"x": torch.ones(2), "y": torch.zeros(1)}, "step": 1}
    b = {"step": 1, "state_dict": {"y": torch.zeros(1), "x": torch.ones(2)}}
    assert payload_digest(a) == payload_digest(b)
    assert payload_digest(a) != payload_digest({**a, "step": 2})
    assert payload_digest(a) != payload_digest({**a, "state_dict": {"x": torch.ones(2, dtype=torch.float64),
                                                                    "y": torch.zeros(1)}})
    assert payload_digest({"v": 1}) != payload_digest({"v": 1.0}) != payload_digest({"v": True})


def test_one_changed_weight_is_refused_with_a_one_line_error(ckpt):
    def bump(payload):
        key = next(k for k in payload["state_dict"] if k.endswith("weight"))
        payload["state_dict"][key].view(-1)[0] += 1e-3
    _rewrite(ckpt, bump)
    with pytest.raises(PolstereoError, match="integrity check failed") as err:
        load_for_inference(ckpt)
    assert "\n" not in str(err.value)


def test_a_changed_config_is_refused(ckpt):
    _rewrite(ckpt, lambda p: p["model_config"].update(max_correction=40.0))
    with pytest.raises(PolstereoError, match="integrity check failed"):
        load_checkpoint(ckpt)


def test_a_file_without_digest_loads_with_a_one_line_note(tmp_path, tiny_model, capsys):
    path = save_checkpoint(tmp_path / "old.ckpt", tiny_model, stage="C", lineage=LINEAGE)
    _rewrite(path, lambda p: p.pop(DIGEST_KEY))
    model, _ = load_for_inference(path)
    note = capsys.readouterr().err.strip().splitlines()
    assert len(note) == 1 and note[0].startswith(f"note: {path} has no integrity digest")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), tiny_model.state_dict().values()))


@pytest.mark.parametrize("name", ["polstereo-small.ckpt", "polstereo-tiny-cpu.ckpt"])
def test_the_shipped_models_carry_a_digest_and_a_copy_without_one_still_loads_unchanged(name, tmp_path, capsys):
    from polstereo.models.files import load_model

    path = ROOT / "models" / name
    checked, payload = load_for_inference(path)
    assert payload[DIGEST_KEY].startswith("sha256:") and "digest" not in capsys.readouterr().err
    legacy = tmp_path / name  # as written before digests existed
    torch.save({k: v for k, v in torch.load(path, weights_only=True).items() if k != DIGEST_KEY}, legacy)
    plain, _ = load_model(legacy)
    old, old_payload = load_for_inference(legacy)
    assert DIGEST_KEY not in old_payload and "no integrity digest" in capsys.readouterr().err
    for model in (plain, old):
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), checked.state_dict().values()))


@pytest.mark.parametrize("lineage", ["A,B", [1, 2], [{"steps": 3}], [{"stage": 7}]])
def test_a_malformed_lineage_is_a_one_line_error(tmp_path, tiny_model, lineage):
    path = save_checkpoint(tmp_path / "l.ckpt", tiny_model, stage="C", lineage=lineage)
    with pytest.raises(PolstereoError, match="malformed lineage"):
        load_for_inference(path)


def test_a_negative_dimension_in_model_config_is_a_one_line_error(tmp_path):
    payload = {"format": "polstereo.model", "format_version": 1, "checkpoint_version": 1,
               "model_config": {"base": {"kind": "builtin", "name": "tiny", "config": {"feature_dim": -4}}},
               "state_dict": {}}
    payload[DIGEST_KEY] = payload_digest(payload)  # well-formed file, impossible architecture
    torch.save(payload, tmp_path / "neg.ckpt")
    with pytest.raises(PolstereoError, match="model_config cannot be built") as err:
        load_for_inference(tmp_path / "neg.ckpt")
    assert "\n" not in str(err.value)


def test_eval_refuses_a_tampered_checkpoint_with_exit_1(ckpt, tiny_data):
    _rewrite(ckpt, lambda p: p["state_dict"][next(k for k in p["state_dict"] if k.endswith("weight"))].add_(1))
    result = CliRunner().invoke(cli, ["eval", str(ckpt), "--data", str(tiny_data / "val.h5")])
    assert result.exit_code == 1 and "integrity check failed" in result.output
    assert "Traceback" not in result.output


def test_slim_checkpoint_keeps_weights_and_writes_a_fresh_digest(tmp_path, tiny_model, monkeypatch):
    full = save_checkpoint(tmp_path / "full.ckpt", tiny_model, stage="C", lineage=LINEAGE, step=5,
                           optimizer={"state": {}, "param_groups": []})
    out = tmp_path / "slim.ckpt"
    monkeypatch.setattr(sys, "argv", ["slim_checkpoint.py", str(full), str(out)])
    runpy.run_path(str(ROOT / "scripts" / "slim_checkpoint.py"), run_name="__main__")
    slim = load_checkpoint(out)
    assert "optimizer" not in slim and slim[DIGEST_KEY] == payload_digest(slim)
    assert all(torch.equal(slim["state_dict"][k], v) for k, v in tiny_model.state_dict().items())


def test_byte_flip_mutants_never_traceback_and_never_load_changed_weights(tmp_path):
    """30 mutants of a small checkpoint: each is refused with a PolstereoError, or loads the original weights."""
    torch.manual_seed(0)
    model = build_model({"base": {"kind": "builtin", "name": "tiny", "config": {"feature_dim": 8}}})
    path = save_checkpoint(tmp_path / "t.ckpt", model, stage="A", lineage=[{"stage": "A"}], step=1)
    data = path.read_bytes()
    reference = model.state_dict()
    rng = np.random.default_rng(17)
    refused = 0
    for i in range(30):
        mutant = bytearray(data)
        # every other flip lands in the first or last 2 kB: the pickle and the zip records
        offset = int(rng.integers(len(data))) if i % 2 else int(rng.choice(
            [rng.integers(0, 2048), rng.integers(len(data) - 2048, len(data))]))
        mutant[offset] ^= int(rng.integers(1, 256))
        (tmp_path / "m.ckpt").write_bytes(bytes(mutant))
        try:
            loaded, _ = load_for_inference(tmp_path / "m.ckpt")
        except PolstereoError as err:
            assert "\n" not in str(err)
            refused += 1
            continue
        assert all(torch.equal(reference[k], v) for k, v in loaded.state_dict().items()), f"flip at {offset}"
    assert refused >= 20


def test_a_registry_model_file_without_lineage_still_loads(tmp_path, tiny_model, capsys):
    save_model(tmp_path / "m.pt", tiny_model)
    load_for_inference(tmp_path / "m.pt")
    assert capsys.readouterr().err == ""  # a bare model file is not an old checkpoint: no note
