"""Inference on captured pairs: the library behind ``polstereo infer``.

``run_inference(InferConfig(...))`` finds the pairs (:mod:`polstereo.inference.inputs`),
optionally rectifies them with a calibration, runs the model (downscaled and/or in row
bands, :mod:`polstereo.inference.tiling`) and writes, per pair, into ``out/<name>/``:

==========================  =============================================================
``disparity.pfm|npy|png``   disparity, pixels of the (rectified) left image (one per format)
``disparity_color.png``     turbo colourisation, per-image or fixed range
``correction.npy``          correction added to the base disparity, pixels (polarized runs)
``correction_color.png``    the correction on a diverging map over ±max_correction
``confidence.png``          the base model's matching confidence, 0-255
``dolp.png``                DoLP as grey (polarized inputs)
``aolp.png``                AoLP as hue
``aolp_dolp.png``           AoLP as hue, DoLP as value
``depth.pfm|npy``           depth in the baseline's unit (with a camera: --calib or HDF5 data)
``points.ply``              coloured point cloud of valid pixels (``ply``)
``left|right_rectified.png``  the rectified intensity images the outputs align with
==========================  =============================================================

Every file is written atomically. The returned list holds one summary dict per pair
(and the arrays under ``"arrays"`` when ``keep_arrays``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from polstereo.errors import EXIT_USAGE, PolstereoError
from polstereo.inference.inputs import InputSpec, StereoPair, resolve_inputs
from polstereo.inference.tiling import run_downscaled, run_in_row_bands
from polstereo.io.calibration import Calibration, RectifiedCamera, StereoCalibration, load_calibration
from polstereo.io.images import write_disparity, write_image, write_npy
from polstereo.io.pointcloud import point_cloud, write_ply
from polstereo.io.visualise import (aolp_to_rgb, correction_to_rgb, disparity_to_rgb, image_to_rgb, image_to_uint8,
                                    unit_to_gray)
from polstereo.models.correction import saturation_fraction
from polstereo.polar.color import luma, to_channels
from polstereo.polar.features import intensity_image
from polstereo.polar.stokes import aolp, dolp, stokes_from_angles

# --format name -> file suffix (png16: value = disparity * 256, 0 = invalid)
DISPARITY_FORMATS: dict[str, str] = {"pfm": ".pfm", "npy": ".npy", "png16": ".png"}
DEPTH_FORMATS = ("pfm", "npy")
MAP_KEYS = ("disparity", "base_disparity", "correction", "raw", "confidence")
DISPARITY_KEYS = ("disparity", "base_disparity", "correction")  # scale with the image width

# Why no polarization correction was applied -> the one line the user reads about it.
NO_CORRECTION_NOTES: dict[str, str] = {
    "ordinary": "ordinary (non-polarized) input: the base model ran alone, no polarization correction was applied",
    "use_base_only": "--use-base-only: the base model ran alone, no polarization correction was applied",
    "no_module": "the checkpoint has no polarization correction module (a stage A model): the base model ran "
                 "alone, no polarization correction was applied",
    "onnx_base_only": "the ONNX graph holds the base model alone (exported with --base-only): it ran on the "
                      "intensity images, no polarization correction was applied",
}


@dataclass(frozen=True, kw_only=True)
class InferConfig(InputSpec):
    """Everything ``polstereo infer`` needs; the CLI fills it from its options.

    Inputs, the fields of :class:`InputSpec`: ``left``/``right`` (files, directories, globs
    or ``{angle}`` patterns) with ``mosaic`` (raw sensor layout), ``bit_depth`` and
    ``angles_deg``; or ``data`` (HDF5).
    Memory: ``max_size`` (long side, pixels) and ``tile_rows``/``tile_overlap`` (row bands
    of the image the model sees, after any downscaling).
    Model: ``checkpoint``, or ``onnx`` (a graph from ``polstereo export``, run by onnxruntime;
    a ``checkpoint`` ending in ``.onnx`` counts as one); give exactly one.
    """

    checkpoint: str | Path | None
    out: str | Path
    calib: str | Path | None = None
    formats: tuple[str, ...] = ("pfm",)
    ply: bool = False
    vis_range: tuple[float, float] | None = None
    device: str = "auto"
    amp: str = "auto"
    iters: int | None = None
    use_base_only: bool = False
    use_ema: bool = False
    max_size: int | None = None
    tile_rows: int | None = None
    tile_overlap: int = 32
    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "auto"  # auto: reduce-overhead (CUDA graphs) on GPUs, default elsewhere
    progress: bool = False
    keep_arrays: bool = True
    onnx: str | Path | None = None

    def onnx_file(self) -> Path | None:
        """The ONNX graph to run: ``onnx``, or a ``checkpoint`` whose name ends in ``.onnx``; else None."""
        if self.onnx is not None:
            return Path(self.onnx)
        if self.checkpoint is not None and Path(self.checkpoint).suffix.lower() == ".onnx":
            return Path(self.checkpoint)
        return None

    def input_spec(self) -> InputSpec:
        """The inputs alone, paths as text and angles as floats."""
        text = lambda v: None if v is None else str(v)  # noqa: E731
        return InputSpec(left=text(self.left), right=text(self.right), data=text(self.data), mosaic=self.mosaic,
                         bit_depth=self.bit_depth, angles_deg=tuple(float(a) for a in self.angles_deg))

    def check(self) -> None:
        """Raise :class:`PolstereoError` for option values that cannot work."""
        unknown = sorted(set(self.formats) - set(DISPARITY_FORMATS))
        if unknown or not self.formats:
            raise PolstereoError(f"unknown disparity format(s) {', '.join(unknown) or '(none given)'}; "
                                 f"use {', '.join(DISPARITY_FORMATS)}")
        if self.max_size is not None and self.max_size < 16:
            raise PolstereoError(f"--max-size must be at least 16 pixels, got {self.max_size}")
        if self.tile_rows is not None:
            if self.tile_rows < 8:
                raise PolstereoError(f"--tile must be at least 8 rows, got {self.tile_rows}")
            if not 0 <= self.tile_overlap < self.tile_rows:
                raise PolstereoError(f"--tile-overlap must be between 0 and {self.tile_rows - 1} "
                                     f"(the band height - 1), got {self.tile_overlap}")
        if self.vis_range is not None and not self.vis_range[0] < self.vis_range[1]:
            raise PolstereoError(f"--vis-range needs MIN < MAX, got {self.vis_range[0]} {self.vis_range[1]}")
        if self.compile_mode not in COMPILE_MODES:
            raise PolstereoError(f"unknown --compile-mode {self.compile_mode!r}; use {', '.join(COMPILE_MODES)}",
                                 EXIT_USAGE)
        if self.iters is not None and self.iters < 1:
            raise PolstereoError(f"--iters must be at least 1, got {self.iters}")
        if (self.compile or self.channels_last) and self.onnx_file() is not None:
            raise PolstereoError("--compile and --channels-last apply to PyTorch checkpoints, not ONNX graphs",
                                 EXIT_USAGE)


# ---------------------------------------------------------------------------- model running
COMPILE_BACKEND_ENV = "POLSTEREO_COMPILE_BACKEND"
COMPILE_MODES = ("auto", "default", "reduce-overhead", "max-autotune")


def compile_mode_for(mode: str, device: torch.device) -> str:
    """``--compile-mode auto``: CUDA graphs (reduce-overhead) on GPUs (docs/results.md: 52 -> 5.6 ms
    for small with correction at 1216x1024 on an H100); default elsewhere."""
    if mode == "auto":
        return "reduce-overhead" if device.type == "cuda" else "default"
    return mode


class _CudaGraphCalls:
    """Calls a model compiled with CUDA graphs (reduce-overhead, max-autotune) so that its
    outputs outlive the next call.

    CUDA-graph replays write into the same output memory each time; tiling and a pipeline
    that holds a result while it runs the next pair would read overwritten tensors. Each
    call marks a new step and clones the outputs. Other attributes reach the model.
    """

    def __init__(self, compiled):
        self._compiled = compiled

    def __call__(self, *args, **kwargs):
        torch.compiler.cudagraph_mark_step_begin()
        return _cloned(self._compiled(*args, **kwargs))

    def __getattr__(self, name):
        return getattr(self._compiled, name)


def _cloned(value):
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _cloned(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cloned(v) for v in value)
    return value


def _compiled(model, log: Callable[[str], None], mode: str = "default"):
    """``torch.compile`` the model's forward (fixed shapes: one compile per image size).

    The backend is inductor unless ``$POLSTEREO_COMPILE_BACKEND`` names another (e.g.
    ``eager`` or ``aot_eager`` to debug graph capture without a C++ compiler); ``mode`` is
    inductor's (other backends take none). Attributes (``correction``, ``max_correction``,
    ``forward_intensity``) stay reachable.
    """
    import os

    backend = os.environ.get(COMPILE_BACKEND_ENV, "inductor")
    log(f"note: --compile ({backend}, {mode}): the first pair of each image size is slower while it compiles")
    options = {"mode": mode} if backend == "inductor" and mode != "default" else {}
    try:
        compiled = torch.compile(model, backend=backend, dynamic=False, **options)
    except Exception as err:  # an unknown backend, a platform torch.compile does not support
        raise _compile_failure(err) from err
    # reduce-overhead and max-autotune both replay CUDA graphs on GPUs
    return compiled if mode == "default" else _CudaGraphCalls(compiled)


def _compile_failure(err: Exception) -> PolstereoError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return PolstereoError(f"torch.compile failed ({type(err).__name__}: {first[:200]}); run without --compile")
def no_correction_reason(pair: StereoPair, model, use_base_only: bool) -> str | None:
    """Key of :data:`NO_CORRECTION_NOTES` when the correction is not applied to ``pair``, else None."""
    if not pair.polarized:
        return "ordinary"
    if use_base_only:
        return "use_base_only"
    if getattr(model, "correction", None) is None:
        return getattr(model, "no_correction_note", "no_module")
    return None


def match_channels(stack: np.ndarray, channels: int) -> np.ndarray:
    """``(A, C, H, W)`` -> ``(A, channels, H, W)``: RGB to its Rec. 709 luminance
    (:func:`polstereo.polar.color.luma`, as ``convert-dataset --color mono`` writes) or mono
    repeated. Both are linear in intensity, so the Stokes relations survive.
    """
    return to_channels(stack, channels, axis=1)


def _maps(out: dict) -> dict[str, torch.Tensor]:
    maps = {key: out[key].float() for key in MAP_KEYS if out.get(key) is not None}
    maps.setdefault("base_disparity", maps["disparity"])
    return maps


def predict_pair(model, pair: StereoPair, reason: str | None, device: torch.device,
                 amp_dtype: torch.dtype | None = None, iters: int | None = None, max_size: int | None = None,
                 tile_rows: int | None = None, tile_overlap: int = 32) -> dict[str, np.ndarray]:
    """Run ``model`` on one pair -> maps ``(H, W)`` float32: disparity, base_disparity, [correction, raw], [confidence].

    ``reason`` None runs the full model on the angle stacks; otherwise the base model alone
    on the intensity images (S0/2 for angle stacks).
    """
    def as_tensor(stack: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))[None].to(device)

    left, right = as_tensor(pair.left), as_tensor(pair.right)  # (1, A, C, H, W)
    if reason is None:
        def predict(l: torch.Tensor, r: torch.Tensor) -> dict[str, torch.Tensor]:
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                return _maps(model(l, r, angles_deg=pair.angles_deg, iters=iters, warp_source="pred"))
    else:
        if pair.polarized:
            left = intensity_image(left, pair.angles_deg).clamp(0.0, 1.0)
            right = intensity_image(right, pair.angles_deg).clamp(0.0, 1.0)
        else:
            left, right = left[:, 0], right[:, 0]

        def predict(l: torch.Tensor, r: torch.Tensor) -> dict[str, torch.Tensor]:
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                return _maps(model.forward_intensity(l, r, iters=iters))

    run = predict
    if tile_rows is not None:
        run = lambda l, r: run_in_row_bands(predict, l, r, tile_rows, tile_overlap)  # noqa: E731
    with torch.inference_mode():
        if max_size is not None:
            maps = run_downscaled(run, left, right, max_size, DISPARITY_KEYS)
        else:
            maps = run(left, right)
    return {key: value[0, 0].float().cpu().numpy() for key, value in maps.items()}


# ---------------------------------------------------------------------------- outputs
def polarization_maps(pair: StereoPair) -> tuple[np.ndarray, np.ndarray]:
    """DoLP and AoLP ``(H, W)`` of the left view (of the luminance for colour: Stokes are linear)."""
    mono = pair.left[:, 0] if pair.left.shape[1] == 1 else luma(pair.left, axis=1)[:, 0]
    stokes = stokes_from_angles(mono, pair.angles_deg, axis=0)
    return dolp(stokes, axis=0), aolp(stokes, axis=0)


def write_outputs(directory: Path, pair: StereoPair, maps: dict[str, np.ndarray], camera: RectifiedCamera | None,
                  config: InferConfig, max_correction: float, rectified: bool) -> tuple[dict[str, str], dict]:
    """Write one pair's files (see the module docstring); returns ``({file name: path}, arrays)``."""
    files: dict[str, str] = {}
    arrays = {key: maps[key] for key in ("disparity", "base_disparity", "correction", "confidence") if key in maps}

    def put(name: str, writer: Callable[[Path, np.ndarray], None], data: np.ndarray) -> None:
        path = directory / name
        writer(path, data)
        files[name] = str(path)

    disparity = maps["disparity"]
    for fmt in config.formats:
        put("disparity" + DISPARITY_FORMATS[fmt], write_disparity, disparity)
    low, high = config.vis_range if config.vis_range is not None else (None, None)
    put("disparity_color.png", write_image, disparity_to_rgb(disparity, low, high))
    if "correction" in maps:
        put("correction.npy", write_npy, maps["correction"])
        put("correction_color.png", write_image, correction_to_rgb(maps["correction"], max_correction))
    if "confidence" in maps:
        put("confidence.png", write_image, unit_to_gray(maps["confidence"]))
    if pair.polarized:
        pol_dolp, pol_aolp = polarization_maps(pair)
        put("dolp.png", write_image, unit_to_gray(pol_dolp))
        put("aolp.png", write_image, aolp_to_rgb(pol_aolp))
        put("aolp_dolp.png", write_image, aolp_to_rgb(pol_aolp, pol_dolp, mode="value"))
    if camera is not None:
        depth = camera.depth(disparity)
        arrays["depth"] = depth
        # Depth has disparity's file conventions: float32, invalid as inf (PFM) or NaN (NPY).
        for fmt in [f for f in config.formats if f in DEPTH_FORMATS] or ["npy"]:
            put("depth" + DISPARITY_FORMATS[fmt], write_disparity, depth)
        if config.ply:
            points, colors = point_cloud(depth, camera.fx, camera.fy, camera.cx, camera.cy,
                                         image_to_rgb(pair.intensity("left")))
            path = directory / "points.ply"
            write_ply(path, points, colors)
            files["points.ply"] = str(path)
    if rectified:
        for view in ("left", "right"):
            put(f"{view}_rectified.png", write_image, image_to_uint8(pair.intensity(view)))
    return files, arrays


