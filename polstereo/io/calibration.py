"""Stereo calibration files, rectification and disparity -> depth.

Two kinds of calibration, read by :func:`load_calibration`:

- :class:`StereoCalibration`, an OpenCV stereo calibration of an *unrectified* rig
  (``K1, D1, K2, D2, R, T`` and optionally the image size), as written by
  ``cv2.stereoCalibrate`` + ``cv2.FileStorage`` (YAML/XML/JSON) or as plain JSON lists.
  :meth:`StereoCalibration.rectifier` builds the rectification maps
  (``cv2.stereoRectify`` + ``cv2.initUndistortRectifyMap``) and the rectified camera.
- :class:`RectifiedCamera`, for pairs that are already rectified: ``{K: 3x3, baseline}``
  (optionally ``doffs``) in JSON or YAML, or a Middlebury ``calib.txt``.

OpenCV conventions: ``T`` takes points from the left camera's frame to the right one's
(``X_right = R X_left + T``), so a right camera to the right of the left one has
``T[0] < 0``. Depth comes out in the unit of ``T`` / ``baseline`` (Middlebury: mm).

Depth from disparity on a rectified pair: ``Z = f·B / (d + doffs)``, ``doffs`` the
x-difference of the principal points (right minus left; 0 after OpenCV rectification).

Rectification keeps the polarization frame: the rectifying rotation (and the undistortion)
turns each camera's image plane, so after resampling an angle stack its polarizers are no
longer at 0/45/90/135° of the rectified image. :meth:`Rectifier.rectify` given the stack's
``angles_deg`` therefore also rotates the Stokes vector of every rectified pixel by twice the
local in-plane rotation of the image (:func:`rectification_rotation`,
:func:`rotate_polarization_frame`), so AoLP is measured in the rectified image's axes.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

import cv2
import numpy as np

from polstereo.errors import PolstereoError
from polstereo.polar.stokes import angles_from_stokes, stokes_from_angles

PathLike = Union[str, os.PathLike]

# Accepted spellings of each calibration entry (OpenCV samples write M1/M2 for K1/K2).
KEY_ALIASES: dict[str, tuple[str, ...]] = {
    "K1": ("K1", "M1", "cameraMatrix1", "camera_matrix_1"),
    "D1": ("D1", "distCoeffs1", "dist_coeffs_1"),
    "K2": ("K2", "M2", "cameraMatrix2", "camera_matrix_2"),
    "D2": ("D2", "distCoeffs2", "dist_coeffs_2"),
    "R": ("R",),
    "T": ("T",),
    "image_size": ("image_size", "imageSize", "size"),
    "image_width": ("image_width", "width"),
    "image_height": ("image_height", "height"),
    "K": ("K", "camera_matrix", "cameraMatrix"),
    "baseline": ("baseline", "baseline_m"),
    "doffs": ("doffs",),
}


# ---------------------------------------------------------------------------- data
@dataclass(frozen=True)
class RectifiedCamera:
    """Pinhole intrinsics of the left camera of a rectified pair, and the baseline.

    fx, fy, cx, cy: pixels; baseline: distance between the optical centres (its unit is
    the depth unit); doffs: principal-point x offset right minus left, pixels.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    baseline: float
    doffs: float = 0.0

    def __post_init__(self):
        if not (np.isfinite(self.fx) and self.fx > 0 and np.isfinite(self.fy) and self.fy > 0):
            raise PolstereoError(f"calibration: focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        if not (np.isfinite(self.baseline) and self.baseline > 0):
            raise PolstereoError(f"calibration: baseline must be positive, got {self.baseline}")

    def depth(self, disparity: np.ndarray) -> np.ndarray:
        """Depth ``(H, W)`` float32 from disparity in pixels, see :func:`depth_from_disparity`."""
        return depth_from_disparity(disparity, self.fx, self.baseline, self.doffs)

    def to_dict(self) -> dict:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy,
                "baseline": self.baseline, "doffs": self.doffs}


