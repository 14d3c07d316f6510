"""Compare the weights of two polstereo checkpoints (or model files).

    python scripts/lab/compare_checkpoints.py runs/plain/last.ckpt runs/torchrun/last.ckpt [--atol 0]

Prints the largest absolute difference over all weight tensors and the tensor it is in;
exits 1 when the tensors' names or shapes differ or the difference exceeds --atol.
Used to show that a 1-process torchrun run trains the same model as a plain run.
"""

from __future__ import annotations

import argparse
import sys


from polstereo.errors import PolstereoError
from polstereo.models.files import read_payload


def max_difference(a: dict, b: dict) -> tuple[float, str]:
    """``(max |a - b|, name)`` over matching tensors; raises on different names or shapes."""
    if a.keys() != b.keys():
        raise PolstereoError(f"different tensors: {sorted(a.keys() ^ b.keys())[:5]}")
    worst, where = 0.0, ""
    for name, x in a.items():
        y = b[name]
        if x.shape != y.shape:
            raise PolstereoError(f"{name}: shapes {tuple(x.shape)} and {tuple(y.shape)} differ")
        if x.is_floating_point():
            d = float((x.double() - y.double()).abs().max()) if x.numel() else 0.0
        else:
            d = float((x != y).any())
        if d > worst or not where:
            worst, where = d, name
    return worst, where


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--atol", type=float, default=0.0)
    args = parser.parse_args()
    try:
        a, b = read_payload(args.first), read_payload(args.second)
        diff, name = max_difference(a["state_dict"], b["state_dict"])
    except PolstereoError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    steps = [p.get("step") for p in (a, b)]
    where = "identical weights" if diff == 0 else f"largest in {name}"
    print(f"max |difference| {diff:.3g} ({where}); steps {steps[0]} and {steps[1]}")
    return 0 if diff <= args.atol else 1


if __name__ == "__main__":
    sys.exit(main())
