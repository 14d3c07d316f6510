"""Inference time and peak memory of the models, per size, resolution and variant.

Prints one table row per (size, resolution, variant): variant ``base`` is the base
model alone, ``full`` adds the polarization correction module. Timing is the median
of ``--repeats`` runs after ``--warmup`` runs; CUDA runs are synchronized around each.

    python bench/bench_models.py                          # CPU: tiny + small at 640x480
    python bench/bench_models.py --device cuda --amp bf16 --channels-last --compile
    python bench/bench_models.py --sizes tiny small base --resolutions 640x480 1216x1024
    python bench/bench_models.py --device cuda --amp fp16 --sizes small --variants full --profile 15

``ops``: tensor operations one eager forward dispatches, views excluded (about the
kernels it launches on a GPU, where eager batch-1 inference is bound by launches;
counted on any device, in the forms timed; with ``--forms auto`` in the one-pass forms
CUDA runs). Not counted for ``--compile``.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` over the timed runs, less what
was allocated before the model was built (so weights and activations count; cuDNN's
algorithm search and compile tuning during the warm-up runs do not); on CPU each
configuration runs in a fresh process and the figure is the rise of its peak resident
set (``ru_maxrss``) from just before the model is built. Sizes are
anything ``build_model`` accepts as a base, so ``s2m2-S`` works when the s2m2 package
is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from polstereo.errors import PolstereoError  # noqa: E402
from polstereo.models import build_model  # noqa: E402
from polstereo.models.forms import prefer_one_pass  # noqa: E402

AMP_DTYPES = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}
VARIANTS = ("base", "full")


@dataclass(frozen=True)
class Case:
    size: str
    width: int
    height: int
    variant: str
    device: str
    amp: str
    iters: int | None
    repeats: int
    warmup: int
    channels_last: bool
    compile: bool
    color: bool
    threads: int | None
    compile_mode: str = "default"
    search_radius: float = 0.0
    profile: int = 0
    forms: str = "auto"


@dataclass(frozen=True)
class Result:
    params: int
    iters: str
    median_ms: float
    peak_mib: float
    ops: int | None = None
    profile: str = ""


def parse_resolution(text: str) -> tuple[int, int]:
    """``"640x480"`` -> (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"error: resolution must look like 640x480, got {text!r}") from None
    return w, h


