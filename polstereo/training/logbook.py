"""What a run writes besides its checkpoints: metrics.jsonl, TensorBoard, progress, config.yaml.

``metrics.jsonl`` holds one JSON object per line: ``{"type": "train", "step", "loss",
"lr", ...}`` every ``--log-every`` steps and ``{"type": "val", "step", "final", "base",
"saturation_fraction"}`` per validation; non-finite numbers are written as null. A
``--resume`` first drops the records of steps after its checkpoint (the resumed run
writes them again). ``config.yaml`` holds the run's options by section (``data:``,
``model:``, ``optim:``, ``mim:``, ``run:``, keys as TrainConfig names them) as ``--config``
reads them back; it is written with the first checkpoint, so a run that fails at its start
leaves none. Only rank 0 writes.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

from polstereo.errors import PolstereoError
from polstereo.io.atomic import atomic_path
from polstereo.polar.features import intensity_image
from polstereo.training.curves import write_train_curves
from polstereo.training.step import StepCounters

TRAIN_SCALARS = ("loss", "lr", "saturation_fraction", "pairs_per_s", "data_wait_share")


class Logbook:
    """The run's records and progress display in ``out_dir`` (which must exist).

    Args:
        log: where one-line messages go (silent on ranks other than 0).
        is_main: whether this process writes files (rank 0).
        tensorboard: also write TensorBoard scalars and pictures under ``out_dir/tensorboard``.
        log_every: a train record every this many steps (and at the last one).
        quiet: no progress bar.
    """

    def __init__(self, out_dir: Path, log: Callable[[str], None], is_main: bool, tensorboard: bool,
                 log_every: int, quiet: bool):
        self.out_dir, self.log, self.is_main = out_dir, log, is_main
        self.metrics_path = out_dir / "metrics.jsonl"
        self.board = open_tensorboard(out_dir) if tensorboard and is_main else None
        self.log_every, self.quiet = log_every, quiet
        self.history: list[dict] = []  # the train records of this invocation
        self.config_written = False
        self.data_wait = 0.0  # seconds the loop spent blocked on the data loader

    def begin(self, start_step: int, end_step: int, pairs_per_step: int, desc: str) -> None:
        """Drop records after ``start_step`` (a resume), start the progress bar and the clock."""
        from tqdm import tqdm

        if self.is_main:
            truncate_log(self.metrics_path, start_step)
        self.start_step, self.end_step, self.pairs_per_step = start_step, end_step, pairs_per_step
        self.bar = tqdm(total=end_step - start_step, desc=desc,
                        disable=True if (self.quiet or not self.is_main) else None, leave=False)
        self.t0 = time.perf_counter()

    def timed(self, loader):
        """Iterate ``loader``, adding the seconds spent waiting in ``next`` to ``data_wait``."""
        it = iter(loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            self.data_wait += time.perf_counter() - start
            yield batch

    def step_done(self, counters: StepCounters, loss, lr: float, out: dict, val_metrics: dict | None) -> None:
        """Advance the bar; every ``log_every`` steps (and at the end) write a train record."""
        self.bar.update(1)
        step = counters.step
        if not (self.is_main and (step % self.log_every == 0 or step == self.end_step)):
            return
        record = self._train_record(counters, loss, lr, out)
        self.history.append(record)
        append_jsonl(self.metrics_path, {"type": "train", **record})
        if self.board is not None:
            for key in TRAIN_SCALARS:
                if key in record:
                    self.board.add_scalar(f"train/{key}", record[key], step)
        postfix = {"loss": f"{record['loss']:.3f}", "lr": f"{record['lr']:.2e}"}
        if "saturation_fraction" in record:
            postfix["sat"] = f"{record['saturation_fraction']:.3f}"
        if val_metrics:
            postfix["val_epe"] = f"{val_score(val_metrics):.3f}"
        self.bar.set_postfix(postfix)

    def _train_record(self, counters: StepCounters, loss, lr: float, out: dict) -> dict:
        """Loss, learning rate, counters, throughput and the share of time spent waiting for data."""
        step = counters.step
        record = {"step": step, "loss": float(loss.detach()), "lr": lr, "skipped": counters.skipped,
                  "overflow_steps": counters.overflow_steps, "seconds": round(time.perf_counter() - self.t0, 2)}
        if out.get("saturation_fraction") is not None:
            record["saturation_fraction"] = float(out["saturation_fraction"])
        record["pairs_per_s"] = round(self.pairs_per_step * (step - self.start_step)
                                      / max(record["seconds"], 1e-9), 3)
        # how much of the time the loop waited for data (0: the device never starved)
        record["data_wait_s"] = round(self.data_wait, 3)
        record["data_wait_share"] = round(self.data_wait / max(time.perf_counter() - self.t0, 1e-9), 4)
        return record

    def validation(self, step: int, res, val_metrics: dict, pictures: dict, model) -> None:
        """Record a validation (an EvalResult ``res``) in metrics.jsonl, TensorBoard and the log."""
        if self.is_main:
            append_jsonl(self.metrics_path, {"type": "val", "step": step, "final": brief(val_metrics),
                                             "base": brief({"final": res.base}),
                                             "saturation_fraction": res.saturation_fraction})
        if self.board is not None:
            for output, metrics in (("final", res.final), ("base", res.base)):
                for region, m in metrics.items():
                    if m.get("pixels"):
                        for key in ("epe", "bad3", "d1"):
                            self.board.add_scalar(f"val_{output}/{region}_{key}", m[key], step)
            if res.saturation_fraction is not None:
                self.board.add_scalar("val/saturation_fraction", res.saturation_fraction, step)
            if pictures:
                self.board.add_image("val/left_gt_pred_error_correction", picture_grid(pictures, model), step,
                                     dataformats="HWC")
        self.log(f"step {step}: val EPE all {res.final['all']['epe']:.3f} px, transparent "
                 f"{res.final.get('transparent', {}).get('epe', float('nan')):.3f} px"
                 + (f", saturation {res.saturation_fraction:.3f}" if res.saturation_fraction is not None else ""))

    def before_checkpoint(self, options: dict, last: bool) -> None:
        """Before a checkpoint is written: config.yaml the first time, train_curves.png with ``last.ckpt``."""
        if not self.config_written:
            write_config_file(self.out_dir / "config.yaml", options)
            self.config_written = True
        if last:
            write_train_curves(self.metrics_path, self.out_dir / "train_curves.png")

    def close_bar(self) -> None:
        self.bar.close()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def val_score(metrics: dict) -> float:
    """What best.ckpt minimises: EPE on transparent pixels (all pixels when there are none)."""
    final = metrics["final"]
    region = "transparent" if final.get("transparent", {}).get("pixels") else "all"
    return float(final[region]["epe"])


def brief(metrics: dict | None) -> dict | None:
    """The lineage's summary of validation metrics: EPE and bad-3 per region."""
    if not metrics:
        return None
    final = metrics["final"]
    return {region: {"epe": m["epe"], "bad3": m["bad3"]} for region, m in final.items() if m.get("pixels")}


