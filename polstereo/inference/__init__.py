"""Inference on captured pairs: input resolvers, memory-bounded running, outputs (``polstereo infer``)."""

from polstereo.inference.inputs import InputSpec, StereoPair, resolve_inputs
from polstereo.inference.pipeline import InferConfig, run_inference

__all__ = ["InferConfig", "InputSpec", "StereoPair", "resolve_inputs", "run_inference"]
