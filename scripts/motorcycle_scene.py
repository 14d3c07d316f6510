"""Write the Middlebury Motorcycle pair that scikit-image ships as a Middlebury scene folder.

    python scripts/motorcycle_scene.py OUT_DIR
    polstereo eval models/polstereo-small.ckpt --data OUT_DIR    # the base alone on a real pair

scikit-image's wheel holds ``motorcycle_left.png``, ``motorcycle_right.png`` and
``motorcycle_disp.npz`` (741x500, infinite = unknown): written as ``im0.png``, ``im1.png``
and ``disp0.pfm``, the layout ``polstereo eval`` reads. The one real, ordinary stereo pair with
ground truth on this machine: the check that a synthetic fine-tune did not forget real images.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import skimage.data

from polstereo.io.images import write_image, write_pfm


def main(out_dir: Path) -> None:
    left, right, disparity = skimage.data.stereo_motorcycle()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_image(out_dir / "im0.png", left)
    write_image(out_dir / "im1.png", right)
    write_pfm(out_dir / "disp0.pfm", np.asarray(disparity, np.float32))
    print(f"wrote {out_dir}: {left.shape[1]}x{left.shape[0]}, "
          f"{np.isfinite(disparity).mean() * 100:.1f} % pixels with ground truth")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    main(Path(sys.argv[1]))
