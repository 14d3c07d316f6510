"""Training throughput: pairs/s per configuration, and the share of step time spent waiting for data.

Runs the real trainer (``polstereo.training.trainer.train``) on a generated HDF5 file
for a few steps per configuration and reads its ``metrics.jsonl``. Prints a table.
Not a test. Examples:

    python bench/bench_train.py                                   # CPU: tiny, small crops
    python bench/bench_train.py --model small --batch-size 8 --crop 320 720 --amp bf16 off \
        --mask-ratio 0 0.4 --steps 40 --device cuda               # the GPU targets
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from polstereo.data.h5 import Sample, write_samples
from polstereo.data.loader import AugmentConfig, MixturePlan, PlanSampler, StereoCropDataset, MixtureDataset
from polstereo.training.trainer import TrainConfig, train


def make_file(path: Path, num: int, h: int, w: int) -> None:
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(num):
        img = (rng.random((4, 1, h, w)) * 255).astype(np.uint8)
        samples.append(Sample(left=img, right=np.roll(img, -6, axis=-1), disparity=np.full((h, w), 6.0, np.float32),
                              transparent=rng.random((h, w)) > 0.8))
    write_samples(path, samples)


def loader_rate(path: Path, crop, batch: int, workers: int, batches: int) -> float:
    """Batches/s the data pipeline alone delivers (upper bound for training)."""
    ds = MixtureDataset([StereoCropDataset(path, AugmentConfig(crop_size=tuple(crop)))])
    plan = MixturePlan([len(ds.datasets[0])], [batches + 1], batch)
    loader = DataLoader(ds, batch_size=batch, sampler=PlanSampler(plan), num_workers=workers)
    it = iter(loader)
    next(it)
    start = time.perf_counter()
    for _ in it:
        pass
    return batches / (time.perf_counter() - start)


def _run_stage(cfg: TrainConfig, queue) -> None:
    """Child process: train, then report peak memory (RSS on the CPU, allocator peak on CUDA)."""
    import resource

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    train(cfg, log=lambda m: None)
    cuda_peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    queue.put((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, cuda_peak))


def run_stage(cfg: TrainConfig) -> tuple[float, float | None]:
    """Train in a fresh process so each stage's peak memory is its own."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run_stage, args=(cfg, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["tiny"])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--crop", type=int, nargs=2, default=(128, 160), metavar=("H", "W"))
    parser.add_argument("--amp", nargs="+", default=["off"])
    parser.add_argument("--mask-ratio", type=float, nargs="+", default=[0.0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3, help="steps excluded from the rate")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--iters", type=int, default=None)
    parser.add_argument("--stages", nargs="+", default=["A", "B", "C"], choices=["A", "B", "C"],
                        help="stages to chain (each from the previous one's checkpoint)")
    parser.add_argument("--correction-search", type=float, default=None,
                        help="search cost volume radius of the stage-B correction module, px")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument("--init", default=None,
                        help="start the first stage from this checkpoint (e.g. models/polstereo-small.ckpt; "
                             "--model is then only the row's label)")
    parser.add_argument("--base-input", nargs="+", default=[None],
                        help="stage A's --base-input values to compare (e.g. intensity polarization-adapter)")
    args = parser.parse_args()
    if args.json is not None and not args.json.parent.is_dir():  # before minutes of training, not after
        parser.error(f"--json: no directory {args.json.parent}")
    h, w = args.crop
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.h5"
        make_file(data, 16, h + 32, w + 32)
        data_rate = loader_rate(data, args.crop, args.batch_size, args.workers, 20) * args.batch_size
        for model, amp, ratio, base_input in itertools.product(args.model, args.amp, args.mask_ratio,
                                                               args.base_input):
            previous = args.init
            for stage in args.stages:
                out = Path(tmp) / f"{model}-{amp}-{ratio}-{base_input}-{stage}"
                extra = {"base_input": base_input} if stage == "A" and base_input not in (None, "intensity") else {}
                extra.update({} if previous else {"model": model})
                cfg = TrainConfig.from_flat(stage=stage, out=out, train=[data], steps=args.steps, **extra,
                                            batch_size=args.batch_size, crop_size=(h, w), workers=args.workers,
                                            val_every=0, save_every=0, log_every=1, quiet=True, amp=amp,
                                            device=args.device, mask_ratio=ratio, iters=args.iters, init=previous,
                                            force=True, max_correction=4.0,
                                            correction_search=args.correction_search if stage == "B" else None)
                peak_rss, peak_cuda = run_stage(cfg)
                previous = str(out / "last.ckpt")
                records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
                train_records = [r for r in records if r["type"] == "train"]
                first, last = train_records[args.warmup - 1], train_records[-1]
                seconds = last["seconds"] - first["seconds"]
                rate = (len(train_records) - args.warmup) * args.batch_size / seconds
                wait = (last["data_wait_s"] - first["data_wait_s"]) / seconds
                label = model if base_input in (None, "intensity") else f"{model}, {base_input}"
                rows.append((label, stage, amp, ratio, rate, peak_cuda if peak_cuda is not None else peak_rss,
                             wait))
    device = "cuda" if (args.device == "auto" and torch.cuda.is_available()) else args.device
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    search = f", correction search ±{args.correction_search:g} px" if args.correction_search else ""
    print(f"training throughput on {name}, batch {args.batch_size}, crop {h}x{w}, {args.workers} workers, "
          f"steps {args.steps} (first {args.warmup} excluded){search}")
    print(f"data pipeline alone: {data_rate:.1f} pairs/s")
    memory = "peak CUDA MiB" if device.startswith("cuda") else "peak RSS MiB"
    print(f"| model | stage | amp | mask ratio | pairs/s | {memory} | step time waiting for data | "
          "share of data-pipeline capacity used |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for model, stage, amp, ratio, rate, peak, wait in rows:
        print(f"| {model} | {stage} | {amp} | {ratio:g} | {rate:.2f} | {peak:.0f} | {wait:.1%} | "
              f"{min(1.0, rate / data_rate):.0%} |")
    if args.json is not None:
        keys = ("model", "stage", "amp", "mask_ratio", "pairs_per_s", "peak_mib", "data_wait_share")
        payload = {"device": name, "batch_size": args.batch_size, "crop": [h, w], "data_pairs_per_s": data_rate,
                   "rows": [dict(zip(keys, row)) for row in rows]}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
