"""Dataset summaries for ``polstereo inspect``: shapes, disparity statistics, crop stats.

Pure reading and arithmetic; printing and files are the CLI's business (except the
histogram picture, which :func:`write_histogram_png` renders with OpenCV).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polstereo.data.h5.reader import CORRUPT_FILE_ERRORS, H5Reader
from polstereo.data.h5.schema import ground_truth_mask
from polstereo.data.h5.validate import validate_isolated
from polstereo.errors import PolstereoError

PERCENTILES = (1, 5, 50, 95, 99)


@dataclass
class _Accumulator:
    """Streaming disparity statistics over many arrays of valid pixels."""

    bins: int
    upper: float
    count: int = 0
    total: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")

    def __post_init__(self) -> None:
        self.hist = np.zeros(self.bins, dtype=np.int64)
        self.reservoir: list[np.ndarray] = []

    def add(self, values: np.ndarray, rng: np.random.Generator, keep: int = 20000) -> None:
        if values.size == 0:
            return
        self.count += values.size
        self.total += float(values.sum(dtype=np.float64))
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))
        self.hist += np.histogram(np.clip(values, 0, self.upper), bins=self.bins, range=(0, self.upper))[0]
        # a bounded random subset keeps percentiles cheap on large files
        self.reservoir.append(values if values.size <= keep else rng.choice(values, keep, replace=False))

    def result(self) -> dict[str, Any]:
        if self.count == 0:
            return {"pixels": 0}
        subset = np.concatenate(self.reservoir)
        edges = np.linspace(0, self.upper, self.bins + 1)
        return {
            "pixels": self.count,
            "min": self.minimum,
            "max": self.maximum,
            "mean": self.total / self.count,
            "percentiles": {f"p{p}": float(np.percentile(subset, p)) for p in PERCENTILES},
            "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in self.hist]},
        }


def _disparity_upper(reader: H5Reader) -> float:
    """A histogram range [0, upper) covering every valid disparity in the file.

    One extra pass over the disparity maps only (small next to the images), rounded up
    to a multiple of 8 px so histograms of similar files share their bins.
    """
    largest = 0.0
    for i in range(len(reader)):
        g = reader.group(i)
        if "disparity" in g:
            disp = g["disparity"][()]
            finite = disp[np.isfinite(disp)]
            if finite.size:
                largest = max(largest, float(finite.max()))
    return max(8.0, 8.0 * np.ceil((largest + 1e-6) / 8.0))


def summarize(path: str | os.PathLike, deep: bool = True, bins: int = 16, seed: int = 0) -> dict[str, Any]:
    """A JSON-ready summary of a polstereo file, including its schema violations."""
    path = Path(path)
    # in a child process: a corrupt file can crash the HDF5 library itself
    problems = validate_isolated(path, deep=deep)
    if problems:
        # statistics of a broken file would mislead; the violations are the summary
        return {"path": str(path), "valid": False, "problems": problems}
    try:
        return _valid_file_summary(path, bins, seed)
    except CORRUPT_FILE_ERRORS as err:
        # a damage the validator could not see (it reads every byte only with deep=True)
        raise PolstereoError(f"{path}: cannot be read ({type(err).__name__}: {' '.join(str(err).split())[:160]}); "
                             "the file is corrupt") from None


def _valid_file_summary(path: Path, bins: int, seed: int) -> dict[str, Any]:
    problems: list[str] = []
    reader = H5Reader(path)
    rng = np.random.default_rng(seed)
    with reader:
        acc = _Accumulator(bins=bins, upper=_disparity_upper(reader))
    pixels = valid = transparent = occluded = labeled = with_mask = 0
    dtypes: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    with reader:
        for i in range(len(reader)):
            g = reader.group(i)
            h, w = reader.shapes[i]
            sizes[f"{w}x{h}"] += 1
            dtypes[str(g["left"].dtype)] += 1
            pixels += h * w
            if "transparent" in g:
                with_mask += 1
                transparent += int(np.count_nonzero(g["transparent"][()]))
            if "occlusion" in g:
                occluded += int(np.count_nonzero(g["occlusion"][()]))
            if "disparity" in g:
                labeled += 1
                disp = g["disparity"][()]
                mask = ground_truth_mask(disp, g["valid"][()] if "valid" in g else None)
                valid += int(mask.sum())
                acc.add(disp[mask], rng)
    return {
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "format_version": reader.attrs["format_version"],
        "samples": len(reader),
        "angles_deg": list(reader.attrs["angles_deg"]),
        "color": reader.attrs["color"],
        "created_by": reader.attrs["created_by"],
        "provenance": reader.attrs["provenance"],
        "image_sizes": dict(sizes),
        "image_dtypes": dict(dtypes),
        "labeled_samples": labeled,
        "samples_with_transparency_mask": with_mask,
        "valid_share": valid / pixels if pixels else 0.0,
        "transparent_share": transparent / pixels if pixels else 0.0,
        "occluded_share": occluded / pixels if pixels else 0.0,
        "disparity": acc.result(),
        "valid": not problems,
        "problems": problems,
    }


def crop_stats(path: str | os.PathLike, crop_hw: tuple[int, int], num_crops: int = 200, bins: int = 16,
               seed: int = 0) -> dict[str, Any]:
    """Disparity distribution over random crops at the training size.

    The look the torchvision stereo recipe recommends before spending compute: which
    disparities a crop of this size actually contains, how many crops have no valid
    or no transparent pixels, and how often a disparity exceeds the crop width (such
    pixels cannot be matched inside the crop).
    """
    crop_h, crop_w = crop_hw
    reader = H5Reader(path)
    candidates = [i for i, (h, w) in enumerate(reader.shapes) if h >= crop_h and w >= crop_w]
    if not candidates:
        raise PolstereoError(f"{path}: no sample is at least {crop_w}x{crop_h} (WxH) for --crop")
    rng = np.random.default_rng(seed)
    with reader:
        acc = _Accumulator(bins=bins, upper=_disparity_upper(reader))
    empty = without_transparent = 0
    beyond_width = total_valid = 0
    transparent_shares = []
    with reader:
        labeled = [i for i in candidates if reader.has(i, "disparity")]
        if not labeled:
            raise PolstereoError(f"{path}: no sample has a disparity map; crop statistics need ground truth")
        for _ in range(num_crops):
            i = int(rng.choice(labeled))
            h, w = reader.shapes[i]
            y0, x0 = int(rng.integers(0, h - crop_h + 1)), int(rng.integers(0, w - crop_w + 1))
            g = reader.group(i)
            disp = g["disparity"][y0:y0 + crop_h, x0:x0 + crop_w]
            mask = ground_truth_mask(disp, g["valid"][y0:y0 + crop_h, x0:x0 + crop_w] if "valid" in g else None)
            values = disp[mask]
            if values.size == 0:
                empty += 1
            total_valid += values.size
            beyond_width += int((values >= crop_w).sum())
            acc.add(values, rng)
            if "transparent" in g:
                t = g["transparent"][y0:y0 + crop_h, x0:x0 + crop_w].astype(bool) & mask
                share = float(t.sum()) / max(int(mask.sum()), 1)
                transparent_shares.append(share)
                without_transparent += share == 0
    return {
        "path": str(path),
        "crop": [crop_h, crop_w],
        "crops": num_crops,
        "crops_without_valid_pixels": empty,
        "crops_without_transparent_pixels": int(without_transparent),
        "mean_transparent_share": float(np.mean(transparent_shares)) if transparent_shares else None,
        "share_beyond_crop_width": beyond_width / total_valid if total_valid else 0.0,
        "disparity": acc.result(),
    }


def text_histogram(hist: dict[str, list], width: int = 40) -> list[str]:
    """Rows like ``  0.0-  4.0 | ######        1234`` for a histogram dict."""
    edges, counts = hist["edges"], hist["counts"]
    peak = max(max(counts), 1)
    return [f"{edges[i]:7.1f}-{edges[i + 1]:7.1f} | {'#' * round(width * c / peak):<{width}} {c}"
            for i, c in enumerate(counts)]


