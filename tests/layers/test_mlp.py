"""The channel MLP: row-chunked inference equals the plain composition."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import densevision.layers.mlp as mlp_module
from densevision.layers import InplaceGELU, Mlp, mlp_forward


class CountingReLU(nn.Module):
    """ReLU that counts its calls (one per chunk of rows)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return F.relu(x)


@pytest.mark.parametrize("bias", [True, False])
def test_chunked_inference_equals_plain_composition(monkeypatch, bias: bool) -> None:
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(6, 24, bias=bias), nn.Linear(24, 5, bias=bias)
    x = torch.randn(2, 7, 11, 6)  # 154 rows
    act = CountingReLU()
    monkeypatch.setattr(mlp_module, "CHUNK_HIDDEN_ELEMENTS", 24 * 40)  # 40 rows per chunk: 4 chunks
    with torch.no_grad():
        expected = fc2(F.relu(fc1(x)))
        got = mlp_forward(x, fc1.weight, fc1.bias, act, fc2.weight, fc2.bias)
    assert act.calls == 4
    assert got.shape == (2, 7, 11, 5) and (got - expected).abs().max() <= 1e-6


def test_chunks_only_at_inference(monkeypatch) -> None:
    """With autograd the MLP is the plain composition (one activation call, gradients flow)."""
    fc1, fc2 = nn.Linear(6, 24), nn.Linear(24, 5)
    act = CountingReLU()
    monkeypatch.setattr(mlp_module, "CHUNK_HIDDEN_ELEMENTS", 24)
    out = mlp_forward(torch.randn(30, 6), fc1.weight, fc1.bias, act, fc2.weight, fc2.bias)
    assert act.calls == 1 and out.requires_grad


def test_mlp_module_with_inplace_gelu_and_dropout(monkeypatch) -> None:
    """Chunks with the in-place GELU give the same result; active dropout keeps the plain path."""
    torch.manual_seed(0)
    monkeypatch.setattr(mlp_module, "CHUNK_HIDDEN_ELEMENTS", 64)
    mlp = Mlp(8, 32, drop=0.5).eval()
    x = torch.randn(3, 50, 8)
    with torch.no_grad():
        expected = mlp.fc2(F.gelu(mlp.fc1(x)))
        assert (mlp(x) - expected).abs().max() <= 1e-6
        assert isinstance(mlp.act, InplaceGELU)
        mlp.train()
        dropped = mlp(x)
    assert (dropped - expected).abs().max() > 1e-3
