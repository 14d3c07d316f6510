"""Export a polstereo model to ONNX, with its metadata, checked against PyTorch in onnxruntime.

Two graphs (:data:`GRAPHS`), both with dynamic batch, height and width:

- ``full``: angle stacks ``left``, ``right`` ``(B, A, C, H, W)`` in [0, 1] -> the base
  model on S0/2, the polarization correction fed with the *predicted*-disparity warp
  (as at inference), ``disparity``, ``base_disparity``, ``correction``, ``raw``,
  ``confidence``, each ``(B, 1, H, W)``;
- ``base``: intensity images ``(B, C, H, W)`` in [0, 1], C = 1 or 3 -> the base model
  alone, ``disparity``, ``confidence``.

Padding is part of the graph: inputs of any size are replicate-padded at the bottom and
right to a multiple of ``pad_multiple`` and the outputs cropped back, exactly as in
PyTorch. The refinement loop is unrolled ``iters`` times (recorded in the metadata).

The file is written atomically and only after the parity check passed: onnxruntime and
PyTorch run the same random input at two sizes (neither the traced one) and every
output except ``raw`` must agree within ``tolerance`` (1e-3 px by default; float32
reordering gives ~1e-5). A trace that baked a size into the graph fails here.
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from polstereo import __version__
from polstereo.data.h5format import FORMAT_VERSION as H5_FORMAT_VERSION
from polstereo.errors import PolstereoError
from polstereo.export.runtime import ONNX_FORMAT, ONNX_FORMAT_VERSION, import_optional, open_session, run_session
from polstereo.io.atomic import atomic_path
from polstereo.polar.stokes import angles_from_stokes

DEFAULT_OPSET = 18
MIN_OPSET = 18
MAX_OPSET = 20  # the newest opset torch's TorchScript-based exporter writes
PARITY_TOLERANCE_PX = 1e-3
# (batch, height, width): traced at one size, checked at two others, none multiples of
# 32 in both directions, so in-graph padding, dynamic batch and the warp are all exercised.
TRACE_SIZE = (2, 64, 96)
CHECK_SIZES = ((1, 72, 112), (3, 40, 136))
# Outputs whose PyTorch/onnxruntime difference the parity check bounds. ``raw`` is left
# out: where tanh saturates, large raw differences change nothing downstream.
UNCHECKED_OUTPUTS = ("raw",)


@dataclass(frozen=True)
class GraphSpec:
    """One exportable graph: input layout and documentation, output names and documentation."""

    input_layout: str
    input_doc: str
    outputs: dict[str, str]
    dynamic_input_axes: dict[int, str]


_MAP = "(B, 1, H, W) float32"
GRAPHS: dict[str, GraphSpec] = {
    "full": GraphSpec(
        input_layout="(B, A, C, H, W)",
        input_doc="polarizer-angle stack (B, A, C, H, W) float32 in [0, 1]; A angles in the order of the "
                  "angles_deg metadata, C colour channels (see the channels metadata); any H, W",
        outputs={
            "disparity": f"{_MAP}: final disparity = max(base_disparity + correction, 0), pixels of the left "
                         "image; left x matches right x - d",
            "base_disparity": f"{_MAP}: the base model's disparity, pixels",
            "correction": f"{_MAP}: max_correction * tanh(raw), pixels",
            "raw": f"{_MAP}: the correction module's output before tanh (saturation: |tanh(raw)| near 1)",
            "confidence": f"{_MAP}: the base model's matching confidence in [0, 1]",
        },
        dynamic_input_axes={0: "batch", 3: "height", 4: "width"}),
    "base": GraphSpec(
        input_layout="(B, C, H, W)",
        input_doc="intensity image (B, C, H, W) float32 in [0, 1], C = 1 (mono) or 3 (RGB); any H, W",
        outputs={
            "disparity": f"{_MAP}: the base model's disparity, pixels of the left image; left x matches "
                         "right x - d",
            "confidence": f"{_MAP}: the base model's matching confidence in [0, 1]",
        },
        dynamic_input_axes={0: "batch", 1: "channels", 2: "height", 3: "width"}),
}


@dataclass
class ExportConfig:
    """Everything ``polstereo export`` needs; the CLI fills it from its options.

    ``iters`` None = the model's default; ``trace_size``/``check_sizes`` are
    (batch, height, width) of the traced input and of the parity-check inputs.
    """

    checkpoint: str | Path | None
    out: str | Path
    base_only: bool = False
    opset: int = DEFAULT_OPSET
    iters: int | None = None
    use_ema: bool = False
    tolerance: float = PARITY_TOLERANCE_PX
    trace_size: tuple[int, int, int] = TRACE_SIZE
    check_sizes: tuple[tuple[int, int, int], ...] = CHECK_SIZES

    def check(self) -> None:
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise PolstereoError(f"--opset must be between {MIN_OPSET} and {MAX_OPSET}, got {self.opset}")
        if self.iters is not None and self.iters < 1:
            raise PolstereoError(f"--iters must be at least 1, got {self.iters}")
        if not self.tolerance > 0:
            raise PolstereoError(f"the parity tolerance must be positive, got {self.tolerance}")
        if len(self.check_sizes) < 1:
            raise PolstereoError("the parity check needs at least one input size")


class ParityError(PolstereoError):
    """onnxruntime and PyTorch disagree beyond the tolerance; ``report`` holds the measurements."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


