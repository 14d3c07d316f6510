"""ONNX export (``polstereo export``) and running exported graphs with onnxruntime (``infer --onnx``).

``onnx``, ``onnxruntime`` (and ``onnxscript`` for the torch.export-based exporter) are
optional: ``pip install polstereo[export]``. They are imported only when used.
"""

from polstereo.export.onnx import ExportConfig, ParityError, export_onnx
from polstereo.export.runtime import OnnxStereoModel, load_onnx_model

__all__ = ["ExportConfig", "ParityError", "export_onnx", "OnnxStereoModel", "load_onnx_model"]
