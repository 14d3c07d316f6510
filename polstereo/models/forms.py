"""One pass or a loop: how the multi-candidate operations run.

The correlation lookup (every pyramid level) and the correction's search cost volume
(every candidate offset) each have two forms with the same outputs bit for bit (their
gradients agree to rounding):

- one pass over all candidates: a dozen kernels in all. Eager GPU inference at batch 1
  is bound by kernel launches, so this is the form on CUDA;
- a loop, one candidate at a time: each step's intermediates stay in the CPU caches,
  where the one-pass form's K-times larger ones ran up to 3x slower (the search volume
  at 1216×1024) and take more memory. The form elsewhere.

:func:`prefer_one_pass` overrides the choice (benchmarks count the CUDA form's kernels
on a CPU with it).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

_override: bool | None = None


def one_pass(tensor: torch.Tensor, requested: bool | None = None) -> bool:
    """The form for work on ``tensor``'s device: ``requested`` if given, else the override,
    else one pass on CUDA."""
    if requested is not None:
        return requested
    return tensor.is_cuda if _override is None else _override


@contextlib.contextmanager
def prefer_one_pass(value: bool | None) -> Iterator[None]:
    """Within the block, multi-candidate operations run in one pass (True), as a loop
    (False) or by device (None)."""
    global _override
    before, _override = _override, value
    try:
        yield
    finally:
        _override = before