# ---------------------------------------------------------------------------- graphs
class FullGraph(nn.Module):
    """:class:`PolStereoModel` at inference as a tuple-returning module (what exporters trace)."""

    def __init__(self, model: nn.Module, iters: int | None):
        super().__init__()
        self.model, self.iters = model, iters

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(left, right, warp_source="pred", iters=self.iters, all_estimates=False)
        return tuple(out[name] for name in GRAPHS["full"].outputs)


class BaseGraph(nn.Module):
    """The base model alone on intensity images, mono or RGB in one graph.

    Traced with a mono input, the explicit ``expand`` becomes a broadcast that passes
    3-channel input through unchanged, so one graph takes both.
    """

    def __init__(self, model: nn.Module, iters: int | None):
        super().__init__()
        self.model, self.iters = model, iters

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model.forward_intensity(left.expand(-1, 3, -1, -1), right.expand(-1, 3, -1, -1),
                                           iters=self.iters, all_estimates=False)
        return tuple(out[name] for name in GRAPHS["base"].outputs)


def graph_kind(model: nn.Module, base_only: bool) -> str:
    """``base`` when asked for, or when the model has no correction module (a stage A model)."""
    return "base" if base_only or getattr(model, "correction", None) is None else "full"


def default_iters(model: nn.Module) -> int | None:
    """The base model's default refinement iteration count (built-in ``config.iters``, S2M2 ``refine_iter``)."""
    base = model.base
    value = getattr(getattr(base, "config", None), "iters", None)
    return value if value is not None else getattr(base, "refine_iter", None)


def _stack_channels(model: nn.Module) -> int:
    return model.correction.config.color_channels if model.correction is not None else 1


