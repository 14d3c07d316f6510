"""Colour to mono: one convention for every path that turns RGB angle images into mono.

The mono equivalent of a colour polarization image is the Rec. 709 luminance of the
linear values, ``0.2126 R + 0.7152 G + 0.0722 B``. It is linear in intensity, so the
Stokes relations of the angle images survive, and it is what ``convert-dataset --color
mono`` writes, so a mono model sees the same kind of image at inference (``infer``, the
ONNX runtime) as in training. Works on numpy arrays and torch tensors alike; no torch
import here.
"""

from __future__ import annotations

import numpy as np

LUMA_WEIGHTS = (0.2126, 0.7152, 0.0722)


def luma(images, axis: int):
    """Rec. 709 luminance over the 3-channel ``axis`` (kept, size 1) of an array or tensor."""
    if images.shape[axis] != 3:
        raise ValueError(f"expected 3 colour channels along axis {axis}, got {images.shape[axis]}")
    shape = [1] * images.ndim
    shape[axis] = 3
    if isinstance(images, np.ndarray):
        weights = np.asarray(LUMA_WEIGHTS, dtype=np.float32).reshape(shape)
        return (images.astype(np.float32, copy=False) * weights).sum(axis=axis, keepdims=True)
    import torch

    weights = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device).reshape(shape)
    return (images * weights).sum(dim=axis, keepdim=True)


def to_channels(images, channels: int, axis: int):
    """``images`` with ``channels`` (1 or 3) along ``axis``: RGB to its :func:`luma`, mono
    repeated, unchanged when it already has them. Linear in intensity, so the Stokes
    relations of angle images survive. Arrays or tensors."""
    if images.shape[axis] == channels:
        return images
    if channels == 1:
        return luma(images, axis)
    if isinstance(images, np.ndarray):
        return np.repeat(images, channels, axis=axis)
    return images.repeat_interleave(channels, dim=axis)
