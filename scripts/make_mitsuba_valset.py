"""A broad validation set of polarized stereo pairs rendered by Mitsuba 3 (issue 23).

    python scripts/make_mitsuba_valset.py OUT_DIR [--pairs 48] [--size 320 256] [--spp 64] [--seed 0]
                                          [--shard I/N] [--convert]

Recipes are chosen on data from polstereo's own generator, which shares its blind spots
with the models trained on it. This set comes from an independent renderer (Mitsuba 3's
polarized path tracer: ``scalar_spectral_polarized``, the ``stokes`` integrator over a
``path`` integrator) and is broad: every pair is a random scene drawn from ``(seed, i)``
alone, with

- 1-3 pieces of glass (n = 1.45-1.6) of the kinds :data:`GLASS_KINDS`: solid spheres,
  cylinders, boxes and triangular prisms, slabs and panes at any orientation (half of
  them turned to within 4 degrees of Brewster's angle to the view ray), thin shells (a
  sphere with an inner sphere of air) and open-top vessels (a cup-shaped mesh);
- half tabletop scenes (the camera pitched 30-60 degrees down at a table, a wall
  behind it) and half objects in front of a wall, with photographs from scikit-image
  as textures; 1-3 opaque objects, diffuse or glossy and polarizing (``pplastic``);
- one lighting family per pair (:data:`LIGHTING_FAMILIES`): an environment map with
  bright windows, one or two area lamps, ceiling lights, or a uniform environment.

Each pair is a rectified rig (``--size`` pixels, a 45-60 degree field of view, the
baseline shortened where needed to keep disparities below 60 px), written in the
``mitsuba`` layout under ``OUT_DIR/src/pairNNN/``: ``left.exr`` and ``right.exr`` (Stokes
S0-S3, RGB, half floats, both views scaled by the same exposure), ``depth.exr`` (the
left camera's 1-spp ray distance to the first surface), ``mask.png`` (first surface is
glass: where a glass-only depth render agrees with the full one), ``occlusion.png``
(the first-surface point is hidden from, or outside, the right camera), ``meta.json``
(focal_px, baseline_m, scene_id, glass_kinds, lighting) and ``scene.json`` (the full
scene description and render statistics). A pair is rendered in a hidden folder and
renamed when complete: runs can be stopped and resumed, and ``--shard I/N`` renders
the pairs i = I (mod N) that are not there yet. When every pair is there (or with
``--convert``) the set is converted with ``polstereo convert-dataset --layout mitsuba``
into ``OUT_DIR/valset.h5``: validation data only, never trained on (docs/validation.md).

Needs the ``mitsuba`` package (``pip install mitsuba``, in ``.[test]``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from polstereo.data.converters.mitsuba import range_to_z
from polstereo.data.synthetic.geometry import rotation_about
from polstereo.io.images import write_exr, write_image
from polstereo.polar.stokes import dolp

from mitsuba_evidence import load_mitsuba  # scripts/ is on the path when a script runs

GLASS_KINDS = ("sphere", "cylinder", "box", "prism", "slab", "pane", "shell", "vessel")
LIGHTING_FAMILIES = ("window-env", "area-lamp", "overhead", "uniform")
SETTINGS = ("tabletop", "wall")
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "gravel", "camera")
OPAQUE_SHAPES = ("sphere", "cube", "cylinder")

DEFAULT_SPP = 64
MAX_PATH_DEPTH = 12          # enough for light through a shell and back out (8 interfaces) plus a bounce
MAX_DISPARITY_PX = 60.0      # the nearest first surface of a pair, at most
MAX_BASELINE = 0.45          # scene units (metre-like); shortened per pair to keep MAX_DISPARITY_PX
EXPOSURE_TARGET = 0.85       # the 99th percentile of the left view's S0 after scaling
OCCLUSION_TOLERANCE = 0.01   # relative depth a right-view surface must be in front to hide a point
MESH_SEGMENTS = 96
SETTINGS_RECORDED = ("size", "spp", "seed", "max_depth")  # a resumed run must match these


# ---------------------------------------------------------------------------------------
# Scene description: plain data (JSON), a function of (seed, index, aspect) only


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = _unit(rng.normal(size=4))
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _brewster_rotation(to_camera: np.ndarray, ior: float, offset_deg: float, side_draw, turn_draw) -> np.ndarray:
    """A rotation whose local z (a plate's thin axis) makes Brewster's angle + ``offset_deg``
    with ``to_camera``; ``side_draw`` and ``turn_draw`` (random 3-vectors) pick the side the
    plate leans to and its turn about its normal."""
    angle = np.arctan(ior) + np.radians(offset_deg)
    side = _unit(np.cross(to_camera, _unit(side_draw)))
    normal = np.cos(angle) * to_camera + np.sin(angle) * side
    a = _unit(np.cross(normal, _unit(turn_draw)))
    return np.stack([a, np.cross(normal, a), normal], axis=1)


def _upright_rotation(rng: np.random.Generator, max_tilt_deg: float) -> np.ndarray:
    """Turned about the vertical at random, tilted by up to ``max_tilt_deg``."""
    tilt = rotation_about(_unit([rng.normal(), 0.0, rng.normal()]), np.radians(rng.uniform(0, max_tilt_deg)))
    return tilt @ rotation_about([0, 1, 0], rng.uniform(0, 2 * np.pi))


def glass_shape(rng: np.random.Generator, kind: str) -> dict:
    """The size parameters of a piece of glass in its own frame (y up, centred)."""
    if kind == "sphere":
        return {"radius": rng.uniform(0.3, 0.7)}
    if kind == "shell":
        return {"radius": rng.uniform(0.35, 0.75), "wall": rng.uniform(0.03, 0.15)}
    if kind == "cylinder":
        return {"radius": rng.uniform(0.2, 0.45), "height": rng.uniform(0.5, 1.4)}
    if kind == "vessel":
        return {"radius": rng.uniform(0.25, 0.5), "height": rng.uniform(0.5, 1.2),
                "wall": rng.uniform(0.02, 0.06), "base": rng.uniform(0.04, 0.12)}
    if kind == "prism":
        return {"radius": rng.uniform(0.2, 0.45), "height": rng.uniform(0.6, 1.4)}
    if kind == "box":
        return {"half_extents": rng.uniform(0.15, 0.5, size=3)}
    if kind == "slab":
        return {"half_extents": [rng.uniform(0.25, 0.6), rng.uniform(0.25, 0.6), rng.uniform(0.04, 0.1)]}
    if kind == "pane":
        return {"half_extents": [rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.005, 0.015)]}
    raise ValueError(f"unknown glass kind {kind!r}")


def local_points(kind: str, shape: dict) -> np.ndarray:
    """``(N, 3)`` points whose hull bounds the object in its own frame (for placing it)."""
    if kind in ("sphere", "shell"):
        return shape["radius"] * np.concatenate([np.eye(3), -np.eye(3)])
    if kind in ("box", "slab", "pane", "cube"):
        corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
        return corners * np.asarray(shape["half_extents"])
    segments = 3 if kind == "prism" else 32
    phi = 2 * np.pi * np.arange(segments) / segments
    ring = np.stack([shape["radius"] * np.cos(phi), np.zeros(segments), shape["radius"] * np.sin(phi)], axis=1)
    return np.concatenate([ring + [0, -shape["height"] / 2, 0], ring + [0, shape["height"] / 2, 0]])


def _camera_frame(camera: dict, width: int, height: int) -> tuple[np.ndarray, ...]:
    """origin, forward, image-right, image-up unit vectors, and tan of the half fields of view."""
    origin = np.asarray(camera["origin"])
    forward = _unit(np.asarray(camera["target"]) - origin)
    right = _unit(np.cross(forward, camera["up"]))
    up = np.cross(right, forward)
    tan_x = np.tan(np.radians(camera["fov_deg"]) / 2)
    return origin, forward, right, up, tan_x, tan_x * height / width


def _describe_camera(rng: np.random.Generator, setting: str) -> tuple[dict, dict]:
    """The left camera and the backdrop of a setting."""
    fov = rng.uniform(45.0, 60.0)
    if setting == "tabletop":
        h, pitch, yaw = rng.uniform(2.2, 3.5), np.radians(rng.uniform(30, 60)), np.radians(rng.uniform(-20, 20))
        target = np.array([rng.uniform(-0.3, 0.3), 0.0, rng.uniform(-0.3, 0.3)])
        origin = target + h / np.tan(pitch) * np.array([np.sin(yaw), 0.0, np.cos(yaw)]) + [0.0, h, 0.0]
        photos = rng.choice(len(PHOTOS), size=2, replace=False)
        backdrop = {"table_photo": PHOTOS[photos[0]], "table_tiles": rng.uniform(3, 8),
                    "wall_photo": PHOTOS[photos[1]], "wall_tiles": rng.uniform(1.5, 4),
                    "wall_distance": rng.uniform(2.0, 4.5)}
    else:
        target = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.4, 0.4), -4.0])
        origin = np.zeros(3)
        backdrop = {"wall_photo": PHOTOS[rng.integers(len(PHOTOS))], "wall_tiles": rng.uniform(1.5, 4),
                    "wall_distance": rng.uniform(5.5, 9.0), "wall_yaw_deg": rng.uniform(-25, 25),
                    "wall_pitch_deg": rng.uniform(-10, 10)}
    camera = {"origin": origin.tolist(), "target": target.tolist(), "up": [0.0, 1.0, 0.0], "fov_deg": fov}
    return camera, backdrop


def _wall_plane(setting: str, backdrop: dict) -> tuple[np.ndarray, np.ndarray]:
    """A point on the backdrop wall and its normal (towards the camera)."""
    if setting == "tabletop":
        return np.array([0.0, 0.0, -backdrop["wall_distance"]]), np.array([0.0, 0.0, 1.0])
    turn = rotation_about([0, 1, 0], np.radians(backdrop["wall_yaw_deg"])) @ \
        rotation_about([1, 0, 0], np.radians(backdrop["wall_pitch_deg"]))
    return np.array([0.0, 0.0, -backdrop["wall_distance"]]), turn @ [0.0, 0.0, 1.0]


def _fits(center: np.ndarray, radius: float, frame: tuple, wall: tuple,
          placed: list[tuple[np.ndarray, float]]) -> bool:
    """In front of the camera, clear of the wall and of the objects placed so far (bounding spheres)."""
    origin, forward = frame[:2]
    return (np.dot(center - origin, forward) - radius >= 0.8 and np.dot(center - wall[0], wall[1]) >= radius + 0.05
            and all(np.linalg.norm(center - c) > radius + r + 0.03 for c, r in placed))


def _place(rng: np.random.Generator, setting: str, frame: tuple, wall: tuple, points: np.ndarray,
           placed: list[tuple[np.ndarray, float]], tries: int = 300) -> np.ndarray | None:
    """A centre for an object with (rotated) hull ``points``: in view, clear of the others and
    the wall, resting on the table in a tabletop scene; None when no try fits."""
    origin, forward, right, up, tan_x, tan_y = frame
    radius = float(np.linalg.norm(points, axis=1).max())
    for _ in range(tries):
        if setting == "tabletop":
            sx, sy = rng.uniform(-0.7, 0.7), rng.uniform(-0.75, 0.3)
            ray = forward + sx * tan_x * right + sy * tan_y * up
            if ray[1] >= -1e-3:
                continue
            ground = origin - origin[1] / ray[1] * ray
            center = ground + [0.0, 0.002 - points[:, 1].min(), 0.0]
        else:
            sx, sy = rng.uniform(-0.7, 0.7), rng.uniform(-0.7, 0.7)
            center = origin + rng.uniform(2.3, 6.5) * (forward + sx * tan_x * right + sy * tan_y * up)
        if _fits(center, radius, frame, wall, placed):
            return center
    return None


def _describe_lighting(rng: np.random.Generator, family: str, center: np.ndarray, toward_camera: np.ndarray) -> dict:
    if family == "uniform":
        return {"family": family, "radiance": rng.uniform(0.5, 1.2)}
    if family == "window-env":
        windows = [{"azimuth_deg": rng.uniform(0, 360), "elevation_deg": rng.uniform(-5, 45),
                    "width_deg": rng.uniform(15, 50), "height_deg": rng.uniform(15, 40),
                    "radiance": rng.uniform(4, 15), "tint": rng.uniform(0.85, 1.0, size=3).tolist()}
                   for _ in range(int(rng.integers(1, 4)))]
        return {"family": family, "sky": rng.uniform(0.1, 0.35), "ground": rng.uniform(0.03, 0.12),
                "windows": windows}
    ambient = rng.uniform(0.02, 0.1)
    if family == "area-lamp":
        lamps = []
        for _ in range(int(rng.integers(1, 3))):
            azimuth, elevation = np.radians(rng.uniform(-100, 100)), np.radians(rng.uniform(15, 70))
            horizontal = rotation_about([0, 1, 0], azimuth) @ _unit([toward_camera[0], 0.0, toward_camera[2]])
            direction = np.cos(elevation) * horizontal + [0.0, np.sin(elevation), 0.0]
            lamps.append({"position": (center + rng.uniform(3.0, 6.0) * direction).tolist(), "target": center.tolist(),
                          "size": rng.uniform(0.4, 1.0, size=2).tolist(), "radiance": rng.uniform(6, 20)})
        return {"family": family, "ambient": ambient, "lamps": lamps}
    if family == "overhead":
        ceiling = center[1] + rng.uniform(3.0, 4.5)
        lamps = [{"position": [center[0] + rng.uniform(-2.5, 2.5), ceiling, center[2] + rng.uniform(-2.5, 2.5)],
                  "size": rng.uniform(0.3, 0.8, size=2).tolist(), "radiance": rng.uniform(6, 20)}
                 for _ in range(int(rng.integers(2, 5)))]
        return {"family": family, "ambient": ambient, "lamps": lamps}
    raise ValueError(f"unknown lighting family {family!r}")


def _opaque_material(rng: np.random.Generator) -> dict:
    color = rng.uniform(0.05, 0.8, size=3).tolist()
    if rng.random() < 0.5:
        texture = PHOTOS[rng.integers(len(PHOTOS))] if rng.random() < 0.5 else None
        return {"type": "diffuse", "color": color, "photo": texture}
    return {"type": "pplastic", "color": color, "alpha": rng.uniform(0.02, 0.3)}


def describe_pair(seed: int, index: int, width: int = 320, height: int = 256) -> dict:
    """The scene of pair ``index``: a JSON-able dict that depends on ``(seed, index)`` and the
    aspect ratio only. The setting alternates, the lighting family cycles every 2 pairs and
    the first glass kind every pair (shifted each 8 pairs), so any 8 consecutive pairs hold
    every glass kind and every (setting, lighting) combination."""
    rng = np.random.default_rng([seed, index])
    setting = SETTINGS[index % 2]
    family = LIGHTING_FAMILIES[(index // 2 + seed) % len(LIGHTING_FAMILIES)]
    first_kind = GLASS_KINDS[(index + index // 8 + seed) % len(GLASS_KINDS)]
    camera, backdrop = _describe_camera(rng, setting)
    frame = _camera_frame(camera, width, height)
    wall = _wall_plane(setting, backdrop)
    placed: list[tuple[np.ndarray, float]] = []
    kinds = [first_kind] + [GLASS_KINDS[k] for k in rng.integers(len(GLASS_KINDS), size=int(rng.integers(0, 3)))]
    glass = []
    for kind in kinds:
        shape, ior = glass_shape(rng, kind), rng.uniform(1.45, 1.6)
        points = local_points(kind, shape)
        radius = float(np.linalg.norm(points, axis=1).max())
        for _ in range(20):  # a new orientation when the object finds no room
            brewster = None
            if kind in ("sphere", "shell"):
                rotation = np.eye(3)
            elif kind in ("slab", "pane") and rng.random() < 0.5:
                brewster = (rng.uniform(-4.0, 4.0), rng.normal(size=3), rng.normal(size=3))
                rotation = _brewster_rotation(-frame[1], ior, *brewster)
            elif setting == "tabletop" and kind in ("cylinder", "vessel", "prism"):
                rotation = _upright_rotation(rng, 25.0)
            else:
                rotation = _random_rotation(rng)
            center = _place(rng, setting, frame, wall, points @ rotation.T, placed, tries=40)
            if center is not None and brewster is not None:
                for _ in range(3):  # Brewster's angle to its own view ray; on the table again after the turn
                    rotation = _brewster_rotation(_unit(frame[0] - center), ior, *brewster)
                    if setting == "tabletop":
                        center[1] = 0.002 - (points @ rotation.T)[:, 1].min()
                if not _fits(center, radius, frame, wall, placed):
                    center = None
            if center is not None:
                break
        if center is None:
            continue
        placed.append((center, radius))
        glass.append({"kind": kind, "ior": ior, "center": center.tolist(), "rotation": rotation.tolist(),
                      "brewster": brewster is not None, **{k: np.asarray(v).tolist() for k, v in shape.items()}})
    opaque = []
    for _ in range(int(rng.integers(1, 4))):
        kind = OPAQUE_SHAPES[rng.integers(len(OPAQUE_SHAPES))]
        if kind == "sphere":
            shape, rotation = {"radius": rng.uniform(0.2, 0.5)}, np.eye(3)
        elif kind == "cube":
            shape, rotation = {"half_extents": rng.uniform(0.15, 0.45, size=3)}, _upright_rotation(rng, 10.0)
        else:
            shape, rotation = {"radius": rng.uniform(0.15, 0.4), "height": rng.uniform(0.4, 1.2)}, \
                _upright_rotation(rng, 10.0)
        points = local_points(kind, shape) @ rotation.T
        center = _place(rng, setting, frame, wall, points, placed)
        if center is not None:
            placed.append((center, float(np.linalg.norm(points, axis=1).max())))
            opaque.append({"shape": kind, "center": center.tolist(), "rotation": rotation.tolist(),
                           "material": _opaque_material(rng), **{k: np.asarray(v).tolist() for k, v in shape.items()}})
    scene_center = np.mean([c for c, _ in placed], axis=0) if placed else np.asarray(camera["target"])
    lighting = _describe_lighting(rng, family, scene_center, -frame[1])
    return _plain({"name": f"pair{index:03d}", "seed": seed, "index": index, "setting": setting,
                   "camera": camera, "backdrop": backdrop, "glass": glass, "opaque": opaque, "lighting": lighting})


def _plain(value):
    """numpy scalars and arrays in a nested structure -> Python floats, ints and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def glass_kinds_of(description: dict, visible: list[int] | None = None) -> list[str]:
    """meta.json's ``glass_kinds``: the distinct kinds, sorted, of the glass objects ``visible``
    (indices; default all), as docs/format.md asks: the ones that are the first surface of
    at least one pixel of the left view."""
    objects = description["glass"]
    return sorted({objects[k]["kind"] for k in (range(len(objects)) if visible is None else visible)})


def shard_indices(pairs: int, shard: int, num_shards: int) -> list[int]:
    """The pair indices shard ``shard`` of ``num_shards`` renders: i = shard (mod num_shards)."""
    return list(range(shard, pairs, num_shards))


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    try:
        shard, num = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= shard < num:
        raise argparse.ArgumentTypeError(f"shard I/N needs 0 <= I < N, got {text!r}")
    return shard, num


# ---------------------------------------------------------------------------------------
# Assets: photographs, meshes, environment maps


def revolution_mesh(profile: list[tuple[float, float]], segments: int) -> tuple[np.ndarray, ...]:
    """A closed surface of revolution about y from a profile of (radius, y) points running
    round the solid's cross-section (the solid on the left when going along the profile):
    ``(V, 3)`` vertices, ``(V, 3)`` outward normals (smooth round the axis, sharp at the
    profile's corners) and ``(F, 3)`` counter-clockwise triangles."""
    phi = 2 * np.pi * np.arange(segments) / segments
    cos, sin = np.cos(phi), np.sin(phi)
    vertices, normals, faces = [], [], []
    for (r0, y0), (r1, y1) in zip(profile[:-1], profile[1:]):
        nr, ny = _unit([y1 - y0, r0 - r1])
        base = sum(len(v) for v in vertices)
        for r, y in ((r0, y0), (r1, y1)):
            vertices.append(np.stack([r * cos, np.full(segments, y), r * sin], axis=1))
            normals.append(np.stack([nr * cos, np.full(segments, ny), nr * sin], axis=1))
        j = np.arange(segments)
        a0, a1, b0, b1 = base + j, base + (j + 1) % segments, base + segments + j, base + segments + (j + 1) % segments
        faces += [np.stack([a0, a1, b1], axis=1), np.stack([a0, b1, b0], axis=1)]
    vertices, normals, faces = np.concatenate(vertices), np.concatenate(normals), np.concatenate(faces)
    p0, p1, p2 = (vertices[faces[:, k]] for k in range(3))
    face_normal = np.cross(p1 - p0, p2 - p0)
    area = np.linalg.norm(face_normal, axis=1)
    faces = faces[area > 1e-12]  # the triangles that collapse at the axis
    face_normal = face_normal[area > 1e-12]
    flip = np.einsum("ij,ij->i", face_normal, normals[faces].sum(axis=1)) < 0
    faces[flip] = faces[flip][:, ::-1]
    return vertices, normals, faces


def mesh_profile(kind: str, shape: dict) -> tuple[list[tuple[float, float]], int]:
    """The revolution profile and segment count of a mesh kind (cylinder, vessel, prism)."""
    r, h = shape["radius"], shape["height"]
    if kind == "vessel":  # open top: outer wall, rim, inner wall, inner bottom
        t, b = shape["wall"], shape["base"]
        return [(0.0, -h / 2), (r, -h / 2), (r, h / 2), (r - t, h / 2), (r - t, -h / 2 + b), (0.0, -h / 2 + b)], \
            MESH_SEGMENTS
    return [(0.0, -h / 2), (r, -h / 2), (r, h / 2), (0.0, h / 2)], 3 if kind == "prism" else MESH_SEGMENTS


def write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None = None) -> None:
    """A binary little-endian PLY mesh (vertex normals optional: none = flat shading)."""
    props = ["x", "y", "z"] + (["nx", "ny", "nz"] if normals is not None else [])
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(vertices)}",
              *[f"property float {p}" for p in props], f"element face {len(faces)}",
              "property list uchar int vertex_indices", "end_header"]
    data = vertices if normals is None else np.concatenate([vertices, normals], axis=1)
    face_rows = np.zeros(len(faces), dtype=[("n", "u1"), ("v", "<i4", 3)])
    face_rows["n"], face_rows["v"] = 3, faces
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(np.ascontiguousarray(data, dtype="<f4").tobytes())
        f.write(face_rows.tobytes())