def _camera_for(pair: StereoPair, calibration: Calibration | None,
                rectifiers: dict) -> tuple[StereoPair, RectifiedCamera | None, bool]:
    """Rectify ``pair`` when the calibration describes an unrectified rig; the camera for depth."""
    if isinstance(calibration, StereoCalibration):
        height, width = pair.shape
        if (width, height) not in rectifiers:
            rectifiers[(width, height)] = calibration.rectifier((width, height))
        rectifier = rectifiers[(width, height)]
        # With the angles the polarization frame turns with each image (AoLP in rectified axes).
        return pair.with_views(rectifier.rectify(pair.left, "left", pair.angles_deg),
                               rectifier.rectify(pair.right, "right", pair.angles_deg)), rectifier.camera, True
    if isinstance(calibration, RectifiedCamera):
        return pair, calibration, False
    if pair.focal_px is not None and pair.baseline is not None:
        height, width = pair.shape
        # HDF5 samples carry f and B but no principal point: assume the image centre.
        return pair, RectifiedCamera(pair.focal_px, pair.focal_px, (width - 1) / 2, (height - 1) / 2,
                                     pair.baseline), False
    return pair, None, False


def _disparity_stats(disparity: np.ndarray) -> dict:
    finite = disparity[np.isfinite(disparity)]
    if finite.size == 0:
        return {"min": None, "max": None, "mean": None}
    return {"min": float(finite.min()), "max": float(finite.max()), "mean": float(finite.mean())}


