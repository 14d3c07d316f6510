"""Procedural polarized stereo scenes with transparent objects (``polstereo make-synthetic``).

Vectorised numpy ray casting, no renderer dependency: ``config`` (what to make),
``scene`` (rig, surfaces, materials, lighting, the random sampler), ``geometry``
(intersections), ``textures``, ``optics`` (Fresnel, Snell, polarization in the image),
``render`` (both views and the ground truth) and ``generate`` (sensor, samples,
datasets). docs/synthetic.md describes the model.
"""

from polstereo.data.synthetic.config import SyntheticConfig
from polstereo.data.synthetic.generate import generate_dataset, generate_sample, sample_rng

__all__ = ["SyntheticConfig", "generate_dataset", "generate_sample", "sample_rng"]
