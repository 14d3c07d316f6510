"""Coloured point clouds from depth maps, and PLY files.

Points are in the rectified left camera's frame (OpenCV convention: x right, y down,
z forward), in the unit of the depth map. PLY files are binary little-endian with one
``vertex`` element: ``float x, y, z`` and, when colours are given, ``uchar red, green,
blue``; MeshLab, CloudCompare and Open3D read them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from polstereo.errors import PolstereoError
from polstereo.io.atomic import atomic_path

PathLike = str | os.PathLike

# PLY scalar type names (both spellings) -> numpy little-endian dtypes.
PLY_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "<i2", "int16": "<i2", "ushort": "<u2", "uint16": "<u2",
    "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4",
    "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8",
}


def backproject(depth: np.ndarray, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """Pixel (x, y) with depth Z -> ``((x - cx) Z / fx, (y - cy) Z / fy, Z)``: ``(H, W)`` -> ``(H, W, 3)``."""
    depth = np.asarray(depth, dtype=np.float32)
    ys, xs = np.indices(depth.shape, dtype=np.float32)
    return np.stack([(xs - cx) * depth / fx, (ys - cy) * depth / fy, depth], axis=-1)


def point_cloud(depth: np.ndarray, fx: float, fy: float, cx: float, cy: float,
                colors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Points ``(N, 3)`` float32 (and colours ``(N, 3)`` uint8) of the pixels with finite, positive depth.

    ``colors`` is an ``(H, W, 3)`` uint8 image aligned with ``depth``. Points come in row-major
    pixel order.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise PolstereoError(f"depth must be an (H, W) map, got shape {depth.shape}")
    if colors is not None and np.shape(colors) != depth.shape + (3,):
        raise PolstereoError(f"point colours must be (H, W, 3) = {depth.shape + (3,)}, got {np.shape(colors)}")
    valid = np.isfinite(depth) & (depth > 0)
    points = backproject(depth, fx, fy, cx, cy)[valid]
    return points, None if colors is None else np.asarray(colors, dtype=np.uint8)[valid]


def write_ply(path: PathLike, points: np.ndarray, colors: np.ndarray | None = None) -> None:
    """Write ``(N, 3)`` points (and ``(N, 3)`` uint8 colours) as a binary little-endian PLY, atomically."""
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise PolstereoError(f"{path}: points must be (N, 3), got shape {points.shape}")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != points.shape:
            raise PolstereoError(f"{path}: colours {colors.shape} must match points {points.shape}")
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(len(points), dtype=fields)
    for i, axis in enumerate("xyz"):
        vertices[axis] = points[:, i]
    if colors is not None:
        for i, channel in enumerate(("red", "green", "blue")):
            vertices[channel] = colors[:, i]
    names = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", "comment written by polstereo",
              f"element vertex {len(points)}", *(f"property {names[t]} {n}" for n, t in fields), "end_header"]
    with atomic_path(path) as tmp:
        tmp.write_bytes(("\n".join(header) + "\n").encode("ascii") + vertices.tobytes())


_ELEMENT = re.compile(r"element\s+(\w+)\s+(\d+)")
_PROPERTY = re.compile(r"property\s+(\w+)\s+(\w+)")


def read_ply(path: PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Points ``(N, 3)`` float32 and colours ``(N, 3)`` uint8 (or None) of a binary little-endian PLY.

    Reads the first element (``vertex``) with scalar properties; list properties (faces)
    are not supported there.
    """
    path = Path(path)
    if not path.is_file():
        raise PolstereoError(f"{path}: no such file")
    raw = path.read_bytes()
    end = raw.find(b"end_header\n")
    if not raw.startswith(b"ply\n") or end < 0:
        raise PolstereoError(f"{path}: not a PLY file")
    lines = raw[:end].decode("ascii", errors="replace").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise PolstereoError(f"{path}: only binary little-endian PLY files are read")
    count, fields = None, []
    for line in lines:
        element = _ELEMENT.match(line)
        if element:
            if count is not None:
                break  # only the first element
            if element.group(1) != "vertex":
                raise PolstereoError(f"{path}: the first PLY element must be 'vertex'")
            count = int(element.group(2))
            continue
        prop = _PROPERTY.match(line)
        if prop and count is not None:
            if prop.group(1) not in PLY_TYPES:
                raise PolstereoError(f"{path}: unsupported PLY property type {prop.group(1)!r}")
            fields.append((prop.group(2), PLY_TYPES[prop.group(1)]))
    if count is None or not {"x", "y", "z"} <= {n for n, _ in fields}:
        raise PolstereoError(f"{path}: no vertex element with x, y, z")
    dtype = np.dtype(fields)
    body = raw[end + len(b"end_header\n"):]
    if len(body) < count * dtype.itemsize:
        raise PolstereoError(f"{path}: truncated PLY ({len(body)} bytes for {count} vertices)")
    vertices = np.frombuffer(body, dtype=dtype, count=count)
    points = np.stack([vertices[a] for a in "xyz"], axis=-1).astype(np.float32)
    has_color = {"red", "green", "blue"} <= set(dtype.names)
    colors = np.stack([vertices[c] for c in ("red", "green", "blue")], axis=-1).astype(np.uint8) if has_color else None
    return points, colors


__all__ = ["backproject", "point_cloud", "write_ply", "read_ply"]
