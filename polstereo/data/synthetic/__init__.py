"""Procedural polarized stereo scenes with transparent objects (``polstereo make-synthetic``).

Vectorised numpy ray casting, no renderer dependency: ``config`` (what to make),
``rigs`` (presets of real polarization stereo rigs), ``scene`` (rig, surfaces,
materials, lighting families, the random sampler), ``geometry`` (intersections),
``textures`` (procedural and photo), ``photos`` (the photographs, decoded once per
process), ``optics`` (Fresnel, Snell, Stokes vectors and Mueller matrices, polarization
in the image), ``render`` (both views and the ground truth) and ``generate`` (sensor,
samples, datasets). docs/synthetic.md describes the model.
"""

from polstereo.data.synthetic.config import SyntheticConfig
from polstereo.data.synthetic.generate import generate_dataset, generate_sample, sample_rng

__all__ = ["SyntheticConfig", "generate_dataset", "generate_sample", "sample_rng"]
