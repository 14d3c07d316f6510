"""Run a converter over a source tree into ``OUT/train.h5``, ``val.h5`` and ``test.h5``.

Samples are assigned to splits before anything is read (seeded ratios or a split
file), loaded in worker processes, and appended in sorted-name order by the main
process, the only writer. The split files are written as one set
(:func:`~polstereo.io.atomic.atomic_file_set`) and replace the earlier ones only when the
whole conversion succeeds: an interrupted or failed run leaves the old outputs as they
were and no file that looks complete. Ctrl-C is taken between two samples (a handler
notes it; the loop stops there), so it can never be lost inside a finalizer or a worker
pool's bookkeeping. Samples that cannot be converted are skipped and listed, with the
reason, in the returned :class:`ConvertReport`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from polstereo.data.converters.base import BAD_VALUES, SkipSample, SourceOptions
from polstereo.data.converters.registry import CONVERTERS
from polstereo.data.h5.schema import Sample
from polstereo.data.h5.writer import COMPRESSION, H5Writer
from polstereo.errors import EXIT_USAGE, PolstereoError
from polstereo.interrupts import ctrl_c_requests_stop
from polstereo.io.atomic import atomic_file_set

SPLITS = ("train", "val", "test")
NOT_IN_SPLIT_FILE = "not in split file"


@dataclass
class ConvertConfig:
    """Everything ``convert-dataset`` needs.

    Attributes:
        src: directory of sample directories.
        out: output directory for ``train.h5`` / ``val.h5`` / ``test.h5``.
        layout: a key of :data:`CONVERTERS`.
        source: how to read the source files (patterns, colour, bit depth, ...).
        split_ratios: train/val/test shares (normalised), used without ``split_file``.
        split_file: text file of ``name split`` lines; wins over ``split_ratios``.
        seed: shuffles the sorted sample names before the ratio split.
        workers: processes reading and decoding samples (1 = in this process).
        progress: show a progress bar (callers decide: a TTY and not --quiet).
        overwrite: replace existing split files (and remove ones this run does not produce).
        compression: HDF5 codec, a key of ``h5.writer.COMPRESSION``.
    """

    src: Path
    out: Path
    layout: str = "folder"
    source: SourceOptions = field(default_factory=SourceOptions)
    split_ratios: tuple[float, ...] = (0.8, 0.1, 0.1)
    split_file: Path | None = None
    seed: int = 0
    workers: int = 1
    progress: bool = False
    overwrite: bool = False
    compression: str = "lzf"

    def __post_init__(self) -> None:
        self.src, self.out = Path(self.src), Path(self.out)
        self.split_file = None if self.split_file is None else Path(self.split_file)


@dataclass
class ConvertReport:
    """What a conversion did: samples per split, files, and every skipped sample with why."""

    layout: str
    src: str
    out: str
    color: str
    angles_deg: tuple[float, ...]
    written: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total_written(self) -> int:
        return sum(self.written.values())

    def skip_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.skipped:
            counts[entry["kind"]] = counts.get(entry["kind"], 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["angles_deg"] = list(self.angles_deg)
        data["total_written"] = self.total_written
        data["skip_counts"] = self.skip_counts()
        return data

    def lines(self) -> list[str]:
        angles = "/".join(f"{a:g}" for a in self.angles_deg)
        lines = [f"converted {self.total_written} samples from {self.src} (layout {self.layout}, {self.color}, "
                 f"angles {angles} deg) in {self.seconds:.1f} s"]
        lines += [f"  {split:5s}: {self.written[split]:5d} -> {self.files[split]}" for split in self.files]
        lines += [f"  removed stale {path}" for path in self.removed]
        if self.skipped:
            counts = ", ".join(f"{n} {kind}" for kind, n in self.skip_counts().items())
            lines.append(f"skipped {len(self.skipped)} samples ({counts}):")
            lines += [f"  {entry['name']}: {entry['kind']}: {entry['detail']}" for entry in self.skipped]
        return lines


class ConversionFailed(PolstereoError):
    """No sample could be converted; ``report`` says why for each."""

    def __init__(self, report: ConvertReport):
        first = report.skipped[0] if report.skipped else None
        reason = f"; first: {first['name']}: {first['kind']}: {first['detail']}" if first else ""
        super().__init__(f"no sample converted from {report.src}: {len(report.skipped)} skipped{reason}")
        self.report = report


# ---------------------------------------------------------------------------------------
# Splits


def assign_splits(names: Sequence[str], ratios: Sequence[float], seed: int = 0) -> dict[str, str]:
    """Sample name -> split by shares of a seeded shuffle of the sorted names.

    The same names, ratios and seed always give the same assignment; split sizes are the
    rounded cumulative shares, so they add up to ``len(names)``.
    """
    shares = np.asarray(ratios, dtype=np.float64)
    if shares.shape != (len(SPLITS),) or (shares < 0).any() or not np.isfinite(shares).all() or shares.sum() <= 0:
        raise PolstereoError(f"--split needs {len(SPLITS)} non-negative shares (train val test) "
                             f"with a positive sum, got {list(ratios)}", EXIT_USAGE)
    ordered = sorted(names)
    order = np.random.default_rng(seed).permutation(len(ordered))
    bounds = np.round(np.cumsum(shares / shares.sum()) * len(ordered)).astype(int)
    split_of_rank = np.searchsorted(bounds, np.arange(len(ordered)), side="right")
    return {ordered[i]: SPLITS[min(rank_split, len(SPLITS) - 1)] for i, rank_split in zip(order, split_of_rank)}


def read_split_file(path: Path) -> dict[str, str]:
    """``name split`` per line (``#`` comments and blank lines ignored) -> {name: split}."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise PolstereoError(f"{path}: no such split file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise PolstereoError(f"{path}: cannot read split file ({err})") from None
    assignment: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or words[1] not in SPLITS:
            raise PolstereoError(f"{path}:{number}: expected 'name split' with split one of "
                                 f"{', '.join(SPLITS)}, got {line.strip()!r}")
        name, split = words
        if assignment.get(name, split) != split:
            raise PolstereoError(f"{path}:{number}: sample {name!r} is listed in two splits")
        assignment[name] = split
    if not assignment:
        raise PolstereoError(f"{path}: split file lists no samples")
    return assignment


# ---------------------------------------------------------------------------------------
# Loading (in worker processes or in-process)

_worker_state: dict[str, Any] = {}


def _init_worker(converter, src: Path, color: str, ignore_sigint: bool) -> None:
    if ignore_sigint:
        # Ctrl-C reaches the whole process group; the main process alone cleans up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_state.update(converter=converter, src=src, color=color)


def _load_one(name: str) -> tuple[str, Sample | None, tuple[str, str] | None]:
    """``(name, sample, None)`` or ``(name, None, (skip kind, detail))``: plain data for the pipe."""
    state = _worker_state
    try:
        return name, state["converter"].load(state["src"] / name, state["color"]), None
    except SkipSample as skip:
        return name, None, (skip.kind, skip.detail)
    except Exception:
        # A bug, not bad data. Send text: an exception that fails to unpickle in the main
        # process kills the pool's result thread and the conversion would hang.
        raise RuntimeError(f"converting sample {name!r} failed:\n{traceback.format_exc()}") from None


@contextlib.contextmanager
def _loaded_samples(converter, src: Path, color: str, names: Sequence[str],
                    workers: int) -> Iterator[Iterable[tuple[str, Sample | None, tuple[str, str] | None]]]:
    """Yield an iterator over :func:`_load_one` results in ``names`` order."""
    if workers <= 1 or len(names) <= 1:
        _init_worker(converter, src, color, ignore_sigint=False)
        try:
            yield (_load_one(name) for name in names)
        finally:
            _worker_state.clear()
        return
    with multiprocessing.get_context().Pool(min(workers, len(names)), initializer=_init_worker,
                                            initargs=(converter, src, color, True)) as pool:
        yield pool.imap(_load_one, names)


# ---------------------------------------------------------------------------------------
# The conversion


def _check_config(config: ConvertConfig) -> None:
    if config.layout not in CONVERTERS:
        raise PolstereoError(f"unknown layout {config.layout!r}; use one of {', '.join(CONVERTERS)}", EXIT_USAGE)
    if not config.src.exists():
        raise PolstereoError(f"{config.src}: no such source directory")
    if not config.src.is_dir():
        raise PolstereoError(f"{config.src}: is not a directory")
    if config.compression not in COMPRESSION:
        raise PolstereoError(f"unknown compression {config.compression!r}; use one of {sorted(COMPRESSION)}")
    if config.out.exists() and not config.out.is_dir():
        raise PolstereoError(f"{config.out}: exists and is not a directory")
    if config.source.color not in ("auto", "mono", "rgb"):
        raise PolstereoError(f"unknown colour mode {config.source.color!r}; use auto, mono or rgb", EXIT_USAGE)
    if config.source.bit_depth is not None and not 1 <= config.source.bit_depth <= 16:
        raise PolstereoError(f"--bit-depth must be 1..16, got {config.source.bit_depth}", EXIT_USAGE)


def _plan(config: ConvertConfig, names: list[str]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(name -> split for every sample to convert, skip entries for the ones left out)."""
    if config.split_file is None:
        return assign_splits(names, config.split_ratios, config.seed), []
    listed = read_split_file(config.split_file)
    unlisted = [{"name": name, "split": "", "kind": NOT_IN_SPLIT_FILE, "detail": str(config.split_file)}
                for name in names if name not in listed]
    return dict(sorted(listed.items())), unlisted


def _split_paths(out: Path) -> dict[str, Path]:
    return {split: out / f"{split}.h5" for split in SPLITS}


def convert_dataset(config: ConvertConfig) -> ConvertReport:
    """Convert ``config.src`` into ``config.out/{train,val,test}.h5`` (empty splits get no file).

    Raises:
        PolstereoError: bad configuration, missing source, outputs that exist without
            ``overwrite``; :class:`ConversionFailed` (with the report) when every sample
            was skipped.
        KeyboardInterrupt: Ctrl-C; the earlier outputs are left as they were.
    """
    with ctrl_c_requests_stop() as stop:  # the loop stops at the next sample
        return _convert(config, stop)


def _convert(config: ConvertConfig, stop: dict[str, bool]) -> ConvertReport:
    started = time.perf_counter()
    _check_config(config)
    converter = CONVERTERS[config.layout](config.source)
    names = converter.discover(config.src)
    if not names and config.split_file is None:
        raise PolstereoError(f"{config.src}: no sample directories (expected {config.src}/<sample>/...)")
    assignment, skipped = _plan(config, names)
    paths = _split_paths(config.out)
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not config.overwrite:
        raise PolstereoError(f"{existing[0]} exists; pass --overwrite to replace the split files in {config.out}")
    color = converter.resolve_color(config.src, list(assignment))
    report = ConvertReport(layout=config.layout, src=str(config.src), out=str(config.out), color=color,
                           angles_deg=converter.angles_deg(), skipped=skipped)
    provenance = {
        "tool": "polstereo convert-dataset", "layout": config.layout, "source": str(config.src.resolve()),
        "split_ratios": list(config.split_ratios) if config.split_file is None else None,
        "split_file": str(config.split_file) if config.split_file else None, "seed": config.seed,
        "options": asdict(config.source),
    }
    todo = sorted(assignment)
    with contextlib.ExitStack() as outputs:
        writers: dict[str, H5Writer] = {}
        # entered first, left last: the writers and the worker pool are closed before the new set is committed
        staged = outputs.enter_context(atomic_file_set(config.out, [path.name for path in paths.values()]))
        bar = outputs.enter_context(tqdm(total=len(todo), unit="sample", desc="convert", disable=not config.progress))
        results = outputs.enter_context(_loaded_samples(converter, config.src, color, todo, config.workers))
        for name, sample, skip in results:
            if stop["requested"]:
                raise KeyboardInterrupt
            bar.update(1)
            split = assignment[name]
            if sample is not None:
                if split not in writers:
                    writers[split] = outputs.enter_context(H5Writer(
                        staged / paths[split].name, angles_deg=report.angles_deg, color=color,
                        provenance={**provenance, "split": split}, compression=config.compression))
                try:
                    writers[split].append(sample)
                    continue
                except PolstereoError as err:  # malformed for the format: skip, not abort
                    skip = (BAD_VALUES, str(err))
            report.skipped.append({"name": name, "split": split, "kind": skip[0], "detail": skip[1]})
        if stop["requested"]:
            raise KeyboardInterrupt
        if not writers:
            raise ConversionFailed(report)
        # stale outputs of an earlier run (only reachable with overwrite) go with the commit
        report.removed = [str(paths[split]) for split in SPLITS if split not in writers and paths[split].exists()]
        # Leaving the stack closes the writers and commits the set: the split files appear only now, together.
    if stop["requested"]:
        raise KeyboardInterrupt  # came during the commit; the new set is complete
    for split in SPLITS:
        if split in writers:
            report.written[split] = writers[split].count
            report.files[split] = str(paths[split])
    report.seconds = time.perf_counter() - started
    return report
