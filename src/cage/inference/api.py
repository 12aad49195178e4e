"""The documented Python API: ``cage.ExpressionAnalyzer``.

    from cage import ExpressionAnalyzer
    analyzer = ExpressionAnalyzer.from_pretrained()   # the bundled FER+ model; or a folder / Hub repo id
    faces = analyzer.predict("photo.jpg")          # also a PIL image or an RGB NumPy array
    faces = analyzer.predict_bgr(frame)            # an OpenCV BGR frame (cv2.imread, VideoCapture.read)
    for result in analyzer.predict_video("talk.mp4", every=5):   # streamed, one result per sampled frame
        ...
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ..face_analysis_cage import DEFAULT_PRECISION, FaceExpressionAnalyzer


class ExpressionAnalyzer(FaceExpressionAnalyzer):
    """Expression, valence and arousal for every face in images, frames and videos.

    The same object as ``face_analysis_cage.FaceExpressionAnalyzer`` (used by the CLI, the Space and the
    transformers pipeline), plus loading and video helpers. Methods:

    - ``predict(image)``: a PIL image (any mode, EXIF applied), a file path or an RGB ``(H, W, 3)`` uint8
      array -> list of face records, left to right; a list of images -> list of such lists.
    - ``predict_bgr(frame)``: the OpenCV entry point: a BGR ``(H, W, 3)`` uint8 array -> face records.
    - ``predict_video(path, every=1, fps=None)``: streamed results, one per sampled frame.

    Each face record: ``box`` ``[x, y, w, h]`` (integer pixels of the original image), ``score``, ``crop``
    (``face``/``body``), ``box_source``, ``expression``, ``probabilities`` (label -> probability, in the
    model's ``id2label`` order), ``valence`` and ``arousal`` (and ``dominance`` for EMOTIC models) clamped
    to [-1, 1].
    """

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike | None = None,
        detector: str | Any | None = None,
        device: str = "auto",
        batch_size: int = 32,
        detector_model: str | os.PathLike | None = None,
        precision: str = DEFAULT_PRECISION,
        runtime: str = "torch",
        onnx_model: str | os.PathLike | None = None,
        detect_size: str | int | None = None,
        latency: bool = False,
        trust_remote_code: bool = False,
    ) -> ExpressionAnalyzer:
        """Load a model folder (or Hub repo id, when online) with its processor and a face detector.

        Args:
            model: folder written by ``cage init-model``/training, or ``owner/name`` on the Hub; ``None``
                (default): the model bundled with cage (``cage.model_folder.BUNDLED_MODEL_DIR``, trained on
                FER+; its valence/arousal are derived targets, see its model card).
            detector: ``"dlib"`` (default for face models, offline), ``"yunet"`` (needs ``detector_model`` or
                the Hub), ``"none"`` (inputs are crops; default for body/EMOTIC models) or a ``FaceDetector``.
            device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
            batch_size: crops per forward pass.
            detector_model: YuNet's ONNX file.
            precision: ``"fp32"`` (default, ``face_analysis_cage.DEFAULT_PRECISION``), ``"bf16"`` or ``"auto"`` (bf16
                where the hardware has it natively).
            runtime: ``"torch"`` (default), ``"onnx"`` (ONNX Runtime, fp32), ``"openvino"`` (OpenVINO; fp32, or
                bf16 with ``precision="auto"``/``"bf16"`` where the CPU has native bf16) or ``"auto"``: the
                fastest path for this CPU that passes its check against PyTorch, falling back to the next
                with one warning line (``cage.runtimes.select.load_runner``). Runtimes other than torch run on
                the CPU; ``"auto"`` on a GPU means torch. The folder still provides config, processor, labels.
            onnx_model: the ONNX file for ``runtime="onnx"`` (from ``cage export onnx``); by default the model
                is exported once into ``~/.cache/cage/onnx/`` (keyed by the weights' hash) after passing the
                1e-4 parity check.
            detect_size: ``"auto"`` (default: images over 1024 px are also searched in native-resolution tiles,
                so small faces in group photos are found; slower on large images) or a longer side in pixels
                to downscale to for one fast detection pass (see ``face_detection_cage``).
            latency: with ``runtime="auto"``: time the working paths on one image and take the fastest (webcam).
            trust_remote_code: let the folder's own code run (``cage.model_folder.load_model_and_processor``);
                off by default: model folders are untrusted input.

        Raises:
            cage.model_folder.ModelLoadError: the model cannot be loaded (message says why).
            ValueError, ImportError, FileNotFoundError: bad device, detector or missing detector files.
        """
        from ..model_folder import default_model, load_model_and_processor
        from ..runtimes.select import RUNTIMES

        model = default_model(model)
        options = dict(detector=detector, batch_size=batch_size, detector_model=detector_model, detect_size=detect_size)
        if onnx_model is None and not latency and not trust_remote_code:
            from .fast_start import fast_start_parts

            parts = fast_start_parts(model, runtime, precision, device)
            if parts is not None:  # the cached OpenVINO graph this folder was checked with: no torch needed
                runner, processor = parts
                return cls(runner, processor, device="cpu", precision=runner.precision, **options)
        network, processor = load_model_and_processor(model, trust_remote_code=trust_remote_code)

        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        if onnx_model is not None:
            if runtime != "onnx":
                raise ValueError("onnx_model is only used with runtime='onnx'")
            from ..runtimes.onnx import OnnxRuntimeModel

            network = OnnxRuntimeModel(onnx_model, network.config)
        elif runtime != "torch":
            from ..face_analysis_cage import resolve_device

            if resolve_device(device).type == "cpu":
                from ..runtimes.select import load_runner

                network, _, precision = load_runner(network, runtime, precision, source=str(model), latency=latency)
                if not latency:
                    from .fast_start import record_fast_start

                    record_fast_start(model, network, processor)  # the next load of this folder starts fast
            elif runtime != "auto":
                raise ValueError(f"runtime {runtime!r} runs on the CPU only; use device='cpu' or runtime='torch'")
        return cls(network, processor, device=device, precision=precision, **options)

    def predict_video(self, path: str | os.PathLike, every: int = 1, fps: float | None = None) -> Iterator[Any]:
        """Stream ``ImageResult``s (``file``, ``frame``, ``time_s``, ``faces``) for the sampled frames of a video.

        See ``cage.inference.sources.iter_video_frames`` for ``every``/``fps``; memory stays bounded.
        """
        from .predict import predict_video

        return predict_video(self, path, every=every, fps=fps)


# The name the Space and scripts use: the same function, not another layer.
load_analyzer = ExpressionAnalyzer.from_pretrained

__all__ = ["ExpressionAnalyzer", "load_analyzer"]