def example_inputs(model: nn.Module, kind: str, size: tuple[int, int, int], channels: int | None = None,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random pair: the right view is the left one shifted by a few pixels.

    ``full``: physically valid angle stacks (from Stokes with DoLP <= 0.5) ``(B, A, C, H, W)``;
    ``base``: intensity images ``(B, C, H, W)``. Values in [0, 1].
    """
    batch, height, width = size
    generator = torch.Generator().manual_seed(seed)

    def uniform(*shape, low=0.0, high=1.0):
        return low + (high - low) * torch.rand(*shape, generator=generator)

    if kind == "full":
        c = channels or _stack_channels(model)
        s0 = uniform(batch, 1, c, height, width, low=0.1, high=0.9)
        degree, angle = uniform(batch, 1, c, height, width, high=0.5), uniform(batch, 1, c, height, width,
                                                                               high=math.pi)
        stokes = torch.cat([s0, s0 * degree * torch.cos(2 * angle), s0 * degree * torch.sin(2 * angle)], dim=1)
        left = angles_from_stokes(stokes, model.angles_deg, axis=1).clamp(0.0, 1.0)
    else:
        left = uniform(batch, channels or 1, height, width)
    shift = max(1, width // 16)
    right = torch.roll(left, -shift, dims=-1)
    return left.contiguous(), right.contiguous()


# ---------------------------------------------------------------------------- exporter
def _export_graph(graph: nn.Module, example, path: Path, kind: str, opset: int) -> None:
    """Trace ``graph`` on ``example`` with the TorchScript-based ``torch.onnx.export``.

    Why this exporter: tracing records shape arithmetic as graph operations, so the
    in-graph padding, the unrolled refinement loop and the warp stay dynamic in batch,
    height and width. The ``torch.export``-based exporter cannot prove the crop bounds
    of the padding for arbitrary sizes, and ``chunk`` over the doubled batch in the base
    encoder makes it specialise the batch (see docs/export.md).
    """
    spec = GRAPHS[kind]
    output_axes = {0: "batch", 2: "height", 3: "width"}
    try:
        with warnings.catch_warnings():
            # TracerWarnings about Python values taken as constants and the exporter's
            # deprecation notice: the parity check at other sizes is what tells whether the
            # trace generalises, so here they would only be noise.
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, example, str(path), dynamo=False, opset_version=opset,
                              input_names=["left", "right"], output_names=list(spec.outputs),
                              dynamic_axes={"left": spec.dynamic_input_axes, "right": spec.dynamic_input_axes,
                                            **{name: output_axes for name in spec.outputs}})
    except Exception as err:  # noqa: BLE001 - exporter internals raise anything
        text = str(err).strip().splitlines()
        raise PolstereoError(f"ONNX export failed: {type(err).__name__}: {text[0][:300] if text else ''}") from None


# ---------------------------------------------------------------------------- metadata
def model_name(config: dict) -> str:
    """``tiny`` / ``small`` / ``base``, ``s2m2-S`` ..., or ``custom`` (a built-in base of no named size)."""
    base = config.get("base") or {}
    if base.get("kind") == "s2m2":
        return f"s2m2-{base.get('size', 'S')}"
    return base.get("name") or "custom"


def build_metadata(model: nn.Module, kind: str, iters: int, opset: int, source: dict) -> dict[str, str]:
    """The ``metadata_props`` of an exported graph: key -> JSON text (see docs/export.md)."""
    from polstereo.models.registry import model_config

    config = model_config(model)
    pad_multiple = getattr(getattr(model.base, "config", None), "pad_multiple", 32)
    values = {
        "format": ONNX_FORMAT,
        "format_version": ONNX_FORMAT_VERSION,
        "graph": kind,
        "model_name": model_name(config),
        "model_config": config,
        "max_correction": model.max_correction,
        "saturation_threshold": (model.correction.config.saturation_threshold
                                 if model.correction is not None else None),
        "angles_deg": list(model.angles_deg),
        "channels": [_stack_channels(model)] if kind == "full" else [1, 3],
        "input_layout": GRAPHS[kind].input_layout,
        "input_range": [0.0, 1.0],
        "outputs": list(GRAPHS[kind].outputs),
        "pad_multiple": pad_multiple,
        "padding": "inside the graph: replicate at the bottom/right to a multiple of pad_multiple, outputs "
                   "cropped back; inputs of any height and width",
        "disparity_convention": "pixels of the left image, >= 0; left pixel x matches right pixel x - d",
        "iters": iters,
        "polstereo_version": __version__,
        "h5_format_version": H5_FORMAT_VERSION,
        "opset": opset,
        "torch_version": torch.__version__,
        "source": source,
    }
    return {key: json.dumps(value) for key, value in values.items()}


def _annotate(path: Path, kind: str, metadata: dict[str, str]) -> None:
    """Write metadata and input/output documentation into the ONNX file at ``path``."""
    onnx = import_optional("onnx", "ONNX export")
    proto = onnx.load(str(path))
    spec = GRAPHS[kind]
    for value in proto.graph.input:
        value.doc_string = f"{value.name} view: {spec.input_doc}"
    for value in proto.graph.output:
        value.doc_string = spec.outputs.get(value.name, "")
    proto.doc_string = (f"polstereo {kind} graph ({metadata['model_name']}): stereo disparity from "
                        f"{'polarizer-angle stacks' if kind == 'full' else 'intensity images'}; see metadata_props")
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, **metadata})
    onnx.save(proto, str(path))


# ---------------------------------------------------------------------------- parity
def _reference_outputs(graph: nn.Module, left: torch.Tensor, right: torch.Tensor) -> dict[str, torch.Tensor]:
    """PyTorch outputs of ``graph`` (the model itself, eager) by output name."""
    with torch.inference_mode():
        values = graph(left, right)
    return dict(zip(GRAPHS[graph_name(graph)].outputs, values))


def graph_name(graph: nn.Module) -> str:
    return "full" if isinstance(graph, FullGraph) else "base"


def parity_check(graph: nn.Module, session, check_sizes, tolerance: float) -> dict:
    """Largest |onnxruntime - PyTorch| per output at each size; ``passed`` when all are within ``tolerance``.

    For the base graph the second size runs with RGB input (the first with mono), so both
    channel counts are checked.
    """
    kind = graph_name(graph)
    model = graph.model
    runs, worst = [], {"value": 0.0, "output": None, "size": None}
    for index, size in enumerate(check_sizes):
        channels = (1 if index % 2 == 0 else 3) if kind == "base" else None
        left, right = example_inputs(model, kind, size, channels, seed=index + 1)
        reference = _reference_outputs(graph, left, right)
        actual = run_session(session, left.numpy(), right.numpy())
        diffs = {}
        for name, expected in reference.items():
            got = torch.from_numpy(actual[name])
            diff = (got - expected).abs().max().item() if got.shape == expected.shape else math.inf
            # None (JSON null) = a shape mismatch or a non-finite value: fails any tolerance
            diffs[name] = diff if math.isfinite(diff) else None
            if name not in UNCHECKED_OUTPUTS and (diffs[name] is None or diff > worst["value"]):
                worst = {"value": diffs[name], "output": name, "size": list(left.shape)}
            if worst["value"] is None:
                break
        runs.append({"input_shape": list(left.shape), "max_abs_diff": diffs})
        if worst["value"] is None:
            break
    disparity_diffs = [r["max_abs_diff"].get("disparity") for r in runs]
    return {"tolerance": tolerance, "runs": runs,
            "max_disparity_diff_px": None if None in disparity_diffs else max(disparity_diffs),
            "worst": worst, "passed": worst["value"] is not None and worst["value"] <= tolerance}


# ---------------------------------------------------------------------------- entry point
def _prepare(model: nn.Module) -> nn.Module:
    # A private CPU copy in eval mode: export must not move or re-mode the caller's model.
    model = copy.deepcopy(model).cpu().eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def export_onnx(config: ExportConfig, model: nn.Module | None = None, log: Callable[[str], None] = print) -> dict:
    """Export ``config.checkpoint`` (or ``model``) to ``config.out``; returns the report.

    The report holds the graph kind, opset, iters, the metadata, input/output
    names and the parity check. Raises :class:`ParityError` (no file written) when
    onnxruntime and PyTorch disagree beyond ``config.tolerance``.
    """
    config.check()
    import_optional("onnx", "ONNX export")
    import_optional("onnxruntime", "the ONNX parity check")
    started = time.perf_counter()
    source = {"checkpoint": None, "stage": None, "step": None, "use_ema": bool(config.use_ema)}
    if model is None:
        if config.checkpoint is None:
            raise PolstereoError("give a checkpoint to export")
        from polstereo.training.checkpoint import load_for_inference

        model, payload = load_for_inference(config.checkpoint, use_ema=config.use_ema, map_location="cpu")
        source.update(checkpoint=Path(config.checkpoint).name, stage=payload.get("stage"), step=payload.get("step"))
    model = _prepare(model)
    kind = graph_kind(model, config.base_only)
    if kind == "base" and not config.base_only:
        log("note: the model has no polarization correction module (a stage A model): exporting the base "
            "model alone, on intensity images (as --base-only)")
    iters = config.iters if config.iters is not None else default_iters(model)
    graph = (FullGraph if kind == "full" else BaseGraph)(model, iters)
    example = example_inputs(model, kind, config.trace_size, channels=1 if kind == "base" else None)
    # Run eagerly before tracing: a model that cannot run fails with its own error, and cached
    # constants (the Stokes matrix) are created outside the trace.
    _reference_outputs(graph, *example)

    out = Path(config.out)
    with atomic_path(out) as tmp:
        _export_graph(graph, example, tmp, kind, config.opset)
        metadata = build_metadata(model, kind, iters, config.opset, source)
        _annotate(tmp, kind, metadata)
        session, _ = open_session(tmp, "cpu", threads=torch.get_num_threads())
        parity = parity_check(graph, session, config.check_sizes, config.tolerance)
        report = {
            "onnx": str(out), "graph": kind, "opset": config.opset, "iters": iters,
            "inputs": {i.name: i.shape for i in session.get_inputs()},
            "outputs": [o.name for o in session.get_outputs()],
            "metadata": {key: json.loads(value) for key, value in metadata.items()},
            "parity": parity,
        }
        if not parity["passed"]:
            worst = parity["worst"]
            by = "a non-finite or misshaped value" if worst["value"] is None else f"{worst['value']:.3g}"
            raise ParityError(
                f"ONNX parity check failed: {worst['output']} differs from PyTorch by {by} at "
                f"input shape {'x'.join(map(str, worst['size']))} (tolerance {config.tolerance:g}); no file "
                f"written", report)
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report


__all__ = ["ExportConfig", "export_onnx", "ParityError", "GRAPHS", "FullGraph", "BaseGraph", "parity_check",
           "build_metadata", "example_inputs", "graph_kind", "DEFAULT_OPSET", "MAX_OPSET", "PARITY_TOLERANCE_PX",
           "CHECK_SIZES", "TRACE_SIZE"]
