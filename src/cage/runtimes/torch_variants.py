"""PyTorch execution variants of one CAGE model: memory format, autocast, torch.compile, int8 dynamic quant."""

from __future__ import annotations

import copy
from typing import Any

import torch

from ..face_analysis_cage import run_model


class TorchRunner:
    """Run a CAGE model one particular way, behind the model's calling convention.

    Args:
        model: a ``CageForExpressionInference``; it is copied, never modified.
        channels_last: keep weights and inputs in NHWC memory format (oneDNN/cuDNN convolutions prefer it).
        autocast_dtype: ``torch.bfloat16``/``torch.float16`` to run under autocast, or ``None`` for fp32.
        compile: wrap the forward in ``torch.compile`` (first calls are slow: they compile).
        int8: dynamic int8 quantisation of every ``nn.Linear`` (weights int8, activations quantised per
            batch; CPU only), via ``torch.ao.quantization.quantize_dynamic``.
        device: where to run; inputs are moved there.

    The forward pass is ``cage.face_analysis_cage.run_model`` (the analyzer's own bf16 path).
    ``__call__(pixel_values)`` takes ``(B, 3, S, S)`` float32 and returns a ``CageOutput`` whose ``logits``
    ``(B, num_labels)`` and ``regression`` ``(B, R)`` are float32.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        channels_last: bool = False,
        autocast_dtype: torch.dtype | None = None,
        compile: bool = False,
        int8: bool = False,
        device: str | torch.device = "cpu",
    ):
        self.config = model.config
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.autocast_dtype = autocast_dtype
        network = copy.deepcopy(model).eval().to(self.device)
        if int8:
            if self.device.type != "cpu":
                raise ValueError("dynamic int8 quantisation runs on the CPU only")
            network = torch.ao.quantization.quantize_dynamic(network, {torch.nn.Linear}, dtype=torch.qint8)
        if channels_last:
            network = network.to(memory_format=torch.channels_last)
        self.model = network
        self._forward = torch.compile(network) if compile else network

    @torch.inference_mode()
    def __call__(self, pixel_values: torch.Tensor = None, **_: Any) -> Any:
        pixel_values = pixel_values.to(self.device)
        output = run_model(self._forward, pixel_values, self.autocast_dtype, channels_last=self.channels_last)
        output.logits = output.logits.float()
        output.regression = output.regression.float()
        return output
