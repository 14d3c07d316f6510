"""Models: the base stereo network (built-in sizes or official S2M2), the disparity warp,
the polarization correction module and the full model, plus config-carrying checkpoints.
"""

from polstereo.models.correction import CorrectionConfig, CorrectionModule, bounded_correction, saturation_fraction
from polstereo.models.full import PolStereoModel
from polstereo.models.files import load_model, save_model
from polstereo.models.registry import base_name, base_spec, build_model, model_config
from polstereo.models.warp import warp

__all__ = ["CorrectionConfig", "CorrectionModule", "PolStereoModel", "base_name", "base_spec", "bounded_correction",
           "build_model", "load_model", "model_config", "save_model", "saturation_fraction", "warp"]