def _split(values: list[str] | None) -> list[str] | None:
    """``["tiny,small", "base"]`` -> ``["tiny", "small", "base"]``."""
    return [v for item in values for v in item.split(",") if v] if values else None


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_case(case: Case) -> Result:
    """Build the model of ``case`` and time it; PolstereoError if it cannot be built."""
    device = torch.device(case.device)
    if case.threads:
        torch.set_num_threads(case.threads)
    gpu = device.type == "cuda"
    channels = 3 if case.color else 1
    left = torch.rand(1, 4, channels, case.height, case.width, device=device)
    right = torch.rand(1, 4, channels, case.height, case.width, device=device)
    if gpu:
        torch.cuda.empty_cache()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start_bytes = torch.cuda.memory_allocated(device)
    start_rss = _max_rss_mib()

    correction = {"color_channels": channels, "search_radius": case.search_radius}
    config = {"base": case.size, "correction": correction if case.variant == "full" else None}
    model = build_model(config).eval().to(device)
    params = sum(p.numel() for p in model.parameters())
    iters = case.iters if case.iters is not None else getattr(getattr(model.base, "config", None), "iters", "-")
    if case.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # static shapes: each resolution compiles its own graph (an automatic-dynamic recompile at the
    # second resolution failed in inductor on torch 2.11)
    runner = torch.compile(model, mode=case.compile_mode, dynamic=False) if case.compile else model
    amp = AMP_DTYPES[case.amp]
    autocast = torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()

    forms = {"auto": None, "one-pass": True, "loop": False}[case.forms]

    def run(forms=forms):
        with torch.inference_mode(), autocast, prefer_one_pass(forms):
            runner(left, right, iters=case.iters)
        if gpu:
            torch.cuda.synchronize(device)

    for _ in range(case.warmup):
        run()
    if gpu:  # the peak of the timed runs: cuDNN's algorithm search and compile tuning stay out
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(case.repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    if gpu:
        peak = (torch.cuda.max_memory_allocated(device) - start_bytes) / 2 ** 20
    else:
        peak = _max_rss_mib() - start_rss
    table = profile_table(run, gpu, case.profile) if case.profile else ""
    # counted in the forms timed; with auto, in the one-pass forms CUDA runs (also on a CPU)
    ops = None if case.compile else count_ops(lambda: run(True if forms is None else forms))
    return Result(params, str(iters), statistics.median(times), peak, ops, table)


def count_ops(run) -> int:
    """Tensor operations one eager ``run()`` dispatches, views excluded: about the kernels
    it launches on a GPU, where eager inference at batch 1 is bound by launches. Counts
    on any device, so a change's effect on launch overhead shows without a GPU."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not func.is_view:
                Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        run()
    return Count.n


def profile_table(run, gpu: bool, rows: int) -> str:
    """One more run under ``torch.profiler``: the ``rows`` operators with the most self time
    on the device (CUDA) or the CPU, with their call counts (where does the time go?)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    with profile(activities=activities) as prof:
        run()
    averages = prof.key_averages()
    return averages.table(sort_by="self_device_time_total" if gpu else "self_cpu_time_total", row_limit=rows)


def run_isolated(case: Case) -> Result:
    """CPU: run ``case`` in a fresh process, so its peak resident set is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_case, case).result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=None,
                        help="base sizes, space or comma separated (default: tiny small on CPU, "
                             "tiny small base on CUDA)")
    parser.add_argument("--resolutions", nargs="+", default=None,
                        help="WxH (default: 640x480 on CPU, 640x480 1216x1024 on CUDA)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--amp", choices=sorted(AMP_DTYPES), default="none", help="autocast dtype")
    parser.add_argument("--iters", type=int, default=None, help="refinement iterations (default: per size)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default: 3 CPU, 20 CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: 1 CPU, 5 CUDA)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--compile-mode", default="default", choices=["default", "reduce-overhead", "max-autotune"],
                        help="torch.compile mode (reduce-overhead: CUDA graphs)")
    parser.add_argument("--search-radius", type=float, default=0.0, help="correction search cost volume radius, px")
    parser.add_argument("--color", action="store_true", help="RGB angle stacks instead of mono")
    parser.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: torch's)")
    parser.add_argument("--forms", choices=("auto", "one-pass", "loop"), default="auto",
                        help="multi-candidate operations in one pass or as loops (polstereo.models.forms; "
                             "auto: one pass on CUDA, loops on CPUs)")
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS",
                        help="after timing, profile one run and print the ROWS operators with the most self time")
    args = parser.parse_args(argv)
    if args.profile < 0:
        parser.error(f"--profile takes a number of rows >= 0, got {args.profile}")

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    gpu = device.startswith("cuda")
    if gpu:
        torch.backends.cudnn.benchmark = True
    sizes = _split(args.sizes) or (["tiny", "small", "base"] if gpu else ["tiny", "small"])
    resolutions = [parse_resolution(r) for r in _split(args.resolutions) or
                   (["640x480", "1216x1024"] if gpu else ["640x480"])]
    repeats = args.repeats or (20 if gpu else 3)
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)

    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {args.threads or torch.get_num_threads()} threads"
    print(f"# device: {name}; amp={args.amp} channels_last={args.channels_last} compile={args.compile} ({args.compile_mode}) "
          f"correction search_radius={args.search_radius:g} forms={args.forms} "
          f"repeats={repeats} warmup={warmup} torch={torch.__version__}")
    header = (f"{'size':<8} {'params':>8} {'resolution':>10} {'variant':<7} {'iters':>5} "
              f"{'median ms':>10} {'fps':>7} {'peak MiB':>9} {'ops':>6}")
    print(header)
    print("-" * len(header))
    for size in sizes:
        try:
            for width, height in resolutions:
                for variant in args.variants:
                    case = Case(size, width, height, variant, device, args.amp, args.iters, repeats, warmup,
                                args.channels_last, args.compile, args.color, args.threads, args.compile_mode,
                                args.search_radius, args.profile, args.forms)
                    result = run_case(case) if gpu else run_isolated(case)
                    print(f"{size:<8} {result.params / 1e6:>7.2f}M {f'{width}x{height}':>10} {variant:<7} "
                          f"{result.iters:>5} {result.median_ms:>10.1f} {1000 / result.median_ms:>7.1f} "
                          f"{result.peak_mib:>9.0f} {result.ops if result.ops is not None else '-':>6}", flush=True)
                    if result.profile:
                        print(result.profile, flush=True)
        except PolstereoError as err:  # e.g. s2m2-S without the package: report, go on
            print(f"{size:<8} skipped: {err}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