def window_envmap(lighting: dict, width: int = 256, height: int = 128) -> np.ndarray:
    """``(H, W, 3)`` equirectangular radiance (row 0 = straight up): a sky above a darker
    ground, and bright windows, each split in four panes by a cross bar."""
    elevation = 90.0 - (np.arange(height) + 0.5) / height * 180.0
    azimuth = (np.arange(width) + 0.5) / width * 360.0
    image = np.where(elevation[:, None, None] > 0, lighting["sky"], lighting["ground"]) * np.ones((height, width, 3))
    for w in lighting["windows"]:
        d_az = (azimuth - w["azimuth_deg"] + 180.0) % 360.0 - 180.0
        d_el = elevation - w["elevation_deg"]
        inside = (np.abs(d_az)[None, :] < w["width_deg"] / 2) & (np.abs(d_el)[:, None] < w["height_deg"] / 2)
        bars = (np.abs(d_az)[None, :] < 1.5) | (np.abs(d_el)[:, None] < 1.5)
        image[inside & ~bars] = w["radiance"] * np.asarray(w["tint"])
    return image.astype(np.float32)


def write_photos(directory: Path) -> dict[str, Path]:
    """The scikit-image photographs as PNG textures in ``directory`` (written once)."""
    import skimage.data

    paths = {}
    for name in PHOTOS:
        path = directory / f"{name}.png"
        if not path.exists():
            image = getattr(skimage.data, name)()
            write_image(path, image)
        paths[name] = path
    return paths


