"""Channel MLPs used by the transformer and MLP-like blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function, register_notrace_module
from torch import nn

from densevision.layers.activation import InplaceGELU

# Largest hidden activation (elements) one chunk of rows may produce: 4 MiB in fp32 stays in a CPU's cache and is
# small enough for the allocator to hand the same block back on the next chunk.
CHUNK_HIDDEN_ELEMENTS = 1 << 20


@register_notrace_function  # input-size-dependent chunking: a leaf for torch.fx
def mlp_forward(
    x: torch.Tensor,
    fc1_weight: torch.Tensor,
    fc1_bias: torch.Tensor | None,
    act: nn.Module,
    fc2_weight: torch.Tensor,
    fc2_bias: torch.Tensor | None,
    drop: nn.Dropout | None = None,
) -> torch.Tensor:
    """``drop(fc2(drop(act(fc1(x)))))`` over the last axis (``…×C_in -> …×C_out``; weights ``C_hidden×C_in``,
    ``C_out×C_hidden``; ``drop`` None: no dropout).

    At inference on the CPU, maps whose hidden activation would exceed :data:`CHUNK_HIDDEN_ELEMENTS` are done
    in chunks of rows, each chunk's result written into its rows of one output: the hidden activation of a
    large map (38 MiB for an AS-MLP-T stage-1 block at batch 8) is never allocated whole, so it is neither
    page-faulted in afresh on every call nor streamed through memory between the three steps. Rows are
    independent, so the result is the same. With autograd, autocast, active dropout, ONNX export or on other
    devices it is the plain composition.
    """
    rows = x.numel() // x.shape[-1]
    hidden = fc1_weight.shape[0]
    chunk = max(1, CHUNK_HIDDEN_ELEMENTS // hidden)
    dropping = drop is not None and drop.training and drop.p > 0
    if (
        rows <= chunk
        or dropping
        or x.device.type != "cpu"
        or torch.is_grad_enabled()
        or torch.is_autocast_enabled("cpu")
        or torch.onnx.is_in_onnx_export()
    ):
        h = act(F.linear(x, fc1_weight, fc1_bias))
        if dropping:
            return drop(F.linear(drop(h), fc2_weight, fc2_bias))
        return F.linear(h, fc2_weight, fc2_bias)
    x2d = x.reshape(rows, x.shape[-1])
    out = x2d.new_empty(rows, fc2_weight.shape[0])
    w2 = fc2_weight.t()
    for start in range(0, rows, chunk):
        h = act(F.linear(x2d[start:start + chunk], fc1_weight, fc1_bias))
        if fc2_bias is None:
            torch.mm(h, w2, out=out[start:start + chunk])
        else:
            torch.addmm(fc2_bias, h, w2, out=out[start:start + chunk])
    return out.view(*x.shape[:-1], fc2_weight.shape[0])


@register_notrace_module  # input-size-dependent chunking: a leaf for torch.fx
class Mlp(nn.Module):
    """``drop(fc2(drop(act(fc1(x)))))`` over the last axis (``…×C -> …×C_out``); keys ``fc1``, ``fc2`` as in timm.

    The default activation is exact GELU, applied in place at inference (``fc1``'s output is a temporary).
    In TorchScript it is the plain composition.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: type[nn.Module] = InplaceGELU,
        drop: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
        return mlp_forward(x, self.fc1.weight, self.fc1.bias, self.act, self.fc2.weight, self.fc2.bias, self.drop)
