import os
import pickle

import pytest
import torch

from polstereo.errors import PolstereoError
from polstereo.models import build_model, load_model, model_config, save_model
from polstereo.models.files import model_from_payload

CONFIG = {"base": "tiny", "correction": {"width": 8, "dilations": [1, 2]}, "max_correction": 2.5,
          "angles_deg": [0, 45, 90, 135]}


def is_plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(is_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def test_model_config_is_plain_and_rebuilds_the_same_architecture():
    model = build_model(CONFIG)
    config = model_config(model)
    assert is_plain(config)
    assert config["base"]["name"] == "tiny" and config["max_correction"] == 2.5
    rebuilt = build_model(config)
    assert model_config(rebuilt) == config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, stacks):
    model = build_model(CONFIG).eval()
    path = save_model(tmp_path / "m.pth", model, extra={"stage": "B", "step": 12})
    payload = torch.load(path, weights_only=True)
    assert payload["stage"] == "B" and payload["step"] == 12

    torch.manual_seed(1)  # the rebuilt model starts from other random weights
    loaded, payload = load_model(path)
    loaded.eval()
    left, right = stacks()
    with torch.no_grad():
        a, b = model(left, right), loaded(left, right)
    assert torch.equal(a["disparity"], b["disparity"])
    assert torch.equal(a["raw"], b["raw"])
    assert payload["model_config"] == model_config(model)


def payload_of(model, **correction) -> dict:
    """The in-memory payload of a model file for ``model``, its correction config amended."""
    config = model_config(model)
    config["correction"].update(correction)
    return {"model_config": config, "state_dict": model.state_dict()}


def test_a_model_file_naming_removed_switches_at_their_old_default_loads_with_identical_outputs(stacks):
    # the shipped checkpoints store context_stride 2 and (tiny-cpu) integrate False
    model = build_model(CONFIG).eval()
    loaded = model_from_payload(payload_of(model, context_stride=2, integrate=False), "old.ckpt").eval()
    left, right = stacks()
    with torch.no_grad():
        assert torch.equal(model(left, right)["disparity"], loaded(left, right)["disparity"])


@pytest.mark.parametrize("lever", [{"context_stride": 4}, {"integrate": True}])
def test_a_model_file_that_used_a_removed_lever_is_refused_in_one_line(lever):
    with pytest.raises(PolstereoError, match=r"^lever\.ckpt: this correction module has .*removed as a lever"
                                              r".*commit 2b20068 still has it") as err:
        model_from_payload(payload_of(build_model(CONFIG), **lever), "lever.ckpt")
    assert "\n" not in str(err.value)


def test_base_only_model_round_trips(tmp_path):
    model = build_model({"base": {"name": "tiny", "config": {"iters": 2}}})
    loaded, _ = load_model(save_model(tmp_path / "a.pth", model))
    assert loaded.correction is None and loaded.base.config.iters == 2


def test_load_refuses_missing_file(tmp_path):
    with pytest.raises(PolstereoError, match="not found"):
        load_model(tmp_path / "nope.pth")


def test_load_refuses_garbage(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(os.urandom(256))
    with pytest.raises(PolstereoError, match="corrupt"):
        load_model(path)


def test_load_refuses_truncated_file(tmp_path):
    path = save_model(tmp_path / "m.pth", build_model({"base": "tiny"}))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PolstereoError, match="corrupt"):
        load_model(path)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_load_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model_config": {"base": "tiny"}, "state_dict": {}, "payload": _RunsCode()}, path)
    with pytest.raises(PolstereoError, match="could run code"):
        load_model(path)
    plain = tmp_path / "evil.pkl"
    plain.write_bytes(pickle.dumps(_RunsCode()))
    with pytest.raises(PolstereoError):
        load_model(plain)


def test_load_refuses_foreign_and_mismatched_files(tmp_path):
    foreign = tmp_path / "foreign.pth"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(PolstereoError, match="not a polstereo model file"):
        load_model(foreign)
    mismatched = tmp_path / "mismatched.pth"
    state = build_model({"base": "tiny"}).state_dict()
    torch.save({"model_config": {"base": "small"}, "state_dict": state}, mismatched)
    with pytest.raises(PolstereoError, match="weights do not match"):
        load_model(mismatched)


def test_build_model_rejects_bad_configs():
    with pytest.raises(PolstereoError, match="unknown model option"):
        build_model({"base": "tiny", "dropout": 0.5})
    with pytest.raises(PolstereoError, match="unknown base model kind"):
        build_model({"base": {"kind": "psmnet"}})
    with pytest.raises(PolstereoError, match="unknown base model size"):
        build_model({"base": "huge"})


def test_save_model_rejects_reserved_extra_keys(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        save_model(tmp_path / "m.pth", build_model({"base": "tiny"}), extra={"state_dict": {}})
    assert not (tmp_path / "m.pth").exists()