# ---------------------------------------------------------------------------------------
# The Mitsuba scene


def _transform(mi, rotation, center, scale=(1.0, 1.0, 1.0)):
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(rotation) @ np.diag(scale)
    matrix[:3, 3] = center
    return mi.ScalarTransform4f(matrix.tolist())


def _glass_shapes(mi, g: dict, meshes: dict[str, Path], key: str) -> dict:
    dielectric = {"type": "dielectric", "int_ior": g["ior"], "ext_ior": 1.0}
    kind = g["kind"]
    if kind in ("sphere", "shell"):
        shapes = {key: {"type": "sphere", "center": g["center"], "radius": g["radius"], "bsdf": dielectric}}
        if kind == "shell":  # a sphere of air inside the glass: nested dielectrics
            shapes[key + "_cavity"] = {"type": "sphere", "center": g["center"], "radius": g["radius"] * (1 - g["wall"]),
                                       "bsdf": {"type": "dielectric", "int_ior": 1.0, "ext_ior": g["ior"]}}
        return shapes
    if kind in ("box", "slab", "pane"):
        return {key: {"type": "cube", "to_world": _transform(mi, g["rotation"], g["center"], g["half_extents"]),
                      "bsdf": dielectric}}
    return {key: {"type": "ply", "filename": str(meshes[key]), "to_world": _transform(mi, g["rotation"], g["center"]),
                  "bsdf": dielectric}}


