"""Ways to run a CAGE network fast: PyTorch variants (channels-last, bf16, compile, int8) and ONNX Runtime.

Every runner takes ``pixel_values`` ``(B, 3, S, S)`` float32 and returns a ``CageOutput`` with ``logits``
and ``regression``, so [`cage.pipeline_cage.FaceExpressionAnalyzer`] can use any of them.
"""

from .onnx import OnnxRuntimeModel, export_onnx
from .torch_variants import TorchRunner

__all__ = ["OnnxRuntimeModel", "TorchRunner", "export_onnx"]
