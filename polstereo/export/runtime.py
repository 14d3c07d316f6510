"""Run an exported polstereo ONNX graph with onnxruntime: no checkpoint, no training stack.

:func:`open_session` loads a file written by ``polstereo export`` and reads its
metadata (every ``metadata_props`` value is a JSON document, see docs/export.md);
:class:`OnnxStereoModel` puts the graph behind the calling convention of
:class:`~polstereo.models.full.PolStereoModel` that ``run_inference`` uses, so
``polstereo infer --onnx`` shares every input, tiling and output path with a checkpoint run.

The graphs pad inside (replicate, bottom/right, to ``pad_multiple``) and crop their
outputs back, so inputs of any height and width go in as they are; except a fixed-size
export (``input_size`` in the metadata, e.g. an S2M2 base), which takes that size only and
refuses any other with a one-line error rather than resizing behind the user's back.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Sequence

import numpy as np
import torch

from polstereo.errors import EXIT_USAGE, PolstereoError
from polstereo.polar.color import to_channels

INSTALL_HINT = "pip install polstereo[export]"
ONNX_FORMAT = "polstereo.onnx"
ONNX_FORMAT_VERSION = 1


def import_optional(name: str, purpose: str):
    """``import name``, or a one-line :class:`PolstereoError` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise PolstereoError(f"{purpose} needs the {name} package, which is not installed; "
                             f"install it with: {INSTALL_HINT}") from None


def providers_for(device: str, available: Sequence[str]) -> list:
    """onnxruntime execution providers for a polstereo ``--device`` (cpu | cuda | cuda:N | auto)."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "auto":
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise PolstereoError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto")
    if "CUDAExecutionProvider" not in available:
        raise PolstereoError(f"device {device!r} requested but this onnxruntime has no CUDA provider "
                             "(install onnxruntime-gpu instead of onnxruntime)")
    return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]


def parse_metadata(props: dict[str, str]) -> dict:
    """``metadata_props`` (JSON text values) -> plain values; raises unless it is a polstereo graph."""
    try:
        meta = {key: json.loads(value) for key, value in props.items()}
    except json.JSONDecodeError:
        meta = {}
    if meta.get("format") != ONNX_FORMAT:
        raise PolstereoError("not an ONNX graph exported by polstereo (no polstereo metadata); "
                             "write one with: polstereo export CHECKPOINT OUT.onnx")
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or version > ONNX_FORMAT_VERSION:
        raise PolstereoError(f"ONNX metadata version {version} is newer than this polstereo reads "
                             f"({ONNX_FORMAT_VERSION}); upgrade polstereo")
    return meta


def open_session(path: str | Path, device: str = "cpu", threads: int | None = None):
    """``(onnxruntime.InferenceSession, metadata dict)`` for a polstereo ONNX file.

    ``threads`` sets onnxruntime's intra-op threads (default: its own choice).
    """
    ort = import_optional("onnxruntime", "running an ONNX graph")
    path = Path(path)
    if not path.is_file():
        raise PolstereoError(f"ONNX file not found: {path}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors reach the user as one PolstereoError line, not a log dump
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), options,
                                       providers=providers_for(device, ort.get_available_providers()))
    except PolstereoError:
        raise
    except Exception as err:  # noqa: BLE001 - any load failure means "not a usable ONNX file"
        raise PolstereoError(f"cannot load {path} as an ONNX graph: {_first_line(err)}") from None
    try:
        meta = parse_metadata(session.get_modelmeta().custom_metadata_map)
    except PolstereoError as err:
        raise PolstereoError(f"{path}: {err}") from None
    return session, meta


def run_session(session, left: np.ndarray, right: np.ndarray) -> dict[str, np.ndarray]:
    """One forward pass: float32 ``left``/``right`` -> ``{output name: array}``."""
    feeds = {"left": np.ascontiguousarray(left, dtype=np.float32),
             "right": np.ascontiguousarray(right, dtype=np.float32)}
    try:
        outputs = session.run(None, feeds)
    except Exception as err:  # noqa: BLE001 - shape/type mismatches come back as one line
        raise PolstereoError(f"onnxruntime failed on inputs of shape {feeds['left'].shape}: "
                             f"{_first_line(err)}") from None
    return {meta.name: value for meta, value in zip(session.get_outputs(), outputs)}


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def _match_channels(images: torch.Tensor, channels: int | None, axis: int) -> torch.Tensor:
    """Mono repeated or RGB to its Rec. 709 luminance along ``axis`` (as ``infer`` and the
    converters do) to the graph's fixed channel count (None = any)."""
    return images if channels is None else to_channels(images, channels, axis)


