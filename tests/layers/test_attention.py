"""The attention family: formulas written out by hand, masks, weights summing to 1, equality with PyTorch's
multi-head attention, and the Swin window pieces against brute-force constructions."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from densevision.layers.attention import (
    AdditiveAttention,
    LuongAttention,
    MultiHeadAttention,
    WindowAttention,
    relative_position_index,
    scaled_dot_product,
    shifted_window_mask,
    window_partition,
    window_reverse,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def key_padding_mask(batch: int, t_q: int, t_k: int, lengths: list[int]) -> torch.Tensor:
    """``B×T_q×T_k`` boolean mask keeping the first ``lengths[b]`` keys of sample ``b``."""
    keep = torch.arange(t_k)[None, :] < torch.tensor(lengths)[:, None]
    return keep[:, None, :].expand(batch, t_q, t_k)


def test_scaled_dot_product_matches_formula_and_torch() -> None:
    q, k, v = torch.randn(2, 5, 8), torch.randn(2, 7, 8), torch.randn(2, 7, 3)
    out, weights = scaled_dot_product(q, k, v)
    manual = torch.softmax(torch.einsum("bqd,bkd->bqk", q, k) / 8**0.5, dim=-1)
    torch.testing.assert_close(weights, manual)
    torch.testing.assert_close(out, manual @ v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 5))


def test_scaled_dot_product_masks() -> None:
    q, k, v = torch.randn(2, 4, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 8)
    mask = key_padding_mask(2, 4, 6, [3, 6])
    out, weights = scaled_dot_product(q, k, v, mask)
    assert torch.all(weights[0, :, 3:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4))
    short, _ = scaled_dot_product(q[:1], k[:1, :3], v[:1, :3])
    torch.testing.assert_close(out[:1], short)
    additive = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    out_add, _ = scaled_dot_product(q, k, v, additive)
    torch.testing.assert_close(out_add, out)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_additive_attention_formula() -> None:
    attn = AdditiveAttention(query_dim=6, key_dim=4, hidden_dim=5)
    q, k, v = torch.randn(2, 3, 6), torch.randn(2, 7, 4), torch.randn(2, 7, 9)
    mask = key_padding_mask(2, 3, 7, [7, 2])
    out, weights = attn(q, k, v, mask)
    w_q, w_k, vec = attn.w_query.weight, attn.w_key.weight, attn.v.weight[0]
    scores = torch.empty(2, 3, 7)
    for b, i, j in itertools.product(range(2), range(3), range(7)):
        scores[b, i, j] = vec @ torch.tanh(w_q @ q[b, i] + w_k @ k[b, j])
    expected = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(out, expected @ v)
    assert out.shape == (2, 3, 9)
    assert torch.all(weights[1, :, 2:] == 0)
    out_keys, _ = attn(q, k)
    assert out_keys.shape == (2, 3, 4)


@pytest.mark.parametrize("mode", ["dot", "general", "concat"])
def test_luong_scores(mode: str) -> None:
    d = 6
    attn = LuongAttention(d, d, mode=mode, hidden_dim=5)
    q, k = torch.randn(2, 3, d), torch.randn(2, 4, d)
    scores = torch.empty(2, 3, 4)
    for b, i, j in itertools.product(range(2), range(3), range(4)):
        if mode == "dot":
            scores[b, i, j] = q[b, i] @ k[b, j]
        elif mode == "general":
            scores[b, i, j] = q[b, i] @ attn.w_a.weight @ k[b, j]
        else:
            scores[b, i, j] = attn.v_a.weight[0] @ torch.tanh(attn.w_a.weight @ torch.cat([q[b, i], k[b, j]]))
    torch.testing.assert_close(attn.scores(q, k), scores)
    out, weights = attn(q, k, mask=key_padding_mask(2, 3, 4, [4, 1]))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))
    torch.testing.assert_close(out[1], k[1, :1].expand(3, d))


def test_luong_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mode"):
        LuongAttention(4, mode="location")
    with pytest.raises(ValueError, match="equal"):
        LuongAttention(4, 5, mode="dot")


def copy_to_torch_mha(attn: MultiHeadAttention, dim: int, heads: int) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(attn.qkv.weight)
        ref.in_proj_bias.copy_(attn.qkv.bias)
        ref.out_proj.weight.copy_(attn.proj.weight)
        ref.out_proj.bias.copy_(attn.proj.bias)
    return ref.eval()


def test_multi_head_attention_equals_torch() -> None:
    dim, heads = 32, 4
    attn = MultiHeadAttention(dim, heads).eval()
    with torch.no_grad():
        attn.qkv.bias.normal_()
        attn.proj.bias.normal_()
    ref = copy_to_torch_mha(attn, dim, heads)
    x = torch.randn(3, 10, dim)
    expected, _ = ref(x, x, x, need_weights=False)
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)

    keep = torch.rand(10, 10) > 0.3
    keep.fill_diagonal_(True)
    expected, _ = ref(x, x, x, attn_mask=~keep, need_weights=False)
    torch.testing.assert_close(attn(x, mask=keep), expected, atol=1e-5, rtol=1e-5)


def test_multi_head_attention_query_subset() -> None:
    attn = MultiHeadAttention(16, 2).eval()
    x = torch.randn(2, 9, 16)
    torch.testing.assert_close(attn(x, num_queries=1), attn(x)[:, :1], atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)


def test_window_partition_roundtrip() -> None:
    x = torch.randn(2, 6, 9, 4)
    windows = window_partition(x, 3)
    assert windows.shape == (2 * 2 * 3, 9, 4)
    torch.testing.assert_close(windows[1].view(3, 3, 4), x[0, 0:3, 3:6])
    torch.testing.assert_close(window_reverse(windows, 3, 6, 9), x)


@pytest.mark.parametrize("m", [1, 2, 7])
def test_relative_position_index_brute_force(m: int) -> None:
    index = relative_position_index(m)
    positions = [(y, x) for y in range(m) for x in range(m)]
    for (i, (yi, xi)), (j, (yj, xj)) in itertools.product(enumerate(positions), repeat=2):
        assert index[i, j] == (yi - yj + m - 1) * (2 * m - 1) + (xi - xj + m - 1)
    assert index.min() == 0 and index.max() == (2 * m - 1) ** 2 - 1


@pytest.mark.parametrize(("h", "w", "m", "s"), [(14, 14, 7, 3), (7, 7, 7, 3), (8, 12, 4, 2), (6, 9, 3, 1)])
def test_shifted_window_mask_blocks_wrapped_pairs(h: int, w: int, m: int, s: int) -> None:
    """A pair may attend exactly when the cyclic shift moved both pixels by the same offset (no wrap-around)."""
    mask = shifted_window_mask(h, w, m, s)
    assert mask.shape == ((h // m) * (w // m), m * m, m * m)
    rolled = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), -1)
    original = torch.stack([(rolled[..., 0] + s) % h, (rolled[..., 1] + s) % w], -1)
    r = window_partition(rolled[None].float(), m)
    o = window_partition(original[None].float(), m)
    same_offset = ((r[:, :, None] - r[:, None, :]) == (o[:, :, None] - o[:, None, :])).all(-1)
    torch.testing.assert_close(mask, torch.where(same_offset, 0.0, -100.0))


def test_window_attention_matches_explicit_formula() -> None:
    dim, heads, m, num_windows, batch = 16, 2, 3, 4, 2
    attn = WindowAttention(dim, heads, m).eval()
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()
    x = torch.randn(batch * num_windows, m * m, dim)
    mask = shifted_window_mask(6, 6, m, 1)
    qkv = attn.qkv(x).view(batch * num_windows, m * m, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    index = relative_position_index(m)
    bias = torch.stack([attn.relative_position_bias_table[index, h_] for h_ in range(heads)])
    scores = q @ k.transpose(-2, -1) * (dim // heads) ** -0.5 + bias
    scores = scores.view(batch, num_windows, heads, m * m, m * m) + mask[None, :, None]
    weights = scores.softmax(-1).view(batch * num_windows, heads, m * m, m * m)
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    assert weights[mask.repeat(batch, 1, 1)[:, None].expand_as(weights) < 0].max() < 1e-30
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(batch * num_windows, m * m, dim))
    with torch.no_grad():
        torch.testing.assert_close(attn(x, mask), expected, atol=1e-5, rtol=1e-5)
        unmasked = attn.proj(
            ((q @ k.transpose(-2, -1) * (dim // heads) ** -0.5 + bias).softmax(-1) @ v)
            .transpose(1, 2)
            .reshape(batch * num_windows, m * m, dim)
        )
        torch.testing.assert_close(attn(x), unmasked, atol=1e-5, rtol=1e-5)
    assert "relative_position_index" not in attn.state_dict()