def _photo_texture(mi, path: Path, tiles: float) -> dict:
    return {"type": "bitmap", "filename": str(path), "to_uv": mi.ScalarTransform4f().scale([tiles, tiles, 1.0])}


def _opaque_shape(mi, o: dict, photos: dict[str, Path], meshes: dict[str, Path], key: str) -> dict:
    m = o["material"]
    if m["type"] == "pplastic":
        bsdf = {"type": "pplastic", "diffuse_reflectance": {"type": "rgb", "value": m["color"]}, "alpha": m["alpha"]}
    else:
        texture = _photo_texture(mi, photos[m["photo"]], 1.0) if m["photo"] else {"type": "rgb", "value": m["color"]}
        bsdf = {"type": "diffuse", "reflectance": texture}
    if o["shape"] == "sphere":
        return {"type": "sphere", "center": o["center"], "radius": o["radius"], "bsdf": bsdf}
    if o["shape"] == "cube":
        return {"type": "cube", "to_world": _transform(mi, o["rotation"], o["center"], o["half_extents"]), "bsdf": bsdf}
    return {"type": "ply", "filename": str(meshes[key]), "to_world": _transform(mi, o["rotation"], o["center"]),
            "bsdf": bsdf}


def _lights(mi, lighting: dict, envmap: Path | None) -> dict:
    family = lighting["family"]
    if family == "uniform":
        return {"sky": {"type": "constant", "radiance": {"type": "rgb", "value": lighting["radiance"]}}}
    if family == "window-env":
        return {"sky": {"type": "envmap", "filename": str(envmap)}}
    lights = {"sky": {"type": "constant", "radiance": {"type": "rgb", "value": lighting["ambient"]}}}
    for k, lamp in enumerate(lighting["lamps"]):
        position = np.asarray(lamp["position"])
        if family == "overhead":  # facing down
            target, up = position - [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]
        else:  # facing the objects
            target, up = np.asarray(lamp["target"]), [0.0, 1.0, 0.0]
        lights[f"lamp{k}"] = {
            "type": "rectangle",
            "to_world": mi.ScalarTransform4f().look_at(origin=position.tolist(), target=np.asarray(target).tolist(),
                                                       up=up).scale([*lamp["size"], 1.0]),
            "emitter": {"type": "area", "radiance": {"type": "rgb", "value": lamp["radiance"]}}}
    return lights


