"""Export a polstereo model to ONNX, with its metadata, checked against PyTorch in onnxruntime.

Two graphs (:data:`GRAPHS`), both with dynamic batch, height and width (unless exported
at a fixed size, see below):

- ``full``: angle stacks ``left``, ``right`` ``(B, A, C, H, W)`` in [0, 1] -> the base
  model on S0/2, the polarization correction fed with the *predicted*-disparity warp
  (as at inference), ``disparity``, ``base_disparity``, ``correction``, ``raw``,
  ``confidence``, each ``(B, 1, H, W)``;
- ``base``: intensity images ``(B, C, H, W)`` in [0, 1], C = 1 or 3 -> the base model
  alone, ``disparity``, ``confidence``.

Padding is part of the graph: inputs of any size are replicate-padded at the bottom and
right to a multiple of ``pad_multiple`` and the outputs cropped back, exactly as in
PyTorch. The refinement loop is unrolled ``iters`` times (recorded in the metadata).

Fixed size: a base whose own code turns the input size into constants when traced
(``export_fixed_size``; the official S2M2) is exported for one ``input_size`` (width,
height) only, which the metadata records and the runtime enforces; without one, export
refuses. Any model may be exported at a fixed size; built-in ones default to dynamic.

The file is written atomically and only after the parity check passed: onnxruntime and
PyTorch run the same random input at two sizes (neither the traced one) and every
output except ``raw`` must agree within ``tolerance`` (1e-3 px by default; float32
reordering gives ~1e-5). A trace that baked a size into the graph fails here. A
fixed-size export is checked at its own size, with batches and inputs other than the traced.
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
from polstereo.data.h5.schema import FORMAT_VERSION as H5_FORMAT_VERSION
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
MIN_INPUT_SIZE = 16  # pixels, each side of a fixed --input-size
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
    ``input_size`` (width, height) exports at that fixed size: the graph takes no other, and
    the trace and checks keep only their batch sizes. None = dynamic sizes, which a base
    that traces its size into constants (S2M2) cannot give.
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
    input_size: tuple[int, int] | None = None

    def check(self) -> None:
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise PolstereoError(f"--opset must be between {MIN_OPSET} and {MAX_OPSET}, got {self.opset}")
        if self.iters is not None and self.iters < 1:
            raise PolstereoError(f"--iters must be at least 1, got {self.iters}")
        if not self.tolerance > 0:
            raise PolstereoError(f"the parity tolerance must be positive, got {self.tolerance}")
        if len(self.check_sizes) < 1:
            raise PolstereoError("the parity check needs at least one input size")
        if self.input_size is not None:
            if len(self.input_size) != 2 or min(self.input_size) < MIN_INPUT_SIZE:
                raise PolstereoError(f"--input-size must be a width and a height of at least {MIN_INPUT_SIZE} pixels, "
                                     f"got {' '.join(map(str, self.input_size))}")

    def traced_sizes(self) -> tuple[tuple[int, int, int], tuple[tuple[int, int, int], ...]]:
        """``(trace size, check sizes)`` as (batch, height, width); a fixed ``input_size`` replaces H, W."""
        if self.input_size is None:
            return self.trace_size, tuple(self.check_sizes)
        width, height = self.input_size
        return (self.trace_size[0], height, width), tuple((batch, height, width) for batch, _, _ in self.check_sizes)


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
        if out["correction"] is None:  # a stage A model whose base sees polarization: no correction
            zero = torch.zeros_like(out["disparity"])
            out = {**out, "correction": zero, "raw": zero}
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


def needs_fixed_size(model: nn.Module) -> bool:
    """Whether the model's base traces its input size into constants (``export_fixed_size``: S2M2)."""
    return bool(getattr(model.base, "export_fixed_size", False))


def graph_kind(model: nn.Module, base_only: bool) -> str:
    """``base`` when asked for, or for a stage A model (no correction module) whose base sees the
    intensity alone; ``full`` otherwise: a base that sees polarization (early fusion, adapter,
    polarization volume) needs the angle stacks, and without a correction module its
    ``correction`` and ``raw`` are zero."""
    return "full" if not base_only and (model.correction is not None or model.base_input != "intensity") else "base"


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
def _export_graph(graph: nn.Module, example, path: Path, kind: str, opset: int, fixed_size: bool = False) -> None:
    """Trace ``graph`` on ``example`` with the TorchScript-based ``torch.onnx.export``.

    ``fixed_size``: height and width are static in the graph (only batch, and the base
    graph's channels, stay dynamic).

    Why this exporter: tracing records shape arithmetic as graph operations, so the
    in-graph padding, the unrolled refinement loop and the warp stay dynamic in batch,
    height and width. The ``torch.export``-based exporter cannot prove the crop bounds
    of the padding for arbitrary sizes, and ``chunk`` over the doubled batch in the base
    encoder makes it specialise the batch (see docs/export.md).
    """
    spec = GRAPHS[kind]
    spatial = ("height", "width")
    input_axes = {axis: name for axis, name in spec.dynamic_input_axes.items()
                  if not (fixed_size and name in spatial)}
    output_axes = {0: "batch"} if fixed_size else {0: "batch", 2: "height", 3: "width"}
    try:
        with warnings.catch_warnings():
            # TracerWarnings about Python values taken as constants and the exporter's
            # deprecation notice: the parity check at other sizes is what tells whether the
            # trace generalises, so here they would only be noise.
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, example, str(path), dynamo=False, opset_version=opset,
                              input_names=["left", "right"], output_names=list(spec.outputs),
                              dynamic_axes={"left": input_axes, "right": input_axes,
                                            **{name: output_axes for name in spec.outputs}})
    except OSError:
        raise  # the disk, not the exporter: export_onnx names the output file
    except Exception as err:  # noqa: BLE001 - exporter internals raise anything
        text = str(err).strip().splitlines()
        raise PolstereoError(f"ONNX export failed: {type(err).__name__}: {text[0][:300] if text else ''}") from None


