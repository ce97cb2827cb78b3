"""The channel MLP and its fused linear + GELU: same values as the separate ops, on every path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from densevision.layers import Mlp, linear_act, linear_gelu
from densevision.layers.mlp import _can_fuse


def reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.gelu(F.linear(x, weight, bias))


@pytest.mark.parametrize("shape", [(7, 24), (2, 5, 6, 24)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_gelu_equals_separate_ops_without_autograd(shape, with_bias) -> None:
    x, weight = torch.randn(shape) * 3, torch.randn(40, 24) * 0.3
    bias = torch.randn(40) if with_bias else None
    with torch.inference_mode():
        assert _can_fuse(x, weight, bias) == (torch.backends.mkldnn.is_available())
        out = linear_gelu(x, weight, bias)
    assert out.shape == (*shape[:-1], 40)
    torch.testing.assert_close(out, reference(x, weight, bias), atol=1e-5, rtol=1e-5)


def test_linear_gelu_keeps_autograd_and_other_dtypes() -> None:
    x = torch.randn(5, 8, requires_grad=True)
    weight, bias = torch.randn(6, 8, requires_grad=True), torch.randn(6, requires_grad=True)
    assert not _can_fuse(x, weight, bias)
    linear_gelu(x, weight, bias).sum().backward()
    grads = [t.grad.clone() for t in (x, weight, bias)]
    for t in (x, weight, bias):
        t.grad = None
    reference(x, weight, bias).sum().backward()
    for got, t in zip(grads, (x, weight, bias), strict=True):
        torch.testing.assert_close(got, t.grad)
    with torch.no_grad():
        assert not _can_fuse(x.double(), weight.double(), bias.double())
        half = linear_gelu(x.bfloat16(), weight.bfloat16(), bias.bfloat16())
    assert half.dtype == torch.bfloat16


def test_mlp_same_output_in_training_and_inference() -> None:
    torch.manual_seed(0)
    mlp = Mlp(16, 64, 12)
    x = torch.randn(3, 4, 16)
    trained = mlp(x)
    with torch.inference_mode():
        inferred = mlp(x)
    torch.testing.assert_close(inferred, trained.detach(), atol=1e-5, rtol=1e-5)
    tanh = Mlp(16, 64, 12, act_layer=lambda: nn.GELU(approximate="tanh"))
    tanh.load_state_dict(mlp.state_dict())
    with torch.inference_mode():
        expected = tanh.fc2(F.gelu(tanh.fc1(x), approximate="tanh"))
        torch.testing.assert_close(tanh(x), expected)
        relu = linear_act(x, mlp.fc1.weight, mlp.fc1.bias, nn.ReLU())
        torch.testing.assert_close(relu, torch.relu(mlp.fc1(x)))