# ---------------------------------------------------------------------------- entry point
def run_inference(config: InferConfig, model=None, log: Callable[[str], None] = print) -> list[dict]:
    """Run ``config`` end to end; returns one summary dict per pair, in input order.

    ``model`` (a :class:`~polstereo.models.full.PolStereoModel`, already built) replaces
    loading ``config.checkpoint``. ``log`` receives the few lines meant for people (each
    no-correction note once per run).
    """
    from polstereo.models.files import load_for_inference
    from polstereo.devices import resolve_amp, resolve_device

    config.check()
    sources = resolve_inputs(config.input_spec())
    calibration = load_calibration(config.calib) if config.calib is not None else None
    if config.ply and calibration is None and config.data is None:
        raise PolstereoError("--ply needs a camera: give --calib (OpenCV stereo calibration, or K and baseline)")
    if model is None and (config.checkpoint is None) == (config.onnx is None):
        raise PolstereoError("give either a CHECKPOINT or --onnx FILE.onnx (exactly one)", EXIT_USAGE)
    if model is None and config.onnx_file() is not None:
        # An exported graph (polstereo.export.runtime): onnxruntime picks its own device from
        # --device and runs float32; the tensors around it stay on the CPU.
        from polstereo.export.runtime import load_onnx_model

        model = load_onnx_model(config.onnx_file(), device=config.device, iters=config.iters,
                                use_ema=config.use_ema, amp=config.amp, threads=torch.get_num_threads(), log=log)
        device, amp_dtype = torch.device("cpu"), None
    else:
        device = resolve_device(config.device)
        amp_dtype = resolve_amp(config.amp, device)
    if model is None:
        model, _ = load_for_inference(config.checkpoint, use_ema=config.use_ema, map_location="cpu")
    model = model.to(device).eval()
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.compile:
        model = _compiled(model, log, compile_mode_for(config.compile_mode, device))
    correction = getattr(model, "correction", None)
    max_correction = float(model.max_correction)
    out_root = Path(config.out)

    results, noted, rectifiers = [], set(), {}
    bar = tqdm(sources, unit="pair", desc="infer", disable=not (config.progress and len(sources) > 1))
    for source in bar:
        try:
            results.append(_run_pair(source, model, correction, calibration, rectifiers, noted, config, device,
                                     amp_dtype, max_correction, out_root, log))
        except PolstereoError as err:
            if len(sources) == 1:
                raise
            # one bad pair (unreadable file, mismatched sizes) must not cost the others
            message = str(err) if source.name in str(err) else f"pair {source.name}: {err}"
            log(f"error: {message}")
            results.append({"name": source.name, "error": message})
        except torch._dynamo.exc.TorchDynamoException as err:  # the compiler's, not the pair's: one line, stop
            raise _compile_failure(err) from err
    return results