def write_config_file(path: Path, options: dict) -> None:
    """The run's resolved options (``TrainConfig.plain``: nested by section) as YAML, what ``--config``
    reads back."""
    import yaml

    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(options, sort_keys=False, default_flow_style=None))


def truncate_log(path: Path, last_step: int) -> None:
    """Drop records of steps after ``last_step`` (written before an interruption, replayed now)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= last_step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))


def append_jsonl(path: Path, record: dict) -> None:
    """Append ``record`` as one JSON line, non-finite numbers as null."""
    with open(path, "a") as fh:
        fh.write(json.dumps(finite_or_null(record), allow_nan=False) + "\n")


def finite_or_null(value):
    """``value`` with NaN and ±inf floats replaced by None: JSON has no NaN (null is what it has)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def open_tensorboard(out_dir: Path):
    """A SummaryWriter on ``out_dir/tensorboard``; a one-line error without the tensorboard package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise PolstereoError("--tensorboard needs the tensorboard package: pip install 'polstereo[tensorboard]'") \
            from None
    return SummaryWriter(log_dir=str(out_dir / "tensorboard"))


def picture_grid(pictures: dict, model):
    """One row of pictures for TensorBoard: left intensity, ground truth, prediction, error, correction."""
    import numpy as np

    from polstereo.io.visualise import comparison_pictures, correction_to_rgb, image_to_uint8

    batch, out = pictures["batch"], pictures["out"]
    left = intensity_image(batch.left.float(), model.angles_deg)[0].clamp(0, 1).cpu().numpy()
    gray = image_to_uint8(left)
    gray = np.repeat(gray[..., None], 3, axis=2) if gray.ndim == 2 else gray
    pred_rgb, gt_rgb, error_rgb = comparison_pictures(out["disparity"][0, 0].float().cpu().numpy(),
                                                      batch.disparity[0, 0].cpu().numpy())
    tiles = [gray, gt_rgb, pred_rgb, error_rgb]
    if out.get("correction") is not None:
        tiles.append(correction_to_rgb(out["correction"][0, 0].float().cpu().numpy(), model.max_correction))
    return np.concatenate(tiles, axis=1)
