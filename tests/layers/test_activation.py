"""InplaceGELU: nn.GELU's values; in place only when no gradient is recorded."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from densevision.layers import InplaceGELU


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_inplace_under_no_grad(approximate: str) -> None:
    x = torch.randn(4, 7, 5)
    expected = nn.GELU(approximate=approximate)(x)
    y = x.clone()
    with torch.no_grad():
        out = InplaceGELU(approximate=approximate)(y)
    assert out.data_ptr() == y.data_ptr()
    assert torch.equal(out, expected)


def test_autograd_keeps_the_input_and_the_gradient() -> None:
    x = torch.randn(3, 6, requires_grad=True)
    before = x.detach().clone()
    InplaceGELU()(x * 1.0).sum().backward()
    ours = x.grad.clone()
    x.grad = None
    nn.GELU()(x * 1.0).sum().backward()
    assert torch.equal(x.detach(), before) and torch.equal(ours, x.grad)


def test_onnx_export_is_out_of_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    x = torch.randn(2, 3)
    with torch.no_grad():
        out = InplaceGELU()(x)
    assert out.data_ptr() != x.data_ptr()
