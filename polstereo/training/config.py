"""The options of a training run, by section, and what it returns.

:class:`TrainConfig` is what ``polstereo adapt``, ``learn-pol`` and ``finetune`` fill
from their options (and a test builds directly); :class:`TrainResult` is what
:func:`polstereo.training.trainer.train` returns.

A config is the stage plus five sections: ``data`` (what is trained and validated on, how
it is cut and augmented), ``model`` (what is built or loaded, with the correction
module's switches under ``model.correction`` as :class:`CorrectionConfig` names them),
``optim`` (optimiser, schedule and loss weights), ``mim`` (masked modelling and the EMA
teacher) and ``run`` (length, seed, device, schedule of validations and saves, the
invocation's switches).

Every option also has a *flat name*: its long command-line flag without ``--``, ``-`` as
``_`` (``max_correction``, ``correction_search``, ``model`` for ``model.name``). These were
the keys of the one flat config before the sections, so they are what old checkpoints
and ``config.yaml`` files hold; :meth:`TrainConfig.from_flat` builds a config from them
and :meth:`TrainConfig.flatten` turns either form of a stored dict into them. A switch removed
since (``CorrectionConfig.retired``) may still be in such a dict, unset or at its old default:
:meth:`TrainConfig.without_retired` drops it.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polstereo.errors import PolstereoError
from polstereo.models.correction import CorrectionConfig

SECTIONS = ("data", "model", "optim", "mim", "run")


@dataclass
class DataOptions:
    """What the run trains and validates on, and how samples are cut and augmented."""

    train: list[Path]  # training files (or globs of shards), one mixture entry each
    val: Path | None = None
    dataset_steps: list[int] | None = None  # steps drawn from each training file (default: steps split evenly)
    dataset_order: str = "sequential"
    batch_size: int = 2
    crop_size: tuple[int, int] = (256, 320)  # height, width
    scale_range: tuple[float, float] = (1.0, 1.0)
    vflip_prob: float = 0.0
    photometric: bool = True
    max_disparity: float | None = None  # px: ground truth above it does not count (default: the crop width)
    workers: int = 2
    val_samples: int | None = None


def _switches(config_class: type, name: str) -> type:
    """A dataclass of ``config_class``'s switch fields (metadata ``option``), each None: not asked.

    Generated, so that a switch is declared once, in the model's config.
    """
    fields = [(f.name, f"{f.type} | None", field(default=None, metadata=f.metadata))
              for f in dataclasses.fields(config_class) if "option" in f.metadata]
    doc = (f"The {config_class.__name__} fields a run sets on a new module it builds (None: the module's "
           "default); an existing module's must match.")
    return dataclasses.make_dataclass(name, fields, namespace={"__doc__": doc, "__module__": __name__})


CorrectionOptions = _switches(CorrectionConfig, "CorrectionOptions")


@dataclass
class ModelOptions:
    """What the run starts from and what it changes in the model."""

    name: str = field(default="tiny", metadata={"flat": "model"})  # base size for --init none
    init: str | None = None
    iters: int | None = None  # base refinement iterations (default: the base's)
    # what the base matches (stage A may change it): "intensity", "polarization" (early fusion:
    # intensity + Stokes), "polarization-adapter" (intensity + a zero-initialised adapter's residual) or
    # "polarization-volume" (a gated second correlation volume of polarization features)
    base_input: str | None = None
    max_correction: float | None = None  # px (default: the checkpoint's); the model checks it
    warp_source: str | None = None  # override the stage's pol_diff warp (ablations)
    correction: CorrectionOptions = field(default_factory=CorrectionOptions)  # shape of a new correction module
    new_correction: bool = False  # stage B: a new correction module in place of the --init checkpoint's
    # parameter-name prefixes (whole dotted components, e.g. "base.update") held fixed in this run
    freeze: tuple[str, ...] = ()


@dataclass
class OptimOptions:
    """The optimiser, its schedule and the loss."""

    lr: float | None = None  # peak learning rate (default: the stage's)
    min_lr: float = 0.0
    lr_decay_method: str = "cosine"
    warmup_steps: int = 0
    decay_after_steps: int = 0
    weight_decay: float = 1e-5
    clip_grad_norm: float | None = 1.0
    gamma: float = 0.9
    transparent_weight: float = 1.0
    robust_scale: float | None = None  # px: log-L1 beyond it (losses.robust_error); None = plain L1
    shape_weight: float = 0.0  # weight of the label-free shape-consistency loss (polar/shape.py)
    shape_min_dolp: float = 0.02  # pixels with a lower DoLP do not count in that loss


@dataclass
class MimOptions:
    """Masked image modelling and the EMA teacher's pseudo-disparities."""

    mask_ratio: float = 0.0
    mask_patch: int = 16
    mim_weight: float = 1.0
    ema_decay: float | None = None
    pseudo_weight: float = 1.0