def _run_pair(source, model, correction, calibration, rectifiers, noted, config, device, amp_dtype,
              max_correction, out_root, log) -> dict:
    """Load, run and write one pair; returns its summary."""
    started = time.perf_counter()
    pair = source.load()
    pair, camera, rectified = _camera_for(pair, calibration, rectifiers)
    if config.ply and camera is None:
        raise PolstereoError(f"pair {pair.name}: --ply needs a camera (the sample has no focal_px/baseline_m; "
                             "give --calib)")
    reason = no_correction_reason(pair, model, config.use_base_only)
    if reason is not None and reason not in noted:
        noted.add(reason)
        log(f"note: {NO_CORRECTION_NOTES[reason]}")
    if reason is None and pair.channels != correction.config.color_channels:
        wanted = correction.config.color_channels
        pair = pair.with_views(match_channels(pair.left, wanted), match_channels(pair.right, wanted))
        if "channels" not in noted:
            noted.add("channels")
            log(f"note: the correction module takes {'mono' if wanted == 1 else 'RGB'} angle images; "
                f"the input was converted ({'RGB to luminance' if wanted == 1 else 'mono repeated'})")
    maps = predict_pair(model, pair, reason, device, amp_dtype, config.iters, config.max_size,
                        config.tile_rows, config.tile_overlap)
    if not np.isfinite(maps["disparity"]).all():
        raise PolstereoError(f"pair {pair.name}: the model produced non-finite disparities")
    files, arrays = write_outputs(out_root / pair.name, pair, maps, camera, config, max_correction, rectified)
    height, width = pair.shape
    summary = {
        "name": pair.name, "kind": pair.kind, "height": height, "width": width,
        "polarized": pair.polarized, "correction_applied": reason is None, "note": reason,
        "rectified": rectified, "disparity": _disparity_stats(maps["disparity"]),
        "saturation_fraction": (float(saturation_fraction(torch.from_numpy(maps["raw"]),
                                                          correction.config.saturation_threshold))
                                if "raw" in maps else None),
        "camera": None if camera is None else camera.to_dict(),
        "seconds": round(time.perf_counter() - started, 4), "files": files,
    }
    if config.keep_arrays:
        summary["arrays"] = arrays
    return summary


__all__ = ["InferConfig", "run_inference", "predict_pair", "write_outputs", "no_correction_reason",
           "match_channels", "polarization_maps", "DISPARITY_FORMATS", "NO_CORRECTION_NOTES"]
