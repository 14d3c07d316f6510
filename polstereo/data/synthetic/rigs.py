"""Named stereo rig presets: real polarization camera pairs, scaled to the rendered size.

A preset is a table row (sensor, lens, baseline, working distances, sensor noise and
polarizer extinction ratio); :meth:`RigPreset.config_values` turns it into the
:class:`~polstereo.data.synthetic.config.SyntheticConfig` fields it implies at a rendered
width. Rendering a 2448-pixel-wide sensor at ``width`` pixels scales the focal length in
pixels by ``width / 2448`` (the same field of view, coarser pixels); first-surface
disparities f·B/Z then span [f·B/Z_far, f·B/Z_near] over the working distances.
"""

from __future__ import annotations

from dataclasses import dataclass

# Sony IMX250MZR (2448 x 2048, 3.45 µm pixels, on-chip wire-grid polarizers at 0/45/90/135°):
# ≈ 10.5 ke- full well and ≈ 2.3 e- read noise (EMVA 1288 figures published for cameras built
# on it); micro-polarizer extinction ratios of 100-300:1 are quoted, 200 is taken here.
IMX250MZR = {"sensor_width_px": 2448, "pixel_pitch_um": 3.45, "full_well_e": 10500.0, "read_noise_e": 2.3,
             "extinction_ratio": 200.0, "bit_depth": 12}


@dataclass(frozen=True)
class RigPreset:
    """Two identical cameras in a rectified pair looking at a scene ``working_distance_m`` away.

    Attributes:
        description: one line for ``--help`` and the docs.
        focal_mm: lens focal length, millimetres.
        baseline_m: distance between the camera centres, metres.
        working_distance_m: (near, far) depth of the scene's surfaces, metres.
        sensor_width_px, pixel_pitch_um: the sensor's width in pixels and its pixel pitch.
        full_well_e, read_noise_e: electrons at white level and read noise in electrons.
        extinction_ratio: the micro-polarizers' extinction ratio (transmission parallel /
            crossed).
        bit_depth: the camera's quantisation.
    """

    description: str
    focal_mm: float
    baseline_m: float
    working_distance_m: tuple[float, float]
    sensor_width_px: int
    pixel_pitch_um: float
    full_well_e: float
    read_noise_e: float
    extinction_ratio: float
    bit_depth: int

    def focal_px(self, width: int) -> float:
        """Focal length in pixels of an image ``width`` pixels wide (the sensor's field of view)."""
        return self.focal_mm / (self.pixel_pitch_um * 1e-3) * width / self.sensor_width_px

    def disparity_range(self, width: int) -> tuple[float, float]:
        """(min, max) disparity in pixels at ``width``: f·B at the far and near working distance."""
        near, far = self.working_distance_m
        fb = self.focal_px(width) * self.baseline_m
        return fb / far, fb / near

    def config_values(self, width: int) -> dict[str, float | int]:
        """The :class:`~polstereo.data.synthetic.config.SyntheticConfig` fields this rig sets at ``width``."""
        lo, hi = self.disparity_range(width)
        return {"focal_px": self.focal_px(width), "baseline_m": self.baseline_m, "min_disparity": lo,
                "max_disparity": hi, "bit_depth": self.bit_depth, "extinction_ratio": self.extinction_ratio,
                "full_well_e": self.full_well_e, "read_noise": self.read_noise_e / self.full_well_e}


RIG_PRESETS: dict[str, RigPreset] = {
    "tabletop-8mm-b10": RigPreset("IMX250MZR pair, 8 mm lenses, 10 cm baseline, tabletop 0.5-1.5 m away",
                                  focal_mm=8.0, baseline_m=0.10, working_distance_m=(0.5, 1.5), **IMX250MZR),
    "tabletop-12mm-b6": RigPreset("IMX250MZR pair, 12 mm lenses, 6 cm baseline, tabletop 0.6-1.5 m away",
                                  focal_mm=12.0, baseline_m=0.06, working_distance_m=(0.6, 1.5), **IMX250MZR),
    "bin-picking-8mm-b5": RigPreset("IMX250MZR pair, 8 mm lenses, 5 cm baseline, looking into a bin "
                                    "0.4-1.0 m away", focal_mm=8.0, baseline_m=0.05,
                                    working_distance_m=(0.4, 1.0), **IMX250MZR),
}