def write_histogram_png(hist: dict[str, list], path: str | os.PathLike, title: str) -> None:
    """Render a histogram dict as a bar chart PNG (atomic write)."""
    import cv2

    from polstereo.io.atomic import atomic_path

    edges, counts = np.asarray(hist["edges"]), np.asarray(hist["counts"], dtype=np.float64)
    width, height, margin = 640, 360, 48
    canvas = np.full((height, width, 3), 255, np.uint8)
    plot_w, plot_h = width - 2 * margin, height - 2 * margin
    peak = max(counts.max(), 1.0)
    bar_w = plot_w / len(counts)
    for i, c in enumerate(counts):
        x0 = int(margin + i * bar_w)
        x1 = int(margin + (i + 1) * bar_w) - 1
        y0 = int(height - margin - plot_h * c / peak)
        cv2.rectangle(canvas, (x0, y0), (x1, height - margin), (180, 110, 40), thickness=-1)
    cv2.line(canvas, (margin, height - margin), (width - margin, height - margin), (0, 0, 0), 1)
    cv2.line(canvas, (margin, margin), (margin, height - margin), (0, 0, 0), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = int(margin + frac * plot_w)
        label = f"{edges[0] + frac * (edges[-1] - edges[0]):.0f}"
        cv2.putText(canvas, label, (x - 10, height - margin + 18), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "disparity (px)", (width // 2 - 50, height - 8), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, f"max count {int(peak)}", (margin, margin - 8), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, title[:70], (margin, 20), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), canvas):
            raise PolstereoError(f"{path}: cannot write PNG")
