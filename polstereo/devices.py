"""Device and mixed-precision choices shared by training, evaluation, inference and export."""

from __future__ import annotations

import torch

from polstereo.errors import PolstereoError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PolstereoError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PolstereoError(f"device {name!r} requested but CUDA is not available on this machine")
    return device


def resolve_amp(name: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``--amp``: ``auto`` is bf16 on GPUs that support it, off elsewhere."""
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    if name not in AMP_DTYPES:
        raise PolstereoError(f"unknown --amp {name!r}; use bf16, fp16, off or auto")
    return AMP_DTYPES[name]
