"""ONNX export time and onnxruntime against PyTorch eager inference, measured in one run.

For each model size: export (with the parity check) to a temporary file, then the median
inference time of the full model (base + correction) at the given resolution, batch 1,
in PyTorch eager and in onnxruntime on the same device. Prints a table. Not a test.

    python bench/bench_export.py                       # CPU: tiny and small at 640x480
    python bench/bench_export.py --device cuda --sizes small base
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from polstereo.export.onnx import ExportConfig, export_onnx
from polstereo.export.runtime import OnnxStereoModel
from polstereo.models.registry import build_model


def timed(fn, repeats: int, warmup: int, sync=lambda: None) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"])
    parser.add_argument("--resolution", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    w, h = args.resolution
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            torch.manual_seed(0)
            model = build_model({"base": size, "correction": True}).eval()
            path = Path(tmp) / f"{size}.onnx"
            start = time.perf_counter()
            report = export_onnx(ExportConfig(checkpoint=None, out=path), model=model, log=lambda m: None)
            export_s = time.perf_counter() - start
            left, right = torch.rand(1, 4, 1, h, w, device=device), torch.rand(1, 4, 1, h, w, device=device)
            model = model.to(device)
            with torch.no_grad():
                eager = timed(lambda: model(left, right), args.repeats, args.warmup, sync)
            runtime = OnnxStereoModel(path, device=args.device)
            ort = timed(lambda: runtime(left, right), args.repeats, args.warmup, sync)
            worst = report["parity"]["max_disparity_diff_px"]
            rows.append((size, export_s, eager * 1e3, ort * 1e3, worst))
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"full model (base + correction), {w}x{h}, batch 1, {name}, median of {args.repeats}")
    print("| model | export + parity (s) | PyTorch eager (ms) | onnxruntime (ms) | ort / eager | parity max diff (px) |")
    print("|---|---:|---:|---:|---:|---:|")
    for size, export_s, eager_ms, ort_ms, worst in rows:
        print(f"| {size} | {export_s:.1f} | {eager_ms:.1f} | {ort_ms:.1f} | {ort_ms / eager_ms:.2f} | {worst:.1e} |")


if __name__ == "__main__":
    main()