# ---------------------------------------------------------------------------- metadata
def model_name(config: dict) -> str:
    """``tiny`` / ``small`` / ``base``, ``s2m2-S`` ..., or ``custom`` (a built-in base of no named size)."""
    from polstereo.models.registry import base_name

    return base_name(config.get("base") or {})


def build_metadata(model: nn.Module, kind: str, iters: int, opset: int, source: dict,
                   input_size: tuple[int, int] | None = None) -> dict[str, str]:
    """The ``metadata_props`` of an exported graph: key -> JSON text (see docs/export.md).

    ``input_size`` (width, height) of a fixed-size export, else None (dynamic sizes).
    """
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
        "input_size": None if input_size is None else {"width": input_size[0], "height": input_size[1]},
        "padding": "inside the graph: replicate at the bottom/right to a multiple of pad_multiple, outputs "
                   "cropped back; " + ("inputs of any height and width" if input_size is None else
                                       f"inputs of exactly {input_size[0]}x{input_size[1]} (width x height) only"),
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
    size = json.loads(metadata["input_size"])
    input_doc = spec.input_doc if size is None else spec.input_doc.replace(
        "any H, W", f"H = {size['height']}, W = {size['width']} only (a fixed-size export)")
    for value in proto.graph.input:
        value.doc_string = f"{value.name} view: {input_doc}"
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
        from polstereo.models.files import load_for_inference

        model, payload = load_for_inference(config.checkpoint, use_ema=config.use_ema, map_location="cpu")
        source.update(checkpoint=Path(config.checkpoint).name, stage=payload.get("stage"), step=payload.get("step"))
    model = _prepare(model)
    kind = graph_kind(model, config.base_only)
    if kind == "base" and not config.base_only:
        log("note: the model has no polarization correction module (a stage A model): exporting the base "
            "model alone, on intensity images (as --base-only)")
    elif kind == "base" and model.base_input != "intensity":
        log(f"note: --base-only: the base sees polarization ({model.base_input}); the base graph gives it "
            "ordinary images as unpolarized light")
    if needs_fixed_size(model) and config.input_size is None:
        from polstereo.models.registry import model_config

        raise PolstereoError(f"the {model_name(model_config(model))} base traces the image size into the graph, so "
                             "it exports at one fixed size: pass --input-size W H (the size of the images it will "
                             "run on)")
    iters = config.iters if config.iters is not None else default_iters(model)
    graph = (FullGraph if kind == "full" else BaseGraph)(model, iters)
    trace_size, check_sizes = config.traced_sizes()
    input_size = None if config.input_size is None else tuple(int(v) for v in config.input_size)
    example = example_inputs(model, kind, trace_size, channels=1 if kind == "base" else None)
    # Run eagerly before tracing: a model that cannot run fails with its own error, and cached
    # constants (the Stokes matrix) are created outside the trace.
    _reference_outputs(graph, *example)

    out = Path(config.out)
    try:
        return _write_checked(model, graph, example, out, kind, config, iters, source, input_size, check_sizes,
                              started)
    except OSError as err:  # a full or read-only disk while writing or checking the graph
        reason = err.strerror or type(err).__name__
        raise PolstereoError(f"{out}: cannot write the ONNX file ({reason}); nothing was left under that name") \
            from None


def _write_checked(model, graph, example, out: Path, kind: str, config: ExportConfig, iters, source, input_size,
                   check_sizes, started: float) -> dict:
    """Export, annotate and parity-check the graph under a temporary name; rename it to ``out`` if it passes."""
    with atomic_path(out) as tmp:
        _export_graph(graph, example, tmp, kind, config.opset, fixed_size=input_size is not None)
        metadata = build_metadata(model, kind, iters, config.opset, source, input_size)
        _annotate(tmp, kind, metadata)
        session, _ = open_session(tmp, "cpu", threads=torch.get_num_threads())
        parity = parity_check(graph, session, check_sizes, config.tolerance)
        report = {
            "onnx": str(out), "graph": kind, "opset": config.opset, "iters": iters,
            "input_size": None if input_size is None else list(input_size),
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
           "build_metadata", "example_inputs", "graph_kind", "needs_fixed_size", "DEFAULT_OPSET", "MAX_OPSET",
           "PARITY_TOLERANCE_PX", "CHECK_SIZES", "TRACE_SIZE"]