@dataclass(frozen=True)
class Rectifier:
    """Rectification maps for one image size (float32 ``(H, W)`` source coordinates per view).

    left_rotation, right_rotation: float32 ``(H, W)``, per rectified pixel the in-plane
    rotation (radians, counter-clockwise on screen) of the image content from the original
    to the rectified image (:func:`rectification_rotation`); derived from the maps when not
    given.
    """

    left_x: np.ndarray
    left_y: np.ndarray
    right_x: np.ndarray
    right_y: np.ndarray
    camera: RectifiedCamera
    left_rotation: np.ndarray | None = None
    right_rotation: np.ndarray | None = None

    def __post_init__(self):
        for view in ("left", "right"):
            if getattr(self, f"{view}_rotation") is None:
                rotation = rectification_rotation(getattr(self, f"{view}_x"), getattr(self, f"{view}_y"))
                object.__setattr__(self, f"{view}_rotation", rotation)

    def rectify(self, stack: np.ndarray, view: str, angles_deg: Sequence[float] | None = None) -> np.ndarray:
        """Rectify a ``(..., H, W)`` stack of one view (``"left"``/``"right"``), every plane alike.

        With ``angles_deg`` the stack is a polarizer-angle stack ``(A, ..., H, W)`` (one angle
        per index of axis 0) and its polarization frame is turned with the image
        (:func:`rotate_polarization_frame`), so AoLP comes out in the rectified image's axes;
        without, the planes are only resampled (ordinary images, or anything else).
        """
        maps = {"left": (self.left_x, self.left_y, self.left_rotation),
                "right": (self.right_x, self.right_y, self.right_rotation)}
        if view not in maps:
            raise ValueError(f"view must be 'left' or 'right', got {view!r}")
        map_x, map_y, rotation = maps[view]
        rectified = remap_planes(stack, map_x, map_y)
        if angles_deg is None:
            return rectified
        return rotate_polarization_frame(rectified, rotation, angles_deg)


@dataclass(frozen=True)
class StereoCalibration:
    """An unrectified stereo rig: intrinsics, distortion, and the right camera's pose.

    K1, K2: ``(3, 3)``; D1, D2: distortion coefficients (OpenCV order); R ``(3, 3)`` and
    T ``(3,)`` with ``X_right = R X_left + T``; image_size ``(width, height)`` the
    calibration was made at, or None (then any size is accepted).
    """

    K1: np.ndarray
    D1: np.ndarray
    K2: np.ndarray
    D2: np.ndarray
    R: np.ndarray
    T: np.ndarray
    image_size: tuple[int, int] | None = None

    def rectifier(self, image_size: tuple[int, int], alpha: float = 0.0) -> Rectifier:
        """Rectification maps for images of ``image_size`` ``(width, height)``.

        ``alpha`` as in ``cv2.stereoRectify``: 0 keeps only valid pixels (no black
        borders, which a stereo network would try to match), 1 keeps every source pixel.
        """
        width, height = (int(v) for v in image_size)
        if self.image_size is not None and tuple(self.image_size) != (width, height):
            raise PolstereoError(f"calibration was made for {self.image_size[0]}x{self.image_size[1]} "
                                 f"(WxH) images, got {width}x{height}")
        t = self.T.reshape(3)
        if abs(t[0]) <= abs(t[1]):
            raise PolstereoError("calibration: the rig is vertical (|T_y| >= |T_x|); only horizontal "
                                 "stereo pairs are supported")
        if t[0] > 0:
            raise PolstereoError("calibration: T_x > 0 puts the right camera to the left of the left one; "
                                 "swap --left and --right (or check the sign of T)")
        r1, r2, p1, p2, _, _, _ = cv2.stereoRectify(
            self.K1, self.D1, self.K2, self.D2, (width, height), self.R, t.reshape(3, 1),
            flags=cv2.CALIB_ZERO_DISPARITY, alpha=alpha)
        left = cv2.initUndistortRectifyMap(self.K1, self.D1, r1, p1, (width, height), cv2.CV_32FC1)
        right = cv2.initUndistortRectifyMap(self.K2, self.D2, r2, p2, (width, height), cv2.CV_32FC1)
        camera = RectifiedCamera(fx=float(p1[0, 0]), fy=float(p1[1, 1]), cx=float(p1[0, 2]), cy=float(p1[1, 2]),
                                 baseline=float(-p2[0, 3] / p2[0, 0]), doffs=float(p2[0, 2] - p1[0, 2]))
        return Rectifier(left[0], left[1], right[0], right[1], camera,
                         left_rotation=rectification_rotation(*left), right_rotation=rectification_rotation(*right))