@dataclass
class RunOptions:
    """The run itself: where, how long, on what, and what this invocation does."""

    out: Path
    steps: int = 1000
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    deterministic: bool = False
    val_every: int = 500
    save_every: int = 500
    log_every: int = 10
    feasibility_statistic: str = "mean"
    tensorboard: bool = False
    quiet: bool = False
    resume: bool = False
    force: bool = False
    stop_after: int | None = None  # end the run after this step (time-boxed jobs, interruption tests)


@dataclass(kw_only=True)
class TrainConfig:
    """Every option of a training run, by section (the CLI fills it; tests build it with
    :meth:`from_flat`)."""

    stage: str
    data: DataOptions
    model: ModelOptions = field(default_factory=ModelOptions)
    optim: OptimOptions = field(default_factory=OptimOptions)
    mim: MimOptions = field(default_factory=MimOptions)
    run: RunOptions

    # flat names of the options that belong to one invocation, not to the run a config file repeats
    INVOCATION_ONLY = ("stage", "resume", "stop_after")

    @classmethod
    def from_flat(cls, values: dict[str, Any] | None = None, **options: Any) -> "TrainConfig":
        """A config from options by flat name (``stage``, ``out``, ``train`` required)."""
        values = {**(values or {}), **options}
        unknown = sorted(set(values) - set(FLAT_PATHS))
        if unknown:
            raise TypeError(f"unknown training option(s): {', '.join(unknown)}")
        nested: dict = {}
        for flat, value in values.items():
            *parents, leaf = FLAT_PATHS[flat]
            target = nested
            for key in parents:
                target = target.setdefault(key, {})
            target[leaf] = value
        return _build(cls, nested)

    def flat(self) -> dict[str, Any]:
        """``{flat name: value}``, plain values (as :meth:`plain`)."""
        return self.flatten(self.plain())

    def plain(self, omit: tuple[str, ...] = ()) -> dict:
        """JSON- and weights_only-safe nested dict of the options, without the flat names in ``omit``."""
        return _plain(self, (), {FLAT_PATHS[name] for name in omit})

    @staticmethod
    def flatten(options: dict) -> dict[str, Any]:
        """``{flat name: value}`` of a stored options dict, nested (:meth:`plain`) or flat (checkpoints
        and config files written before the sections); keys it does not know are kept as they are."""
        out: dict[str, Any] = {}

        def walk(values: dict, prefix: tuple[str, ...]) -> None:
            for key, value in values.items():
                path = prefix + (key,)
                if isinstance(value, dict) and path in _GROUPS:
                    walk(value, path)
                else:
                    out[PATH_FLAT.get(path, ".".join(path))] = value

        walk(options, ())
        return out

    @staticmethod
    def without_retired(options: dict) -> dict:
        """A stored options dict (nested, flat, or a config file's mix of both, ``-`` or ``_``)
        without the removed correction switches it holds unset (None) or at their old default;
        PolstereoError, one line, for one set to anything else (a run that used the lever)."""
        def walk(values: dict, prefix: tuple[str, ...]) -> dict:
            out = {}
            for key, value in values.items():
                name = str(key).replace("-", "_")
                gone = (CorrectionConfig.retired.get(name) if prefix == ("model", "correction") else
                        _RETIRED_FLAT.get(name) if prefix in ((), ("model",)) else None)
                if gone is None:
                    out[key] = walk(value, prefix + (name,)) if isinstance(value, dict) else value
                elif value is not None and value != gone.default:
                    raise PolstereoError(gone.refusal("training config", ".".join(prefix + (name,)), value))
            return out

        return walk(options, ())

    @staticmethod
    def flat_fields() -> dict[str, dataclasses.Field]:
        """Every option's field by flat name (the CLI's defaults come from them)."""
        return dict(FLAT_FIELDS)


