"""Channel MLPs used by the transformer and MLP-like blocks, and their fused linear + GELU."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


@functools.cache
def _onednn_linear_pointwise() -> bool:
    """Whether this PyTorch build has oneDNN's linear with a fused element-wise epilogue (CPU builds with
    mkldnn; the op PyTorch's own compiler emits for ``linear → gelu`` on CPU)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _can_fuse(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    tensors = (x, weight) if bias is None else (x, weight, bias)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False  # the fused op has no backward
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
        return False  # keep exported / compiled graphs to standard ops
    return x.device.type == "cpu" and all(t.dtype == torch.float32 for t in tensors) and _onednn_linear_pointwise()


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``gelu(linear(x, weight, bias))`` with the exact (erf) GELU: ``…×C_in -> …×C_out``.

    For fp32 CPU inference it is one oneDNN matrix product that applies the GELU while writing its output,
    saving a full read and write of the (usually 4× wide) hidden activations; otherwise (autograd, CUDA,
    half precision, ONNX export) the two standard ops. Both agree to fp32 rounding.
    """
    if not _can_fuse(x, weight, bias):
        return F.gelu(F.linear(x, weight, bias))
    out = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), weight, bias, "gelu", [], "none")
    return out.view(*x.shape[:-1], weight.shape[0])


def linear_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, act: nn.Module) -> torch.Tensor:
    """``act(linear(x, weight, bias))``: ``…×C_in -> …×C_out``, as :func:`linear_gelu` when ``act`` is the
    exact GELU (``nn.GELU()``)."""
    if isinstance(act, nn.GELU) and act.approximate == "none":
        return linear_gelu(x, weight, bias)
    return act(F.linear(x, weight, bias))


class Mlp(nn.Module):
    """``fc2(drop(act(fc1(x))))`` over the last axis (``…×C -> …×C_out``); keys ``fc1``, ``fc2`` as in timm.

    ``act(fc1(x))`` runs as :func:`linear_act` (one fused product with the default exact GELU).
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: type[nn.Module] = nn.GELU,
        drop: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = linear_act(x, self.fc1.weight, self.fc1.bias, self.act)
        return self.drop2(self.fc2(self.drop1(hidden)))
