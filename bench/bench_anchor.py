"""Inference time of RAFT-Stereo's real-time configuration, imported from a user checkout.

The anchor row for the GPU speed table, measured on the same GPU as our models. No
RAFT-Stereo code is part of this project: ``--raft-stereo DIR`` names a checkout of
https://github.com/princeton-vl/RAFT-Stereo (it needs ``DIR/core``), which is put on
``sys.path`` and imported as ``core.raft_stereo``.

    python bench/bench_anchor.py --raft-stereo ~/src/RAFT-Stereo                  # CUDA if present
    python bench/bench_anchor.py --raft-stereo ~/src/RAFT-Stereo --resolutions 1216x1024 --amp none
    python bench/bench_anchor.py --raft-stereo ~/src/RAFT-Stereo --device cpu --resolutions 320x256

Configuration: the README's fastest model (``raftstereo-realtime.pth``): shared backbone,
``n_downsample=3``, two GRU levels, slow-fast GRU, 7 iterations, ``hidden_dims=[128]*3``,
four correlation levels of radius 4, batch-normed context encoder, mixed precision.
The weights are random (initialization with a fixed seed): the network's cost does not
depend on them. ``--amp fp16`` sets the model's own ``mixed_precision`` flag, under which
RAFT-Stereo autocasts its encoders and GRUs to fp16 itself; there is no outer autocast.

The correlation lookup is ``reg_cuda`` (the compiled ``corr_sampler`` extension, built by
``cd sampler && python setup.py install`` in the checkout) when that imports and the
device is CUDA, otherwise the pure-PyTorch ``reg``, which is slower than the published
figure; the header line says which ran (``--corr`` forces one). RAFT-Stereo's ``core``
imports ``opt_einsum`` and ``scipy`` without using them at inference; where either is
missing a placeholder module stands in for it, and the header line says so.

Inputs are (1, 3, H, W) float images in [0, 255], as in RAFT-Stereo's demo, padded by
edge replication to a multiple of 32 (its ``InputPadder(divis_by=32)``) before timing.
Timing is the median of ``--repeats`` runs of ``model(left, right, iters, test_mode=True)``
under ``torch.inference_mode()`` after ``--warmup`` runs; CUDA runs are synchronized
around each. Peak memory, CUDA only: ``torch.cuda.max_memory_allocated`` over the timed
runs, above what was allocated before the inputs and model were made (so weights and inputs
count); its stats are reset after the warmup, which leaves out the workspace that
``cudnn.benchmark`` autotuning takes (tens of GiB for fp32 at 1216x1024 on an H100).

The model launches some 1,500-2,000 small kernels per pair and copies small CPU tensors
to the GPU inside its loop, so on a fast GPU the time is bound by the host (an H100 is
busy for well under half of it): the figure depends on the CPU and Python too, and fp16
can be slower than fp32 (TF32), since autocast adds cast kernels.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import statistics
import sys
import time
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NoReturn

import torch
import torch.nn.functional as F

MODEL_NAME = "RAFT-Stereo real-time (random weights)"
PAD_MULTIPLE = 32
UNUSED_IMPORTS = ("opt_einsum", "scipy")  # imported by RAFT-Stereo's core, not used at inference


@dataclass(frozen=True)
class Result:
    padded: tuple[int, int]
    median_ms: float
    peak_mib: float | None


def fail(message: str) -> NoReturn:
    """One line on stderr, exit status 2."""
    print(f"bench_anchor: {message}", file=sys.stderr)
    sys.exit(2)


def parse_resolution(text: str) -> tuple[int, int]:
    """``"640x480"`` -> (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        fail(f"resolution must look like 640x480, got {text!r}")
    if w <= 0 or h <= 0:
        fail(f"resolution must be positive, got {text!r}")
    return w, h


def _stub_module(name: str) -> types.ModuleType:
    """A placeholder for an import RAFT-Stereo makes but does not use at inference."""
    module = types.ModuleType(name)
    if name == "opt_einsum":
        module.contract = torch.einsum  # type: ignore[attr-defined]  # same call signature
    elif name == "scipy":
        interpolate = types.ModuleType("scipy.interpolate")

        def missing(attr: str) -> Any:
            raise ImportError(f"scipy is not installed (placeholder for scipy.interpolate.{attr})")

        interpolate.__getattr__ = missing  # type: ignore[attr-defined]
        module.interpolate = interpolate  # type: ignore[attr-defined]
        sys.modules["scipy.interpolate"] = interpolate
    sys.modules[name] = module
    return module


def stub_missing_imports() -> list[str]:
    """Put placeholders in for the unused imports that are not installed; their names."""
    missing = [name for name in UNUSED_IMPORTS
               if name not in sys.modules and importlib.util.find_spec(name) is None]
    for name in missing:
        _stub_module(name)
    return missing


def import_raft_stereo(checkout: Path) -> type:
    """``core.raft_stereo.RAFTStereo`` from the checkout at ``checkout``; exit 2 if it fails."""
    checkout = checkout.expanduser().resolve()
    if not (checkout / "core" / "raft_stereo.py").is_file():
        fail(f"no RAFT-Stereo checkout at {checkout} (expected {checkout / 'core' / 'raft_stereo.py'})")
    sys.path.insert(0, str(checkout))
    try:
        module = importlib.import_module("core.raft_stereo")
    except Exception as err:  # noqa: BLE001 - any import failure is reported the same way
        fail(f"cannot import core.raft_stereo from {checkout}: {type(err).__name__}: {err}")
    origin = Path(module.__file__ or "").resolve()
    if checkout not in origin.parents:
        fail(f"'core.raft_stereo' resolved to {origin}, not inside {checkout}")
    return module.RAFTStereo


def corr_sampler_available() -> bool:
    """Whether RAFT-Stereo's compiled CUDA correlation sampler imports."""
    try:
        importlib.import_module("corr_sampler")
    except Exception:  # noqa: BLE001 - ImportError, or an undefined symbol from a stale build
        return False
    return True


def realtime_args(mixed_precision: bool, corr_implementation: str, iters: int) -> argparse.Namespace:
    """The namespace ``RAFTStereo`` reads, as ``demo.py`` builds it for the real-time model."""
    return argparse.Namespace(
        shared_backbone=True,
        n_downsample=3,
        n_gru_layers=2,
        slow_fast_gru=True,
        valid_iters=iters,  # read by demo.py, not by the model: iters is passed to forward
        corr_implementation=corr_implementation,
        mixed_precision=mixed_precision,
        hidden_dims=[128] * 3,
        corr_levels=4,
        corr_radius=4,
        context_norm="batch",
    )


def pad_to_multiple(image: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """Replicate-pad H and W up to ``multiple``, split like RAFT-Stereo's InputPadder ('sintel')."""
    h, w = image.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if not (pad_h or pad_w):
        return image
    return F.pad(image, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2], mode="replicate")


def time_runs(run: Callable[[], None], repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench_resolution(model_cls: type, args: argparse.Namespace, width: int, height: int,
                     device: torch.device, iters: int, repeats: int, warmup: int) -> Result:
    """Build the model on ``device`` and time one resolution."""
    gpu = device.type == "cuda"
    torch.manual_seed(0)
    left = pad_to_multiple(torch.rand(1, 3, height, width, device=device) * 255)
    right = pad_to_multiple(torch.rand(1, 3, height, width, device=device) * 255)
    if gpu:
        torch.cuda.empty_cache()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start_bytes = torch.cuda.memory_allocated(device)
    model = model_cls(args).to(device).eval()

    def run() -> None:
        if gpu:
            torch.cuda.synchronize(device)
        with torch.inference_mode():
            model(left, right, iters=iters, test_mode=True)
        if gpu:
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        run()
    if gpu:  # leave out cudnn.benchmark's autotuning workspace (GiBs for fp32) from the peak
        torch.cuda.reset_peak_memory_stats(device)
    median_ms = time_runs(run, repeats)
    peak = (torch.cuda.max_memory_allocated(device) - start_bytes) / 2 ** 20 if gpu else None
    return Result((left.shape[-1], left.shape[-2]), median_ms, peak)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


def quiet_known_warnings() -> None:
    """RAFT-Stereo's use of ``torch.cuda.amp.autocast`` and ``torch.meshgrid`` warns on every new torch."""
    warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.autocast.*is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"torch\.meshgrid: in an upcoming release", category=UserWarning)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raft-stereo", type=Path, required=True, metavar="DIR",
                        help="RAFT-Stereo checkout (the folder that holds core/)")
    parser.add_argument("--resolutions", nargs="+", default=["640x480", "1216x1024"], help="WxH")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--amp", choices=["fp16", "none"], default=None,
                        help="fp16: the model's mixed_precision flag (default: fp16 on CUDA, none on CPU)")
    parser.add_argument("--corr", choices=["auto", "reg", "reg_cuda"], default="auto",
                        help="corr_implementation (auto: reg_cuda when corr_sampler imports on CUDA, else reg)")
    parser.add_argument("--iters", type=int, default=7, help="GRU iterations (the real-time model's valid_iters)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default: 20 CUDA, 3 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: 5 CUDA, 1 CPU)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    gpu = device.type == "cuda"
    if gpu and not torch.cuda.is_available():
        fail(f"--device {args.device}: CUDA is not available")
    amp = args.amp or ("fp16" if gpu else "none")
    if amp == "fp16" and not gpu:
        fail("--amp fp16 needs CUDA (RAFT-Stereo's mixed precision is torch.cuda.amp.autocast)")
    resolutions = [parse_resolution(r) for item in args.resolutions for r in item.split(",") if r]
    repeats = args.repeats or (20 if gpu else 3)
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)

    stubbed = stub_missing_imports()
    model_cls = import_raft_stereo(args.raft_stereo)
    quiet_known_warnings()
    has_sampler = corr_sampler_available()
    if args.corr == "auto":
        corr = "reg_cuda" if gpu and has_sampler else "reg"
    else:
        corr = args.corr
    if corr == "reg_cuda" and not (gpu and has_sampler):
        fail("--corr reg_cuda needs CUDA and the compiled corr_sampler extension (cd sampler && python setup.py install)")
    if gpu:
        torch.backends.cudnn.benchmark = True

    corr_note = ("compiled CUDA corr_sampler" if corr == "reg_cuda" else
                 "pure PyTorch; slower than the published reg_cuda figure"
                 + ("" if has_sampler else ", corr_sampler not importable"))
    print(f"# device: {device_name(device)}; corr_implementation={corr} ({corr_note}); "
          f"repeats={repeats} warmup={warmup} torch={torch.__version__}"
          + (f"; placeholders for unused imports: {', '.join(stubbed)}" if stubbed else ""))
    print("| model | resolution | amp | iters | median ms | pairs/s | peak CUDA MiB |")
    print("|---|---|---|---:|---:|---:|---:|")
    model_args = realtime_args(amp == "fp16", corr, args.iters)
    for width, height in resolutions:
        result = bench_resolution(model_cls, model_args, width, height, device, args.iters, repeats, warmup)
        resolution = f"{width}x{height}"
        if result.padded != (width, height):
            resolution += f" (padded {result.padded[0]}x{result.padded[1]})"
        peak = f"{result.peak_mib:.0f}" if result.peak_mib is not None else "n/a"
        print(f"| {MODEL_NAME} | {resolution} | {amp} | {args.iters} | {result.median_ms:.1f} | "
              f"{1000 / result.median_ms:.1f} | {peak} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