def _backdrop(mi, description: dict, photos: dict[str, Path]) -> dict:
    b, T = description["backdrop"], mi.ScalarTransform4f
    wall_texture = {"type": "diffuse", "reflectance": _photo_texture(mi, photos[b["wall_photo"]], b["wall_tiles"])}
    if description["setting"] == "tabletop":
        return {"table": {"type": "rectangle", "to_world": T().rotate([1, 0, 0], -90).scale(14.0),
                          "bsdf": {"type": "diffuse",
                                   "reflectance": _photo_texture(mi, photos[b["table_photo"]], b["table_tiles"])}},
                "backwall": {"type": "rectangle",
                             "to_world": T().translate([0.0, 6.0, -b["wall_distance"]]).scale([14.0, 6.0, 1.0]),
                             "bsdf": wall_texture}}
    return {"backwall": {"type": "rectangle",
                         "to_world": T().translate([0.0, 0.0, -b["wall_distance"]]).rotate([0, 1, 0], b["wall_yaw_deg"])
                         .rotate([1, 0, 0], b["wall_pitch_deg"]).scale(14.0),
                         "bsdf": wall_texture}}


def scene_dict(mi, description: dict, assets: dict, offset_m: float, width: int, height: int, integrator: dict,
               spp: int, only_glass: int | None = None) -> dict:
    """The pair's scene as a Mitsuba dict, seen by the left camera moved ``offset_m`` to its right;
    with ``only_glass`` = k nothing but glass object k (for the transparency mask)."""
    camera = description["camera"]
    _, _, right, *_ = _camera_frame(camera, width, height)
    shift = offset_m * right
    scene = {
        "type": "scene", "integrator": integrator,
        "sensor": {"type": "perspective", "fov": camera["fov_deg"], "fov_axis": "x",
                   "to_world": mi.ScalarTransform4f().look_at(origin=(np.asarray(camera["origin"]) + shift).tolist(),
                                                              target=(np.asarray(camera["target"]) + shift).tolist(),
                                                              up=camera["up"]),
                   "film": {"type": "hdrfilm", "width": width, "height": height, "rfilter": {"type": "box"}},
                   "sampler": {"type": "independent", "sample_count": spp}},
    }
    for k, g in enumerate(description["glass"]):
        if only_glass in (None, k):
            scene.update(_glass_shapes(mi, g, assets["meshes"], f"glass{k}"))
    if only_glass is not None:
        return scene
    for k, o in enumerate(description["opaque"]):
        scene[f"opaque{k}"] = _opaque_shape(mi, o, assets["photos"], assets["meshes"], f"opaque{k}")
    scene.update(_backdrop(mi, description, assets["photos"]))
    scene.update(_lights(mi, description["lighting"], assets.get("envmap")))
    return scene


