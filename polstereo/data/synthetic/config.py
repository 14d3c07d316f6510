"""The configuration of the procedural generator: one frozen dataclass.

The CLI (``polstereo make-synthetic``) and Python callers build the same
:class:`SyntheticConfig`; the dataset's provenance records it, so a file says how it
was made.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from polstereo.data.h5.schema import COLOR_CHANNELS as COLOR_MODES
from polstereo.data.h5.schema import DEFAULT_ANGLES_DEG
from polstereo.data.synthetic.rigs import RIG_PRESETS
from polstereo.errors import EXIT_USAGE, PolstereoError

BIT_DEPTHS = {8: 255, 12: 4095, 16: 65535}  # bit depth -> white level
# what a glass object can be: a clear solid (ellipsoid, cylinder, box, prism), a thin-walled vessel
# (cup, jar, bottle, bowl, vase), a flat pane or a slab (a thick pane)
GLASS_KINDS = ("solid", "thin", "pane", "slab")
# how opaque surfaces are textured: procedural patterns only, photographs only, or half and half
TEXTURE_MODES = ("procedural", "photo", "mix")
# how the renderer follows polarization: "mueller" gives every interface its own plane of
# incidence (Mueller matrices, frames rotated between interfaces) and traces reflections into the
# scene; "shared-plane" is the generator before it (all parts of a pixel in the first hit's plane)
POLARIZATION_MODELS = ("mueller", "shared-plane")
# how panes and slabs are turned: "any" (yaw and pitch over a wide range, near Brewster's angle and
# strongly tilted included) or "facing" (the camera, within ±0.9 rad of yaw and ±0.3 of pitch: before)
PANE_ORIENTATIONS = ("any", "facing")
# the lighting families (scene.random_lighting; "room-env" is the one lighting of earlier versions)
LIGHTING_FAMILIES = ("window-env", "area-lamp", "overhead", "uniform")
ALL_LIGHTING = LIGHTING_FAMILIES + ("room-env",)
# the median unpolarized pixel value a scene is exposed to, fraction of white, drawn uniformly per scene
EXPOSURE_RANGE = (0.18, 0.32)
# what a provenance record from before a field existed means: the generator of its time
EARLIER_DEFAULTS = {"glass": ["solid"], "textures": "procedural", "polarization": "shared-plane",
                    "pane_orientation": "facing", "prisms": False, "lighting": ["room-env"]}


@dataclass(frozen=True)
class SyntheticConfig:
    """What the generator makes; the options behind each field: docs/synthetic.md#options.

    Geometry: a rectified pinhole pair of ``width`` x ``height`` pixels; ``focal_px`` in
    pixels (None: the image width, ≈ 53° horizontal field of view); ``baseline_m``: metres
    from the left camera to the right one, along image-right; ``min_disparity``,
    ``max_disparity``: the first surfaces' range in pixels (None: 2 % and 20 % of the
    width), which the scene is laid out in, whatever the focal length and baseline.
    Content: ``transparent``, ``opaque``: inclusive (min, max) object counts per scene
    (``(0, 0)``: no glass); ``glossy_fraction``: share of opaque objects with a polarizing
    clear coat; ``ior_range``: the glass's refractive index, drawn uniformly; ``glass``
    (:data:`GLASS_KINDS`) per object and ``lighting`` (:data:`ALL_LIGHTING`) per scene, each
    drawn uniformly from the tuple (an entry named twice is drawn twice as often); ``prisms``:
    clear solids include triangular prisms; ``pane_orientation`` (:data:`PANE_ORIENTATIONS`); ``textures`` (:data:`TEXTURE_MODES`),
    ``texture_dir`` a folder of extra PNG/JPEG photos; ``polarization``
    (:data:`POLARIZATION_MODELS`): the renderer's model. Earlier versions' values:
    :data:`EARLIER_DEFAULTS`.
    Sensor: ``exposure``: (min, max) of the median unpolarized pixel value, fraction of white,
    drawn uniformly per scene (one exposure for both views); with ``noise``, shot noise of
    ``full_well_e`` electrons at white and Gaussian read noise ``read_noise`` (fraction of white); ``bit_depth`` 8, 12 or 16 (12 stored as
    uint16, white level 4095); ``color`` "mono" or "rgb"; ``angles_deg``: polarizer angles
    in degrees; ``extinction_ratio`` (parallel / crossed transmission; None = ideal)
    scales the DoLP by (ER − 1)/(ER + 1).
    ``rig``: the preset (:data:`~polstereo.data.synthetic.rigs.RIG_PRESETS`) the camera and
    sensor values came from (:meth:`with_rig`), a record only. ``seed``: sample i depends
    only on (seed, i).
    """

    width: int = 320
    height: int = 256
    focal_px: float | None = None
    baseline_m: float = 0.1
    min_disparity: float | None = None
    max_disparity: float | None = None
    transparent: tuple[int, int] = (1, 3)
    opaque: tuple[int, int] = (1, 4)
    glossy_fraction: float = 0.3
    ior_range: tuple[float, float] = (1.4, 1.6)
    glass: tuple[str, ...] = GLASS_KINDS
    prisms: bool = True
    pane_orientation: str = "any"
    textures: str = "mix"
    texture_dir: str | None = None
    lighting: tuple[str, ...] = LIGHTING_FAMILIES
    polarization: str = "mueller"
    exposure: tuple[float, float] = EXPOSURE_RANGE
    noise: bool = True
    full_well_e: float = 10000.0
    read_noise: float = 0.002
    extinction_ratio: float | None = None
    bit_depth: int = 8
    color: str = "mono"
    angles_deg: tuple[float, ...] = field(default=DEFAULT_ANGLES_DEG)
    rig: str | None = None
    seed: int = 0

    # ------------------------------------------------------------------ derived values
    @property
    def focal(self) -> float:
        """Focal length in pixels (the configured one, or the image width)."""
        return float(self.focal_px) if self.focal_px is not None else float(self.width)

    @property
    def disparity_range(self) -> tuple[float, float]:
        """(min, max) first-surface disparity in pixels."""
        hi = float(self.max_disparity) if self.max_disparity is not None else 0.2 * self.width
        lo = float(self.min_disparity) if self.min_disparity is not None else max(1.0, 0.02 * self.width)
        return lo, hi

    @property
    def channels(self) -> int:
        return COLOR_MODES[self.color]

    @property
    def white_level(self) -> int:
        return BIT_DEPTHS[self.bit_depth]

    def validated(self) -> "SyntheticConfig":
        """This config, after checking every field; raises PolstereoError (usage) naming the first bad one."""
        def bad(message: str) -> PolstereoError:
            return PolstereoError(f"synthetic config: {message}", EXIT_USAGE)

        if self.width < 16 or self.height < 16:
            raise bad(f"image size {self.width}x{self.height} is too small (at least 16x16)")
        if self.focal_px is not None and not self.focal_px > 0:
            raise bad(f"focal length must be positive, got {self.focal_px}")
        if not self.baseline_m > 0:
            raise bad(f"baseline must be positive, got {self.baseline_m}")
        lo, hi = self.disparity_range
        if not 0 < lo < hi:
            raise bad(f"need 0 < min disparity < max disparity, got {lo:g} and {hi:g}")
        if hi > 0.6 * self.width:
            raise bad(f"max disparity {hi:g} px is more than 60 % of the image width {self.width}")
        for name, (a, b) in (("transparent", self.transparent), ("opaque", self.opaque)):
            if not 0 <= a <= b:
                raise bad(f"{name} object count range must satisfy 0 <= min <= max, got {a} {b}")
        if not 0.0 <= self.glossy_fraction <= 1.0:
            raise bad(f"glossy fraction must be in [0, 1], got {self.glossy_fraction}")
        if not 1.0 < self.ior_range[0] <= self.ior_range[1] < 3.0:
            raise bad(f"refractive index range must satisfy 1 < min <= max < 3, got {self.ior_range}")
        if not self.glass or any(kind not in GLASS_KINDS for kind in self.glass):
            raise bad(f"glass kinds must be a non-empty list of {', '.join(GLASS_KINDS)}; got {list(self.glass)}")
        if self.pane_orientation not in PANE_ORIENTATIONS:
            raise bad(f"pane orientation must be one of {', '.join(PANE_ORIENTATIONS)}, got {self.pane_orientation!r}")
        if not self.lighting or any(family not in ALL_LIGHTING for family in self.lighting):
            raise bad(f"lighting must be a non-empty list of {', '.join(ALL_LIGHTING)}; got {list(self.lighting)}")
        if not 0 < self.exposure[0] <= self.exposure[1] <= 1:
            raise bad(f"exposure range must satisfy 0 < min <= max <= 1 (median pixel value, fraction of white), "
                      f"got {self.exposure[0]:g} {self.exposure[1]:g}")
        if self.polarization not in POLARIZATION_MODELS:
            raise bad(f"polarization model must be one of {', '.join(POLARIZATION_MODELS)}, "
                      f"got {self.polarization!r}")
        if self.textures not in TEXTURE_MODES:
            raise bad(f"textures must be one of {', '.join(TEXTURE_MODES)}, got {self.textures!r}")
        if self.texture_dir is not None and self.textures == "procedural":
            raise bad("a texture folder needs photo textures (textures 'photo' or 'mix', not 'procedural')")
        if self.bit_depth not in BIT_DEPTHS:
            raise bad(f"bit depth must be one of {sorted(BIT_DEPTHS)}, got {self.bit_depth}")
        if self.color not in COLOR_MODES:
            raise bad(f"colour mode must be one of {sorted(COLOR_MODES)}, got {self.color!r}")
        if not self.full_well_e > 0 or not self.read_noise >= 0:
            raise bad("noise parameters must be full_well_e > 0 and read_noise >= 0")
        if self.extinction_ratio is not None and not 1.0 < self.extinction_ratio < math.inf:
            raise bad(f"polarizer extinction ratio must be finite and > 1 (None for an ideal polarizer), "
                      f"got {self.extinction_ratio}")
        if len(self.angles_deg) < 3:
            raise bad(f"need at least 3 polarizer angles, got {list(self.angles_deg)}")
        if self.rig is not None and self.rig not in RIG_PRESETS:
            raise bad(f"unknown rig preset {self.rig!r}; known: {', '.join(RIG_PRESETS)}")
        return self

    @classmethod
    def with_rig(cls, rig: str, **values: Any) -> "SyntheticConfig":
        """A config whose focal length, baseline, disparity range, bit depth, noise and
        extinction ratio come from the preset ``rig`` scaled to the config's width; fields in
        ``values`` win over the preset's (``None`` values are ignored)."""
        if rig not in RIG_PRESETS:
            raise PolstereoError(f"synthetic config: unknown rig preset {rig!r}; known: {', '.join(RIG_PRESETS)}",
                                 EXIT_USAGE)
        given = {k: v for k, v in values.items() if v is not None}
        width = int(given.get("width", cls.width))
        return cls(**{**RIG_PRESETS[rig].config_values(width), **given, "rig": rig})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples become lists) for provenance records."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SyntheticConfig":
        """The inverse of :meth:`to_dict` (unknown keys are an error). A record without a field
        predates it and means what the generator did then (:data:`EARLIER_DEFAULTS`): no
        ``glass``, solid glass; no ``textures``, procedural ones; no ``prisms``,
        ``pane_orientation``, ``lighting`` or ``polarization``, no prisms, panes facing the
        camera, the "room-env" lighting and the "shared-plane" renderer; the other fields'
        defaults (no texture folder, ideal polarizer, no rig, the exposure range) are the old behaviour."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise PolstereoError(f"synthetic config: unknown field(s) {unknown}", EXIT_USAGE)
        values = {**EARLIER_DEFAULTS, **values}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
