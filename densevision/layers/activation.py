"""Activations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from torch import nn


@register_notrace_module  # grad-mode-dependent: a leaf for torch.fx
class InplaceGELU(nn.GELU):
    """``nn.GELU`` that overwrites its input when no gradient is recorded (``torch.no_grad`` / inference mode).

    Inference then writes no fresh activation buffer per call (on a CPU, new large buffers cost page faults
    as well as bandwidth). With autograd on, under ONNX export or in TorchScript, it is ``nn.GELU``. Use it only
    where the input is a temporary that nothing reads afterwards.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return F.gelu(x, approximate=self.approximate)
        if torch.is_grad_enabled() or torch.onnx.is_in_onnx_export():
            return super().forward(x)
        return torch.ops.aten.gelu_(x, approximate=self.approximate)
