"""The training commands' options: every flag of the flat option list (before the config had
sections) still sets the same value, now in its section; --help shows the sections; --config
files may nest by section."""

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from polstereo.cli.main import cli
from polstereo.training.config import FLAT_PATHS, TrainResult

# every flag of the list before issue 24 (less the levers removed since), with a value other than
# its default and the value its field (flat name: the flag's) then holds
OLD_FLAGS = [
    (["--init", "x.ckpt"], "x.ckpt"), (["--train", "a.h5"], ["a.h5"]), (["--dataset-steps", "3"], [3]),
    (["--dataset-order", "shuffle"], "shuffle"), (["--val", "v.h5"], "v.h5"), (["--out", "o"], "o"),
    (["--model", "small"], "small"), (["--max-correction", "6"], 6.0), (["--correction-search", "4"], 4.0),
    (["--correction-context", "unet"], "unet"), (["--correction-shape"], True),
    (["--base-input", "polarization"], "polarization"),
    (["--shape-weight", "0.5"], 0.5), (["--shape-min-dolp", "0.1"], 0.1), (["--steps", "3"], 3),
    (["--batch-size", "4"], 4), (["--lr", "0.001"], 0.001), (["--min-lr", "1e-6"], 1e-6),
    (["--lr-decay-method", "linear"], "linear"), (["--warmup-steps", "2"], 2), (["--decay-after-steps", "1"], 1),
    (["--weight-decay", "0.01"], 0.01), (["--clip-grad-norm", "0.5"], 0.5), (["--crop-size", "32", "48"], [32, 48]),
    (["--scale-range", "0.5", "1.5"], [0.5, 1.5]), (["--vflip-prob", "0.3"], 0.3), (["--no-photometric"], False),
    (["--max-disparity", "100"], 100.0), (["--transparent-weight", "2"], 2.0), (["--robust-scale", "3"], 3.0),
    (["--gamma", "0.7"], 0.7), (["--iters", "5"], 5), (["--workers", "0"], 0), (["--seed", "9"], 9),
    (["--val-every", "7"], 7), (["--val-samples", "2"], 2), (["--save-every", "8"], 8), (["--log-every", "3"], 3),
    (["--resume"], True), (["--force"], True), (["--device", "cpu"], "cpu"), (["--amp", "off"], "off"),
    (["--deterministic"], True), (["--feasibility-statistic", "median"], "median"), (["--mask-ratio", "0.4"], 0.4),
    (["--mask-patch", "8"], 8), (["--mim-weight", "0.5"], 0.5), (["--ema-decay", "0.99"], 0.99),
    (["--pseudo-weight", "0.25"], 0.25), (["--warp-source", "gt"], "gt"), (["--tensorboard"], True),
    (["--stop-after", "2"], 2), (["--quiet"], True),
]
NEW_FLAGS = [(["--new-correction"], True), (["--freeze", "base.update"], ["base.update"])]  # added since
REMOVED_FLAGS = [["--correction-context-stride", "4"], ["--correction-integrate"]]  # levers that lost
SECTIONS = ["Data options:", "Model options:", "Optimiser and loss options:", "Masked modelling options:",
            "Run options:", "Other options:"]


@pytest.fixture
def captured(monkeypatch):
    """The TrainConfig a command builds; the training itself does not run."""
    seen = []

    def fake_train(cfg, log):
        seen.append(cfg)
        return TrainResult(out=Path("o"), steps_done=0, skipped_steps=0, val_metrics=None, best_score=None,
                           last_checkpoint=Path("o/last.ckpt"), best_checkpoint=None)

    monkeypatch.setattr("polstereo.training.trainer.train", fake_train)
    return seen


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_every_old_flag_sets_the_same_field_value_in_its_section(captured):
    result = invoke("learn-pol", *[arg for flags, _ in OLD_FLAGS + NEW_FLAGS for arg in flags])
    assert result.exit_code == 0, result.output
    (cfg,) = captured
    flat = cfg.flat()
    wrong = {flags[0]: (flat[flags[0][2:].replace("-", "_").removeprefix("no_")], value)
             for flags, value in OLD_FLAGS if flat[flags[0][2:].replace("-", "_").removeprefix("no_")] != value}
    assert wrong == {}
    assert cfg.model.max_correction == 6.0 and cfg.model.correction.search_radius == 4.0 and cfg.optim.gamma == 0.7
    assert cfg.data.crop_size == (32, 48) and cfg.run.steps == 3 and cfg.mim.mask_ratio == 0.4


def test_the_old_and_new_lists_are_every_option():
    flat = {flags[0][2:].replace("-", "_").removeprefix("no_") for flags, _ in OLD_FLAGS + NEW_FLAGS}
    assert flat == set(FLAT_PATHS) - {"stage"}


@pytest.mark.parametrize("flags", REMOVED_FLAGS)
def test_a_removed_lever_is_no_option(flags, captured):
    result = invoke("learn-pol", "--train", "a.h5", "--out", "o", *flags)
    assert result.exit_code == 2 and f"No such option '{flags[0]}'" in result.output and not captured


def test_help_lists_the_options_by_section():
    result = invoke("adapt", "--help")
    assert result.exit_code == 0
    at = [result.output.index(heading) for heading in SECTIONS]
    assert at == sorted(at)
    model = result.output[at[1]:at[2]]
    assert all(flag in model for flag in ("--max-correction", "--correction-search", "--correction-shape"))
    assert "--steps" in result.output[at[4]:at[5]] and "--json" in result.output[at[5]:]


def test_config_file_may_nest_options_by_section(captured, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"train": "a.h5", "crop_size": [32, 48]},
                                      "model": {"max_correction": 6, "correction": {"search_radius": 4},
                                                "correction-shape": True},
                                      "run": {"out": "o", "steps": 2}, "gamma": 0.5}))
    result = invoke("learn-pol", "--config", config)
    assert result.exit_code == 0, result.output
    (cfg,) = captured
    assert cfg.data.train == [Path("a.h5")] and cfg.data.crop_size == (32, 48) and cfg.optim.gamma == 0.5
    assert cfg.model.max_correction == 6.0 and cfg.model.correction.search_radius == 4.0
    assert cfg.model.correction.shape_features is True and cfg.run.steps == 2


def test_a_config_file_from_before_the_levers_were_removed_still_reads(captured, tmp_path):
    # a run's config.yaml lists every correction switch, the removed ones unset
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"train": "a.h5"}, "run": {"out": "o"}, "model": {"correction": {
        "search_radius": 4, "context_stride": None, "context": None, "shape_features": None, "integrate": None}}}))
    result = invoke("learn-pol", "--config", config)
    assert result.exit_code == 0, result.output
    assert captured[0].model.correction.search_radius == 4.0


@pytest.mark.parametrize("data, message", [
    ({"model": {"steps": 2}}, "unknown key 'model.steps'"),
    ({"model": {"correction": {"width": 8}}}, "unknown key 'model.correction.width'"),
    ({"steps": 2, "run": {"steps": 3}}, "keys 'steps' and 'run.steps' set the same option"),
    ({"model": {"max_correction": "inf"}}, "positive, finite number of pixels"),
    ({"model": {"correction": {"integrate": True}}}, "integrate=True: --correction-integrate, removed as a lever"),
])
def test_nested_config_errors_name_the_key(data, message, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    result = invoke("learn-pol", "--config", config, "--train", "a.h5", "--out", tmp_path / "o")
    assert result.exit_code == 2 and message in result.output, result.output
