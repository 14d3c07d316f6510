"""Ordinary stereo datasets on disk: where a Middlebury scene folder keeps its files.

One place for the layout that ``polstereo eval`` (ordinary pairs with ground truth) and
``polstereo infer`` (a scene folder as ``--left``) both read.
"""

from __future__ import annotations

from pathlib import Path

MIDDLEBURY_LEFT, MIDDLEBURY_RIGHT = "im0.png", "im1.png"
MIDDLEBURY_DISPARITY, MIDDLEBURY_MASK = "disp0.pfm", "mask0nocc.png"


def middlebury_scenes(root: Path) -> list[Path]:
    """``root`` itself if it is a Middlebury scene (holds ``im0.png``), else its scene subfolders, sorted."""
    root = Path(root)
    if (root / MIDDLEBURY_LEFT).is_file():
        return [root]
    return sorted(d for d in root.iterdir() if d.is_dir() and (d / MIDDLEBURY_LEFT).is_file())