Calibration = Union[StereoCalibration, RectifiedCamera]


# ---------------------------------------------------------------------------- pure functions
def depth_from_disparity(disparity: np.ndarray, focal_px: float, baseline: float, doffs: float = 0.0) -> np.ndarray:
    """``Z = focal_px · baseline / (d + doffs)``, float32 ``(H, W)``, NaN where invalid.

    Invalid: non-finite disparity or ``d + doffs <= 0`` (a point at or beyond infinity).
    ``Z`` is in the unit of ``baseline``.
    """
    d = np.asarray(disparity, dtype=np.float64) + doffs
    valid = np.isfinite(d) & (d > 0)
    depth = np.full(d.shape, np.nan, dtype=np.float64)
    depth[valid] = focal_px * baseline / d[valid]
    return depth.astype(np.float32)


def remap_planes(stack: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """``cv2.remap`` (bilinear, zero outside) applied alike to every ``(H, W)`` plane of ``(..., H, W)``.

    Bilinear resampling is linear in intensity, so angle images rectified with the same
    maps keep their Stokes relations.
    """
    stack = np.asarray(stack, dtype=np.float32)
    planes = stack.reshape((-1,) + stack.shape[-2:])
    out = np.stack([cv2.remap(p, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                    for p in planes])
    return out.reshape(stack.shape[:-2] + map_x.shape)


def rectification_rotation(map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """Per rectified pixel, the in-plane rotation of the image content that the maps apply.

    Args:
        map_x, map_y: ``(H, W)`` source (original image) pixel coordinates of each rectified
            pixel, as for ``cv2.remap``.

    Returns:
        float32 ``(H, W)`` angle θ in radians, counter-clockwise on screen (the AoLP
        convention of :mod:`polstereo.polar.stokes`): a direction at angle ψ in the original
        image is at ψ + θ in the rectified one, so AoLP_rectified = AoLP_original + θ.

    θ is the rotation part of the local Jacobian of the map (its polar decomposition), from
    central differences of the maps. A pure in-plane rotation (a roll) gives its angle
    exactly; radial distortion, a symmetric stretch, gives 0; the small perspective shear of
    a rectifying rotation about another axis is left out (it is not a rotation, and Stokes
    vectors can only be rotated). With the map's Jacobian (rectified (x', y') -> original
    (x, y), y down) ``a = ∂x/∂x'``, ``b = ∂x/∂y'``, ``c = ∂y/∂x'``, ``d = ∂y/∂y'``, the map turns
    by ``-θ`` on screen and the content, going the other way, by ``θ = atan2(c - b, a + d)``.
    """
    map_x = np.asarray(map_x, dtype=np.float32)
    map_y = np.asarray(map_y, dtype=np.float32)
    if min(map_x.shape) < 2:  # no neighbour to difference with: no measurable rotation
        return np.zeros(map_x.shape, dtype=np.float32)
    # Differences of nearby float32 coordinates are (nearly) exact, so float32 loses little;
    # second-order one-sided differences at the borders, where distortion bends the maps most.
    edge_order = 2 if min(map_x.shape) >= 3 else 1
    dx_drow, dx_dcol = np.gradient(map_x, edge_order=edge_order)
    dy_drow, dy_dcol = np.gradient(map_y, edge_order=edge_order)
    return np.arctan2(dy_dcol - dx_drow, dx_dcol + dy_drow).astype(np.float32)


def rotate_polarization_frame(stack: np.ndarray, rotation: np.ndarray,
                              angles_deg: Sequence[float]) -> np.ndarray:
    """Re-express a polarizer-angle stack in image axes turned by ``rotation``, per pixel.

    Args:
        stack: ``(A, ..., H, W)`` intensities, one image per polarizer angle along axis 0.
        rotation: ``(H, W)`` radians, counter-clockwise on screen: the rotation of the image
            content (:func:`rectification_rotation`); AoLP increases by it.
        angles_deg: the A polarizer angles, degrees (:mod:`polstereo.polar.stokes` convention).

    Returns:
        float32, the shape of ``stack``: the images polarizers at ``angles_deg`` would have
        recorded in the turned axes. AoLP + θ means (S1, S2) turned by 2θ:
        ``S1' = cos 2θ·S1 − sin 2θ·S2``, ``S2' = sin 2θ·S1 + cos 2θ·S2``; S0 and DoLP are
        kept. Only the change of (S1, S2) is added back to the angle images, so whatever the
        Stokes model does not explain (noise, more than 3 angles) is kept and θ = 0 returns
        the stack unchanged.
    """
    stack = np.asarray(stack, dtype=np.float32)
    rotation = np.asarray(rotation, dtype=np.float32)
    if rotation.shape != stack.shape[-2:]:
        raise ValueError(f"rotation is {rotation.shape}, images are {stack.shape[-2:]}")
    stokes = stokes_from_angles(stack, angles_deg, axis=0)
    cos_minus_one = -2.0 * np.sin(rotation) ** 2  # cos 2θ − 1, without cancellation for small θ
    sin_2 = np.sin(2.0 * rotation)
    s1, s2 = stokes[1], stokes[2]
    change = np.stack([np.zeros_like(s1), cos_minus_one * s1 - sin_2 * s2, sin_2 * s1 + cos_minus_one * s2])
    return stack + angles_from_stokes(change, angles_deg, axis=0)


# ---------------------------------------------------------------------------- reading
def load_calibration(path: PathLike) -> Calibration:
    """Read a calibration file (see the module docstring for the formats).

    ``.json``: JSON; ``.txt`` with ``cam0=``: Middlebury; anything else: ``cv2.FileStorage``
    (YAML ``.yml``/``.yaml``, XML). Matrices may be nested lists, flat lists or OpenCV
    matrices (``!!opencv-matrix`` / ``{"type_id": "opencv-matrix", ...}``).
    """
    path = Path(path)
    if not path.is_file():
        raise PolstereoError(f"calibration file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        entries = _read_json(path)
    elif suffix == ".txt":
        entries = _read_middlebury(path)
    else:
        entries = _read_filestorage(path)
    return calibration_from_dict(entries, str(path))


def calibration_from_dict(entries: dict[str, Any], source: str = "calibration") -> Calibration:
    """Build a calibration from a dict of entries (any of the spellings in :data:`KEY_ALIASES`)."""
    values = {canonical: next((entries[a] for a in aliases if a in entries), None)
              for canonical, aliases in KEY_ALIASES.items()}
    if values["R"] is not None or values["T"] is not None:
        return _stereo_calibration(values, source)
    k = values["K"] if values["K"] is not None else values["K1"]
    if k is not None and values["baseline"] is not None:
        k = _matrix(k, (3, 3), "K", source)
        return RectifiedCamera(fx=float(k[0, 0]), fy=float(k[1, 1]), cx=float(k[0, 2]), cy=float(k[1, 2]),
                               baseline=_scalar(values["baseline"], "baseline", source),
                               doffs=_scalar(values["doffs"], "doffs", source) if values["doffs"] is not None else 0.0)
    raise PolstereoError(f"{source}: not a stereo calibration: expected K1, D1, K2, D2, R, T (unrectified rig) "
                         f"or K and baseline (rectified pair); found {', '.join(sorted(entries)) or 'nothing'}")


def _stereo_calibration(values: dict[str, Any], source: str) -> StereoCalibration:
    missing = [k for k in ("K1", "K2", "R", "T") if values[k] is None]
    if missing:
        raise PolstereoError(f"{source}: stereo calibration lacks {', '.join(missing)}")
    size = None
    if values["image_size"] is not None:
        flat = np.asarray(_numeric(values["image_size"], "image_size", source), dtype=np.float64).reshape(-1)
        if flat.size != 2:
            raise PolstereoError(f"{source}: image_size must be [width, height], got {flat.tolist()}")
        size = (int(flat[0]), int(flat[1]))
    elif values["image_width"] is not None and values["image_height"] is not None:
        size = (int(_scalar(values["image_width"], "image_width", source)),
                int(_scalar(values["image_height"], "image_height", source)))
    return StereoCalibration(
        K1=_matrix(values["K1"], (3, 3), "K1", source), D1=_distortion(values["D1"], "D1", source),
        K2=_matrix(values["K2"], (3, 3), "K2", source), D2=_distortion(values["D2"], "D2", source),
        R=_rotation(values["R"], source), T=_matrix(values["T"], (3,), "T", source), image_size=size)


def _numeric(value: Any, name: str, source: str) -> np.ndarray:
    if isinstance(value, dict) and "data" in value:  # OpenCV's JSON matrix
        rows, cols = int(value.get("rows", 1)), int(value.get("cols", len(value["data"])))
        value = np.asarray(value["data"], dtype=np.float64).reshape(rows, cols)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise PolstereoError(f"{source}: {name} is not numeric ({value!r:.60})") from None
    if not np.isfinite(array).all():
        raise PolstereoError(f"{source}: {name} holds non-finite values")
    return array


def _matrix(value: Any, shape: tuple[int, ...], name: str, source: str) -> np.ndarray:
    array = _numeric(value, name, source)
    if array.size != int(np.prod(shape)):
        raise PolstereoError(f"{source}: {name} must have {int(np.prod(shape))} values "
                             f"{'x'.join(map(str, shape))}, got shape {array.shape}")
    return array.reshape(shape)


def _rotation(value: Any, source: str) -> np.ndarray:
    array = _numeric(value, "R", source)
    if array.size == 3:  # a Rodrigues vector
        return cv2.Rodrigues(array.reshape(3, 1))[0]
    return _matrix(array, (3, 3), "R", source)


def _distortion(value: Any, name: str, source: str) -> np.ndarray:
    if value is None:
        return np.zeros(5)
    array = _numeric(value, name, source).reshape(-1)
    if array.size not in (4, 5, 8, 12, 14):
        raise PolstereoError(f"{source}: {name} must hold 4, 5, 8, 12 or 14 distortion coefficients, "
                             f"got {array.size}")
    return array


def _scalar(value: Any, name: str, source: str) -> float:
    array = _numeric(value, name, source).reshape(-1)
    if array.size != 1:
        raise PolstereoError(f"{source}: {name} must be one number, got {array.tolist()}")
    return float(array[0])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        entries = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PolstereoError(f"{path}: not valid JSON ({err.__class__.__name__}: {str(err).splitlines()[0]})") \
            from None
    if not isinstance(entries, dict):
        raise PolstereoError(f"{path}: a calibration JSON file must hold an object of named entries")
    return entries


def _read_filestorage(path: Path) -> dict[str, Any]:
    try:
        storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
        if not storage.isOpened():
            raise PolstereoError(f"{path}: not a readable calibration file (OpenCV YAML/XML/JSON expected)")
        root = storage.root()
        entries = {key: _node_value(root.getNode(key)) for key in root.keys()}
        storage.release()
    except (cv2.error, SystemError):
        raise PolstereoError(f"{path}: not a readable calibration file (OpenCV YAML/XML/JSON expected)") from None
    return entries


def _node_value(node) -> Any:
    if node.isNone():
        return None
    if node.isMap():
        matrix = node.mat()
        return None if matrix is None else np.asarray(matrix)
    if node.isSeq():
        return [_node_value(node.at(i)) for i in range(node.size())]
    if node.isString():
        return node.string()
    return node.real()


_MIDDLEBURY_LINE = re.compile(r"^\s*(\w+)\s*=\s*(.+?)\s*$")


def _read_middlebury(path: Path) -> dict[str, Any]:
    """Middlebury ``calib.txt``: ``cam0=[f 0 cx; 0 f cy; 0 0 1]``, ``baseline=`` (mm), ``doffs=``."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise PolstereoError(f"{path}: cannot read calibration ({err})") from None
    fields = {}
    for line in text.splitlines():
        match = _MIDDLEBURY_LINE.match(line)
        if match:
            fields[match.group(1)] = match.group(2)
    if "cam0" not in fields:
        raise PolstereoError(f"{path}: not a Middlebury calib.txt (no cam0= line)")
    try:
        rows = [[float(v) for v in row.split()] for row in fields["cam0"].strip("[]").split(";")]
        entries: dict[str, Any] = {"K": rows}
        for name in ("baseline", "doffs", "width", "height"):
            if name in fields:
                entries[name] = float(fields[name])
    except ValueError:
        raise PolstereoError(f"{path}: malformed Middlebury calibration values") from None
    return entries


__all__ = [
    "RectifiedCamera", "StereoCalibration", "Rectifier", "Calibration", "load_calibration",
    "calibration_from_dict", "depth_from_disparity", "remap_planes", "rectification_rotation",
    "rotate_polarization_frame", "KEY_ALIASES",
]
