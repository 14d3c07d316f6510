"""Photographs for textures: images bundled inside scikit-image's wheel and a user's folder.

Each photo is decoded once per process (:func:`photo_library` is cached), normalised to
[0, 1] (1st-99th percentile stretch) and stored as a mip pyramid (Gaussian
``cv2.pyrDown`` levels) from which :class:`~polstereo.data.synthetic.textures.PhotoTexture`
samples band-limited values. Only files shipped inside the package are used, never
ones scikit-image would download; their licences are listed in docs/synthetic.md.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from polstereo.errors import EXIT_USAGE, PolstereoError

# scikit-image's bundled photographs that are free to use (public domain / CC0, see
# docs/synthetic.md); left out: moon and page (no licence stated), logo, horse (a
# silhouette), the synthetic charts, the motion-blurred clock and the medical images.
BUNDLED_PHOTOS = ("astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png",
                  "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "rocket.jpg", "text.png")
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")
MIN_PHOTO_PX = 32     # shorter side of a usable photo
MAX_PHOTO_PX = 1024   # longer side a photo is shrunk to on loading (bounds memory per worker)
_COARSEST_PX = 8      # the pyramid stops before a level's shorter side gets below this


@dataclass(frozen=True)
class Photo:
    """A photo ready for texturing: ``levels[0]`` ``(H, W, K)`` float32 in [0, 1] (K = 1 grey,
    3 RGB), each next level the previous one blurred and halved (``cv2.pyrDown``: level
    l pixel j sits at level-0 pixel 2^l·j)."""

    name: str
    levels: tuple[np.ndarray, ...] = field(repr=False)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of level 0, pixels."""
        return self.levels[0].shape[1], self.levels[0].shape[0]


def _bundled_dir() -> Path:
    spec = importlib.util.find_spec("skimage")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise PolstereoError("photo textures need scikit-image (pip install scikit-image); "
                             "or use --textures procedural", EXIT_USAGE)
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _decode(path: Path, what: str) -> np.ndarray:
    """``(H, W, K)`` float32 in [0, 1], RGB order, alpha dropped."""
    import cv2

    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise PolstereoError(f"{what} {path}: cannot read ({exc.strerror or exc})", EXIT_USAGE) from None
    image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if image is None or image.ndim not in (2, 3) or image.dtype not in (np.uint8, np.uint16):
        raise PolstereoError(f"{what} {path}: not a readable 8/16-bit PNG or JPEG image", EXIT_USAGE)
    scale = 1.0 / np.iinfo(image.dtype).max
    image = image.reshape(image.shape[0], image.shape[1], -1)
    if image.shape[2] in (3, 4):
        image = image[:, :, 2::-1]  # BGR(A) -> RGB
    else:
        image = image[:, :, :1]     # grey (+ alpha)
    if min(image.shape[:2]) < MIN_PHOTO_PX:
        raise PolstereoError(f"{what} {path}: {image.shape[1]}x{image.shape[0]} is too small "
                             f"(at least {MIN_PHOTO_PX} px a side)", EXIT_USAGE)
    longest = max(image.shape[:2])
    if longest > MAX_PHOTO_PX:
        f = MAX_PHOTO_PX / longest
        size = (max(1, round(image.shape[1] * f)), max(1, round(image.shape[0] * f)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)
    return np.ascontiguousarray(image, dtype=np.float32) * np.float32(scale)


def prepare_photo(name: str, image: np.ndarray, channels: int) -> Photo:
    """A :class:`Photo` from ``(H, W, K)`` values in [0, 1]: grey when ``channels`` is 1, else kept."""
    import cv2

    if channels == 1 and image.shape[2] == 3:
        image = (image @ np.array([0.299, 0.587, 0.114], np.float32))[:, :, None]
    lo, hi = np.percentile(image, [1.0, 99.0])
    image = np.clip((image - np.float32(lo)) / np.float32(max(hi - lo, 1.0 / 255.0)), 0.0, 1.0)
    levels = [np.ascontiguousarray(image, dtype=np.float32)]
    while min(levels[-1].shape[:2]) >= 2 * _COARSEST_PX:
        down = cv2.pyrDown(levels[-1])
        levels.append(down.reshape(down.shape[0], down.shape[1], -1))
    return Photo(name, tuple(levels))


def user_photo_paths(texture_dir: str | Path) -> list[Path]:
    """The PNG/JPEG files of a user's texture folder, sorted by name; a one-line usage error
    if it is missing, not a folder or holds none."""
    folder = Path(texture_dir)
    if not folder.exists():
        raise PolstereoError(f"texture folder {folder}: no such folder", EXIT_USAGE)
    if not folder.is_dir():
        raise PolstereoError(f"texture folder {folder}: not a folder", EXIT_USAGE)
    try:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
    except OSError as exc:
        raise PolstereoError(f"texture folder {folder}: cannot list it ({exc.strerror or exc})", EXIT_USAGE) from None
    if not paths:
        raise PolstereoError(f"texture folder {folder}: no PNG or JPEG files in it", EXIT_USAGE)
    return paths


@functools.lru_cache(maxsize=4)
def photo_library(texture_dir: str | None, channels: int) -> tuple[Photo, ...]:
    """The photos textures are drawn from, in a fixed order: scikit-image's bundled ones,
    then the files of ``texture_dir`` sorted by name. Decoded once per process."""
    bundled = _bundled_dir()
    photos = []
    for name in BUNDLED_PHOTOS:
        path = bundled / name
        if not path.is_file():
            raise PolstereoError(f"scikit-image's bundled image {path} is missing; reinstall scikit-image "
                                 f"or use --textures procedural", EXIT_USAGE)
        photos.append(prepare_photo(path.stem, _decode(path, "bundled image"), channels))
    if texture_dir is not None:
        for path in user_photo_paths(texture_dir):
            photos.append(prepare_photo(path.name, _decode(path, "texture"), channels))
    return tuple(photos)
