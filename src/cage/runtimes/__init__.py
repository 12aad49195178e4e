"""Ways to run a CAGE network fast: PyTorch variants (channels-last, bf16, compile, int8), ONNX Runtime, OpenVINO,
and the choice among them by the CPU's instruction sets (``select``).

Every runner takes ``pixel_values`` ``(B, 3, S, S)`` float32 and returns a ``CageOutput`` with ``logits``
and ``regression``, so [`cage.face_analysis_cage.FaceExpressionAnalyzer`] can use any of them. Imports are lazy
so that the ``cage`` command starts fast (see ``cage.cli``).
"""

from .. import lazy_exports

# The agreement bars every check of a runner uses (``cage export onnx``, ``--runtime auto``, ``cage bench``),
# against PyTorch eager fp32 on the same inputs:
EXACT_TOLERANCE = 1e-4  # fp32 paths: max |delta| of logits and regression outputs
REDUCED_TOLERANCE = 0.02  # bf16 paths: max |delta| of probabilities and valence/arousal (issue 8's bar)

def error_line(error: BaseException) -> str:
    """``"Type: message"`` on one line. OpenVINO's errors start with lines ``Exception from <source file>:``
    naming where they were raised; the first line that is not such a header is the message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    message = next((line for line in lines if not line.startswith("Exception from ")), lines[-1] if lines else "")
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


_EXPORTS = {
    "OnnxRuntimeModel": "onnx",
    "export_onnx": "onnx",
    "OpenVinoModel": "openvino",
    "TorchRunner": "torch_variants",
    "cpu_features": "select",
    "runtime_candidates": "select",
    "load_runner": "select",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
