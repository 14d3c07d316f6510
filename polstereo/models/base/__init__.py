"""Base stereo models: the built-in network (named sizes) and the official S2M2 wrapper.

Both take rectified images ``(B, C, H, W)`` in [0, 1] and return a dict with at
least ``disparity``, ``disparities``, ``features`` and ``confidence``.
"""

from polstereo.models.base.network import MODEL_CONFIGS, BaseConfig, BaseStereoNet, create_model

__all__ = ["MODEL_CONFIGS", "BaseConfig", "BaseStereoNet", "create_model"]