def write_pair_assets(description: dict, directory: Path) -> dict:
    """The meshes and environment map a pair needs, written into ``directory``."""
    meshes = {}
    objects = [(f"glass{k}", g["kind"], g) for k, g in enumerate(description["glass"])]
    objects += [(f"opaque{k}", o["shape"], o) for k, o in enumerate(description["opaque"])]
    for key, kind, shape in objects:
        if kind in ("cylinder", "vessel", "prism"):
            profile, segments = mesh_profile(kind, shape)
            vertices, normals, faces = revolution_mesh(profile, segments)
            meshes[key] = directory / f"{key}.ply"
            write_ply(meshes[key], vertices, faces, None if kind == "prism" else normals)
    assets = {"meshes": meshes}
    if description["lighting"]["family"] == "window-env":
        image = window_envmap(description["lighting"])
        assets["envmap"] = directory / "envmap.exr"
        write_exr(assets["envmap"], {c: image[..., k] for k, c in enumerate("RGB")})
    return assets


# ---------------------------------------------------------------------------------------
# Rendering one pair


def _render(mi, scene: dict, seed: int) -> dict[str, np.ndarray]:
    """Render and split the film into named channel groups, e.g. ``S0 -> (H, W, 3)``, ``depth -> (H, W)``."""
    loaded = mi.load_dict(scene)
    mi.render(loaded, seed=seed)
    channels = {name: np.array(bitmap) for name, bitmap in loaded.sensors()[0].film().bitmap(raw=False).split()}
    return {name: a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a for name, a in channels.items()}


