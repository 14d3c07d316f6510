"""``train_curves.png``: loss and validation EPE against step, drawn from ``metrics.jsonl``.

OpenCV draws it (no plotting library in the core dependencies). ``metrics.jsonl`` stays
the record; the picture is a glance at it.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from polstereo.io.atomic import atomic_path

PANEL_W, PANEL_H, MARGIN = 480, 300, 50
COLORS = {"loss": (40, 110, 180), "all": (40, 40, 40), "transparent": (30, 30, 200), "opaque": (30, 160, 30),
          "saturation": (160, 60, 160)}  # BGR


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _series(records: list[dict]) -> dict[str, list[tuple[float, float]]]:
    series: dict[str, list[tuple[float, float]]] = {"loss": [], "saturation": []}
    for r in records:
        # null stands for a non-finite value (JSON has no NaN): a gap in the curve
        if r.get("type") == "train" and _finite(r.get("loss")):
            series["loss"].append((r["step"], r["loss"]))
        elif r.get("type") == "val":
            for region, m in (r.get("final") or {}).items():
                if _finite((m or {}).get("epe")):
                    series.setdefault(region, []).append((r["step"], m["epe"]))
            if r.get("saturation_fraction") is not None:
                series["saturation"].append((r["step"], r["saturation_fraction"]))
    return series


def _panel(title: str, lines: dict[str, list[tuple[float, float]]], x_max: float) -> np.ndarray:
    img = np.full((PANEL_H, PANEL_W, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, title, (MARGIN, 22), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    x0, y0, x1, y1 = MARGIN, PANEL_H - MARGIN, PANEL_W - 15, 35
    cv2.rectangle(img, (x0, y1), (x1, y0), (0, 0, 0), 1)
    values = [v for pts in lines.values() for _, v in pts]
    if not values:
        cv2.putText(img, "no data yet", (x0 + 10, (y0 + y1) // 2), font, 0.5, (120, 120, 120), 1, cv2.LINE_AA)
        return img
    lo, hi = 0.0, max(values) * 1.05 or 1.0
    to_px = lambda s, v: (int(x0 + (x1 - x0) * s / max(x_max, 1)), int(y0 - (y0 - y1) * (v - lo) / (hi - lo)))  # noqa
    for i, (name, pts) in enumerate(lines.items()):
        color = COLORS.get(name, (90, 90, 90))
        if len(pts) > 1:
            cv2.polylines(img, [np.array([to_px(s, v) for s, v in pts], np.int32)], False, color, 1, cv2.LINE_AA)
        for s, v in pts[-1:]:
            cv2.circle(img, to_px(s, v), 3, color, -1)
        cv2.putText(img, name, (x1 - 110, y1 + 15 + 15 * i), font, 0.4, color, 1, cv2.LINE_AA)
    for frac in (0.0, 0.5, 1.0):
        cv2.putText(img, f"{lo + frac * (hi - lo):.3g}", (5, int(y0 - (y0 - y1) * frac) + 4), font, 0.35,
                    (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"step (max {int(x_max)})", (x0 + 120, PANEL_H - 15), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def write_train_curves(metrics_path: str | Path, png_path: str | Path) -> None:
    """Render loss, validation EPE per region and the saturation fraction into one PNG."""
    path = Path(metrics_path)
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    series = _series(records)
    x_max = max([s for pts in series.values() for s, _ in pts] or [1])
    panels = [_panel("training loss", {"loss": series["loss"]}, x_max),
              _panel("validation EPE (px)", {k: v for k, v in series.items() if k not in ("loss", "saturation")},
                     x_max)]
    if series["saturation"]:
        panels.append(_panel("tanh saturation fraction", {"saturation": series["saturation"]}, x_max))
    with atomic_path(png_path) as tmp:
        cv2.imwrite(str(tmp), np.concatenate(panels, axis=1))