class OnnxStereoModel:
    """An exported graph behind :class:`~polstereo.models.full.PolStereoModel`'s calling convention.

    - ``model(left, right, angles_deg=None, iters=None, warp_source="pred")`` on angle
      stacks ``(B, A, C, H, W)`` in [0, 1] (a ``full`` graph) -> dict of ``(B, 1, H, W)``
      tensors ``disparity``, ``base_disparity``, ``correction``, ``raw``, ``confidence``;
    - ``model.forward_intensity(left, right)`` on images ``(B, C, H, W)`` in [0, 1] ->
      ``disparity``, ``confidence`` of the base model alone. A ``full`` graph runs it on
      unpolarized stacks (every angle image = the intensity, so S0/2 is the image itself)
      and returns the graph's ``base_disparity``.

    ``correction`` is None for a ``base`` graph and otherwise carries the config fields the
    pipeline reads (``color_channels``, ``saturation_threshold``). Angles and the
    iteration count are fixed in the graph; asking for others is a :class:`PolstereoError`,
    as is an input of another size than ``input_size`` (width, height) of a fixed-size graph.
    """

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None,
                 log: Callable[[str], None] | None = None):
        self.path = Path(path)
        self._log, self._noted = log, False
        self.session, self.metadata = open_session(path, device, threads)
        meta = self.metadata
        self.graph = meta["graph"]
        self.angles_deg = tuple(float(a) for a in meta["angles_deg"])
        self.max_correction = float(meta["max_correction"])
        self.iters = int(meta["iters"])
        size = meta.get("input_size")  # absent in files from before fixed-size exports: dynamic
        self.input_size = None if size is None else (int(size["width"]), int(size["height"]))
        channel_dim = self.session.get_inputs()[0].shape[2 if self.graph == "full" else 1]
        self.channels = channel_dim if isinstance(channel_dim, int) else None
        has_module = (meta.get("model_config") or {}).get("correction") is not None
        self.correction = None
        if self.graph == "full":
            self.correction = SimpleNamespace(config=SimpleNamespace(
                color_channels=self.channels, saturation_threshold=float(meta["saturation_threshold"])))
        # which NO_CORRECTION_NOTES entry explains a base graph to the user
        self.no_correction_note = "onnx_base_only" if has_module else "no_module"

    # the nn.Module calls run_inference makes; the session keeps its own device
    def to(self, device) -> "OnnxStereoModel":
        return self

    def eval(self) -> "OnnxStereoModel":
        return self

    def check_iters(self, iters: int | None) -> None:
        if iters is not None and int(iters) != self.iters:
            raise PolstereoError(f"{self.path.name} was exported with {self.iters} refinement iterations; "
                                 f"re-export with: polstereo export CHECKPOINT OUT.onnx --iters {iters}")

    def check_size(self, image: torch.Tensor) -> None:
        """Refuse an input of another size than a fixed-size graph's ``input_size``."""
        if self.input_size is None:
            return
        height, width = image.shape[-2:]
        if (width, height) != self.input_size:
            w, h = self.input_size
            raise PolstereoError(f"{self.path.name} was exported for {w}x{h} images only (width x height; its base "
                                 f"fixes the size), this input is {width}x{height}: resize or crop the images to "
                                 f"{w}x{h}, or re-export with: polstereo export CHECKPOINT OUT.onnx --input-size "
                                 f"{width} {height}")

    def _run(self, left: torch.Tensor, right: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_size(left)
        device = left.device
        arrays = run_session(self.session, left.detach().float().cpu().numpy(), right.detach().float().cpu().numpy())
        return {name: torch.from_numpy(value).to(device) for name, value in arrays.items()}

    def __call__(self, left: torch.Tensor, right: torch.Tensor, angles_deg: Sequence[float] | None = None,
                 iters: int | None = None, warp_source: str = "pred", **_unused) -> dict[str, torch.Tensor]:
        if self.graph != "full":
            raise PolstereoError(f"{self.path.name} holds the base model alone (exported with --base-only): "
                                 "it takes intensity images, not angle stacks")
        if warp_source != "pred":
            raise PolstereoError("an exported graph warps by the predicted disparity only (warp_source='pred')")
        self.check_iters(iters)
        if angles_deg is not None and not _same_angles(angles_deg, self.angles_deg):
            raise PolstereoError(f"the input's polarizer angles {list(angles_deg)} differ from the angles "
                                 f"{list(self.angles_deg)} fixed in {self.path.name}; re-export from a "
                                 "model with these angles")
        return self._run(_match_channels(left, self.channels, 2), _match_channels(right, self.channels, 2))

    def forward_intensity(self, left: torch.Tensor, right: torch.Tensor, iters: int | None = None,
                          **_unused) -> dict[str, torch.Tensor]:
        self.check_iters(iters)
        if self.graph != "full":
            return self._run(_match_channels(left, self.channels, 1), _match_channels(right, self.channels, 1))

        if self.channels == 1 and left.shape[1] == 3 and self._log is not None and not self._noted:
            self._noted = True
            self._log("note: this ONNX graph takes mono angle stacks, so colour input was converted to its luminance for the "
                      "base model (a checkpoint would see colour); export with --base-only for colour pairs")

        def unpolarized(image: torch.Tensor) -> torch.Tensor:
            image = _match_channels(image, self.channels, 1)
            return image[:, None].expand(-1, len(self.angles_deg), -1, -1, -1)

        out = self._run(unpolarized(left), unpolarized(right))
        return {"disparity": out["base_disparity"], "confidence": out["confidence"]}


def _same_angles(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(float(x), float(y), abs_tol=1e-6) for x, y in zip(a, b))


def load_onnx_model(path: str | Path, device: str = "auto", iters: int | None = None, use_ema: bool = False,
                    amp: str = "auto", threads: int | None = None,
                    log: Callable[[str], None] | None = None) -> OnnxStereoModel:
    """An :class:`OnnxStereoModel` for ``polstereo infer --onnx``; rejects options a graph cannot honour."""
    if use_ema:
        raise PolstereoError("--use-ema chooses weights when exporting (polstereo export --use-ema); "
                             "an ONNX file holds one set of weights", EXIT_USAGE)
    if amp not in ("auto", "off"):
        raise PolstereoError(f"--amp {amp} does not apply to an ONNX graph (it runs in float32)", EXIT_USAGE)
    model = OnnxStereoModel(path, device=device, threads=threads, log=log)
    model.check_iters(iters)
    return model


__all__ = ["OnnxStereoModel", "load_onnx_model", "open_session", "run_session", "parse_metadata",
           "providers_for", "import_optional", "INSTALL_HINT", "ONNX_FORMAT", "ONNX_FORMAT_VERSION"]