def occlusion_mask(range_left: np.ndarray, range_right: np.ndarray, focal_px: float, baseline_m: float,
                   tolerance: float = OCCLUSION_TOLERANCE) -> np.ndarray:
    """``(H, W)`` bool: the left view's first-surface point is hidden from, or outside, the
    right camera (and True where the left ray hits nothing, as the generator marks it).

    Both inputs are 1-spp ray distances (0 = no hit) of a rectified pair, the right camera
    ``baseline_m`` to the right. A point is hidden when the right view's surfaces at both
    pixels next to its projection lie more than ``tolerance`` (relative) nearer.
    """
    h, w = range_left.shape
    hit = range_left > 0
    z_left = range_to_z(np.where(hit, range_left, 1.0), focal_px)
    z_right = np.where(range_right > 0, range_to_z(np.where(range_right > 0, range_right, 1.0), focal_px), np.inf)
    x_right = np.arange(w)[None, :] - focal_px * baseline_m / z_left
    x0 = np.clip(np.floor(x_right).astype(int), 0, w - 1)
    x1 = np.clip(x0 + 1, 0, w - 1)
    rows = np.arange(h)[:, None]
    farther = np.maximum(z_right[rows, x0], z_right[rows, x1])
    hidden = farther < z_left * (1.0 - tolerance)
    return ~hit | (x_right < -0.5) | hidden