def _section_types(cls: type) -> dict[str, type]:
    """The fields of dataclass ``cls`` that are dataclasses themselves (sections), by name."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])}


def _leaves(cls: type, prefix: tuple[str, ...] = ()):
    """``(path, field)`` of every option field under ``cls``, sections walked."""
    sections = _section_types(cls)
    for f in dataclasses.fields(cls):
        if f.name in sections:
            yield from _leaves(sections[f.name], prefix + (f.name,))
        else:
            yield prefix + (f.name,), f


def _flat_name(f: dataclasses.Field) -> str:
    if "option" in f.metadata:
        return f.metadata["option"].lstrip("-").replace("-", "_")
    return f.metadata.get("flat", f.name)


def _build(cls: type, values: dict):
    """An instance of ``cls`` from a nested dict (missing sections: their defaults, or from {})."""
    sections = _section_types(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in sections:
            if f.name in values or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING):
                kwargs[f.name] = _build(sections[f.name], values.get(f.name, {}))
        elif f.name in values:
            kwargs[f.name] = values[f.name]
    return cls(**kwargs)


def _plain(obj, prefix: tuple[str, ...], omit: set) -> dict:
    out = {}
    for f in dataclasses.fields(obj):
        path, value = prefix + (f.name,), getattr(obj, f.name)
        if path in omit:
            continue
        if dataclasses.is_dataclass(value):
            out[f.name] = _plain(value, path, omit)
        elif isinstance(value, Path):
            out[f.name] = str(value)
        elif isinstance(value, (list, tuple)):
            out[f.name] = [str(v) if isinstance(v, Path) else v for v in value]
        else:
            out[f.name] = value
    return out


FLAT_FIELDS: dict[str, dataclasses.Field] = {_flat_name(f): f for _, f in _leaves(TrainConfig)}
FLAT_PATHS: dict[str, tuple[str, ...]] = {_flat_name(f): path for path, f in _leaves(TrainConfig)}
PATH_FLAT: dict[tuple[str, ...], str] = {path: flat for flat, path in FLAT_PATHS.items()}
# the paths of sections: ("data",) ... ("model",), ("model", "correction")
_GROUPS = {path[:i] for path in FLAT_PATHS.values() for i in range(1, len(path))}
assert len(FLAT_PATHS) == len(list(_leaves(TrainConfig))), "two options share a flat name"
# the removed correction switches by the flat name their flag had (correction_integrate, ...)
_RETIRED_FLAT = {gone.option.lstrip("-").replace("-", "_"): gone for gone in CorrectionConfig.retired.values()}


@dataclass
class TrainResult:
    """What a run reports: its directory, step counts, last validation, checkpoints and train records."""

    out: Path
    steps_done: int
    skipped_steps: int
    val_metrics: dict | None
    best_score: float | None
    last_checkpoint: Path
    best_checkpoint: Path | None
    feasibility: dict | None = None
    log: list[dict] = field(default_factory=list)