def render_pair(mi, description: dict, sample_dir: Path, photos: dict[str, Path], width: int, height: int,
                spp: int, max_depth: int = MAX_PATH_DEPTH) -> dict:
    """Render a pair into ``sample_dir`` (written under a hidden name, renamed when complete);
    returns render statistics."""
    started, cpu_started = time.perf_counter(), time.process_time()
    for stale in sample_dir.parent.glob(f".partial-{sample_dir.name}-*"):  # left by a stopped run
        shutil.rmtree(stale, ignore_errors=True)
    work = sample_dir.parent / f".partial-{sample_dir.name}-{os.getpid()}"
    (work / "assets").mkdir(parents=True)
    assets = {"photos": photos, **write_pair_assets(description, work / "assets")}
    focal = (width / 2.0) / np.tan(np.radians(description["camera"]["fov_deg"]) / 2.0)
    seed = (description["seed"] * 1_000_003 + description["index"] * 4) % 2**31
    depth = {"type": "aov", "aovs": "depth:depth"}

    def first_surface(offset: float, only_glass: int | None = None) -> np.ndarray:
        # 1 spp: averaging hits and misses at silhouettes would invent depths
        return _render(mi, scene_dict(mi, description, assets, offset, width, height, depth, 1, only_glass), 0)["depth"]

    range_left = first_surface(0.0)
    glass, visible = np.zeros(range_left.shape, dtype=bool), []
    for k in range(len(description["glass"])):
        # the same camera rays (same seed and sample count): equal distances mean glass k is the first surface
        range_glass = first_surface(0.0, only_glass=k)
        first = (range_glass > 0) & (np.abs(range_glass - range_left) <= 1e-4 * range_left)
        glass |= first
        if first.any():
            visible.append(k)
    z = range_to_z(range_left, focal)[range_left > 0]
    baseline = float(min(MAX_BASELINE, MAX_DISPARITY_PX * z.min() / focal)) if z.size else MAX_BASELINE
    range_right = first_surface(baseline)
    stokes_integrator = {"type": "stokes", "integrator": {"type": "path", "max_depth": max_depth}}
    views = {view: _render(mi, scene_dict(mi, description, assets, offset, width, height, stokes_integrator, spp),
                           seed + 1 + k)
             for k, (view, offset) in enumerate((("left", 0.0), ("right", baseline)))}
    s0 = views["left"]["S0"].mean(axis=-1)
    exposure = EXPOSURE_TARGET / max(float(np.percentile(s0, 99)), 1e-6)
    for view, channels in views.items():
        write_exr(work / f"{view}.exr", {f"S{k}.{c}": exposure * channels[f"S{k}"][..., j]
                                         for k in range(4) for j, c in enumerate("RGB")}, half=True)
    write_exr(work / "depth.exr", {"depth": range_left})
    write_image(work / "mask.png", glass.astype(np.uint8) * 255)
    occlusion = occlusion_mask(range_left, range_right, focal, baseline)
    write_image(work / "occlusion.png", occlusion.astype(np.uint8) * 255)
    stokes_left = np.stack([views["left"][f"S{k}"].mean(axis=-1) for k in range(3)])
    glass_dolp = dolp(stokes_left)[glass]
    # Monte Carlo noise inflates a pixel's DoLP; 5x5 means of the Stokes images show the signal
    smoothed = np.stack([cv2.blur(channel, (5, 5)) for channel in stokes_left])
    glass_interior = cv2.erode(glass.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    smoothed_dolp = dolp(smoothed)[glass_interior]
    stats = {"seconds": round(time.perf_counter() - started, 1),
             "cpu_seconds": round(time.process_time() - cpu_started, 1),
             "spp": spp, "exposure": exposure, "visible_glass": visible, "glass_fraction": float(glass.mean()),
             "glass_dolp_median": float(np.median(glass_dolp)) if glass_dolp.size else None,
             "glass_dolp_p90": float(np.percentile(glass_dolp, 90)) if glass_dolp.size else None,
             "glass_dolp_5x5_median": float(np.median(smoothed_dolp)) if smoothed_dolp.size else None,
             "max_disparity_px": float(focal * baseline / z.min()) if z.size else None,
             "occluded_fraction": float(occlusion[range_left > 0].mean()) if z.size else None}
    (work / "scene.json").write_text(json.dumps({**description, "render": stats}, indent=1))
    meta = {"focal_px": float(focal), "baseline_m": baseline, "scene_id": f"mitsuba-valset-s{description['seed']}-"
            f"{description['name']}", "glass_kinds": glass_kinds_of(description, visible),
            "lighting": description["lighting"]["family"]}
    (work / "meta.json").write_text(json.dumps(meta))
    shutil.rmtree(work / "assets")
    shutil.rmtree(sample_dir, ignore_errors=True)
    os.replace(work, sample_dir)
    return stats


# ---------------------------------------------------------------------------------------
# The set: settings, shards, conversion


def summary_line(description: dict, stats: dict) -> str:
    """One line on a rendered pair: time, content, how much glass and how polarized."""
    glass = "no glass visible" if stats["glass_dolp_median"] is None else (
        f"glass {100 * stats['glass_fraction']:.1f} % of pixels, DoLP median {stats['glass_dolp_median']:.3f} "
        f"(of 5x5 means {stats['glass_dolp_5x5_median'] or 0:.3f})")
    return (f"{description['name']}: {stats['seconds']:.0f} s ({stats['cpu_seconds']:.0f} CPU-s), "
            f"{description['setting']}, {description['lighting']['family']}, "
            f"{'+'.join(g['kind'] for g in description['glass'])}; {glass}; "
            f"max disparity {stats['max_disparity_px'] or 0:.1f} px")


def is_complete(sample_dir: Path) -> bool:
    return (sample_dir / "meta.json").is_file()


def check_settings(out: Path, settings: dict) -> str | None:
    """Record the run's settings in OUT/valset.json; a message when an earlier run used others."""
    path = out / "valset.json"
    if path.exists():
        earlier = json.loads(path.read_text())
        changed = [k for k in SETTINGS_RECORDED if earlier.get(k) != settings[k]]
        if changed:
            return (f"{out} was started with " + ", ".join(f"{k}={earlier.get(k)}" for k in changed)
                    + "; this run asks for " + ", ".join(f"{k}={settings[k]}" for k in changed)
                    + " (use those settings or another OUT_DIR)")
        settings = {**earlier, **settings, "pairs": max(earlier.get("pairs", 0), settings["pairs"])}
    tmp = out / f".valset.json.{os.getpid()}"
    tmp.write_text(json.dumps(settings, indent=1))
    os.replace(tmp, path)
    return None


def convert(out: Path, names: list[str]) -> int:
    """``polstereo convert-dataset --layout mitsuba`` of ``names`` into OUT/valset.h5 (all validation)."""
    polstereo = [sys.executable, "-m", "polstereo.cli.main"]
    with tempfile.TemporaryDirectory(prefix=".convert-", dir=out) as tmp:
        split_file = Path(tmp) / "split.txt"
        split_file.write_text("".join(f"{name} val\n" for name in names))
        done = subprocess.run([*polstereo, "convert-dataset", str(out / "src"), str(Path(tmp) / "h5"),
                               "--layout", "mitsuba", "--split-file", str(split_file), "--quiet"])
        if done.returncode != 0:
            return done.returncode
        os.replace(Path(tmp) / "h5" / "val.h5", out / "valset.h5")
    print(f"wrote {out / 'valset.h5'} ({len(names)} pairs)", flush=True)
    return subprocess.run([*polstereo, "inspect", str(out / "valset.h5"), "--quick", "--quiet"]).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, metavar="OUT_DIR")
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--size", type=int, nargs=2, default=(320, 256), metavar=("W", "H"))
    parser.add_argument("--spp", type=int, default=DEFAULT_SPP, help="samples per pixel of the Stokes renders")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-depth", type=int, default=MAX_PATH_DEPTH, help="path length of the Stokes renders")
    parser.add_argument("--shard", type=parse_shard, default=(0, 1), metavar="I/N",
                        help="render pairs i = I (mod N) only (default: all)")
    parser.add_argument("--convert", action="store_true",
                        help="convert into OUT_DIR/valset.h5 even when pairs are missing (done anyway when none is)")
    args = parser.parse_args(argv)
    width, height = args.size
    if args.pairs < 1 or args.spp < 1 or args.max_depth < 1 or min(width, height) < 8 or args.seed < 0:
        parser.error("--pairs, --spp and --max-depth must be >= 1, --seed >= 0, --size at least 8 8")
    mi = load_mitsuba()
    if mi is None:
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    problem = check_settings(args.out, {"size": [width, height], "spp": args.spp, "seed": args.seed,
                                        "max_depth": args.max_depth, "pairs": args.pairs})
    if problem:
        print(f"Error: {problem}", file=sys.stderr)
        return 2
    photos = write_photos(args.out / "textures")
    src = args.out / "src"
    src.mkdir(exist_ok=True)
    for index in shard_indices(args.pairs, *args.shard):
        description = describe_pair(args.seed, index, width, height)
        sample_dir = src / description["name"]
        if is_complete(sample_dir):
            continue
        stats = render_pair(mi, description, sample_dir, photos, width, height, args.spp, args.max_depth)
        print(summary_line(description, stats), flush=True)
    names = [f"pair{i:03d}" for i in range(args.pairs)]
    complete = [name for name in names if is_complete(src / name)]
    target = args.out / "valset.h5"
    if len(complete) < len(names) and not args.convert:
        print(f"{len(complete)} of {len(names)} pairs rendered; the last shard to finish converts", flush=True)
        return 0
    if not complete:
        print("Error: no pair rendered yet, nothing to convert", file=sys.stderr)
        return 1
    newest = max((src / name / "meta.json").stat().st_mtime for name in complete)
    if target.exists() and target.stat().st_mtime > newest and not args.convert:
        print(f"{target} is up to date", flush=True)
        return 0
    return convert(args.out, complete)


if __name__ == "__main__":
    sys.exit(main())
