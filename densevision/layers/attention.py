"""The attention family from the seed survey, from the classic encoder-decoder scores to window attention.

Every layer turns scores ``e`` (``…×T_q×T_k``) into weights ``a = softmax(e + mask)`` over the key axis, so
each query's weights sum to 1, and returns the weighted sum of the values ``a·V``.

Masks: a boolean mask is ``True`` where a query may attend to a key; a float mask is added to the scores
(``0`` keeps a pair, ``-inf`` or a large negative value removes it). Masks broadcast against the scores. Every
query must keep at least one key (a fully masked row has no defined softmax).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AdditiveAttention",
    "LuongAttention",
    "MultiHeadAttention",
    "WindowAttention",
    "masked_softmax",
    "relative_position_index",
    "scaled_dot_product",
    "shifted_window_mask",
    "window_partition",
    "window_reverse",
]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``softmax(scores + mask)`` over the last (key) axis; ``mask`` boolean (``True`` = keep) or additive."""
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    return scores.softmax(dim=-1)


def scaled_dot_product(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention (Vaswani et al., 2017), written out so the weights can be inspected.

    ``a = softmax(Q·Kᵀ / √d + mask)``, ``out = a·V``. With unit-variance entries ``q·k`` has variance ``d``;
    dividing by ``√d`` keeps the softmax out of its saturated, small-gradient range.

    Args:
        query: ``…×T_q×d``; key: ``…×T_k×d``; value: ``…×T_k×d_v``.
        mask: broadcastable to ``…×T_q×T_k``.
        scale: overrides ``1/√d``.

    Returns:
        ``(out …×T_q×d_v, weights …×T_q×T_k)``.
    """
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    weights = masked_softmax((query * scale) @ key.transpose(-2, -1), mask)
    return weights @ value, weights


class AdditiveAttention(nn.Module):
    """Additive attention (Bahdanau et al., 2015): ``e_ij = vᵀ tanh(W_q q_i + W_k k_j)``.

    A one-hidden-layer MLP scores each (query, key) pair, so queries and keys may have different sizes.
    ``forward(query B×T_q×D_q, key B×T_k×D_k, value B×T_k×D_v = key, mask)``
    ``-> (B×T_q×D_v, weights B×T_q×T_k)``.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.w_query = nn.Linear(query_dim, hidden_dim, bias=False)
        self.w_key = nn.Linear(key_dim, hidden_dim, bias=False)
        self.v = nn.Linear(hidden_dim, 1, bias=False)

    def scores(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """``e``: ``B×T_q×T_k``."""
        hidden = torch.tanh(self.w_query(query).unsqueeze(-2) + self.w_key(key).unsqueeze(-3))
        return self.v(hidden).squeeze(-1)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weights = masked_softmax(self.scores(query, key), mask)
        return weights @ (key if value is None else value), weights


class LuongAttention(nn.Module):
    """Multiplicative ("global") attention scores of Luong et al. (2015):

    - ``dot``: ``e_ij = q_iᵀ k_j`` (needs ``D_q == D_k``, no parameters);
    - ``general``: ``e_ij = q_iᵀ W_a k_j``;
    - ``concat``: ``e_ij = v_aᵀ tanh(W_a [q_i; k_j])``, computed as ``v_aᵀ tanh(W_q q_i + W_k k_j)`` with
      ``W_a = [W_q | W_k]`` so the ``T_q×T_k`` concatenations are never built.

    ``forward(query B×T_q×D_q, key B×T_k×D_k, value B×T_k×D_v = key, mask)``
    ``-> (B×T_q×D_v, weights B×T_q×T_k)``.
    """

    def __init__(
        self, query_dim: int, key_dim: int | None = None, mode: str = "general", hidden_dim: int | None = None
    ) -> None:
        super().__init__()
        key_dim = query_dim if key_dim is None else key_dim
        if mode not in ("dot", "general", "concat"):
            raise ValueError(f"LuongAttention mode {mode!r}: expected 'dot', 'general' or 'concat'")
        if mode == "dot" and key_dim != query_dim:
            raise ValueError(
                f"LuongAttention 'dot' needs equal query and key sizes, got {query_dim} and {key_dim}"
            )
        self.mode = mode
        self.query_dim = query_dim
        if mode == "general":
            self.w_a = nn.Linear(key_dim, query_dim, bias=False)
        elif mode == "concat":
            self.w_a = nn.Linear(query_dim + key_dim, hidden_dim or query_dim, bias=False)
            self.v_a = nn.Linear(hidden_dim or query_dim, 1, bias=False)

    def scores(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """``e``: ``B×T_q×T_k``."""
        if self.mode == "dot":
            return query @ key.transpose(-2, -1)
        if self.mode == "general":
            return query @ self.w_a(key).transpose(-2, -1)
        w_q, w_k = self.w_a.weight.split([self.query_dim, self.w_a.in_features - self.query_dim], dim=1)
        hidden = torch.tanh((query @ w_q.t()).unsqueeze(-2) + (key @ w_k.t()).unsqueeze(-3))
        return self.v_a(hidden).squeeze(-1)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weights = masked_softmax(self.scores(query, key), mask)
        return weights @ (key if value is None else value), weights

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (timm's ``Attention``: ``qkv``, ``proj``).

    ``head_h = softmax(Q_h K_hᵀ / √d + mask) V_h`` with ``[Q | K | V] = x W_qkvᵀ + b``, heads concatenated and
    projected: ``out = concat_h(head_h) W_projᵀ + b_proj``. Runs on
    ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels); same result as
    ``torch.nn.MultiheadAttention`` with ``in_proj_weight = qkv.weight`` and ``out_proj = proj``.

    ``forward(x: B×N×C, mask broadcastable to B×heads×Q×N, num_queries=None) -> B×Q×C``: every token attends
    (``Q = N``), or only the first ``num_queries`` tokens are queries while all ``N`` tokens stay keys and
    values (a class token reading the image).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"MultiHeadAttention: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, num_queries: int | None = None
    ) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if num_queries is not None:
            q, n = q[:, :, :num_queries], num_queries
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_drop if self.training else 0.0
        )
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """``B×H×W×C -> (B·nW)×(M·M)×C`` non-overlapping ``M×M`` windows, row-major; H, W multiples of M."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


def window_reverse(windows: torch.Tensor, window_size: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B·nW)×(M·M)×C -> B×H×W×C``."""
    c = windows.shape[-1]
    x = windows.view(-1, height // window_size, width // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


def relative_position_index(window_size: int, device: torch.device | None = None) -> torch.Tensor:
    """``(M²)×(M²)`` index into the ``(2M−1)²``-row bias table for every pair of window positions.

    For query ``(y_i, x_i)`` and key ``(y_j, x_j)``: ``(y_i − y_j + M − 1)·(2M − 1) + (x_i − x_j + M − 1)``.
    """
    m = window_size
    coords = torch.stack(
        torch.meshgrid(torch.arange(m, device=device), torch.arange(m, device=device), indexing="ij")
    ).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + (m - 1)
    return rel[0] * (2 * m - 1) + rel[1]


def shifted_window_mask(
    height: int, width: int, window_size: int, shift_size: int, device: torch.device | None = None
) -> torch.Tensor:
    """Additive mask ``nW×(M²)×(M²)`` for shifted windows on an ``H×W`` map (multiples of M).

    After the cyclic shift by ``−s`` a window can hold pixels from up to 4 regions that are not neighbours in
    the image. The map is labelled in 3×3 regions (slices ``[0:−M]``, ``[−M:−s]``, ``[−s:]`` per axis); pairs
    with different labels get ``−100`` (exp(−100) is 0 in float32), pairs in the same region ``0``.
    """
    labels = torch.zeros(1, height, width, 1, device=device)
    bounds = ((0, -window_size), (-window_size, -shift_size), (-shift_size, None))
    for i, (h0, h1) in enumerate(bounds):
        for j, (w0, w1) in enumerate(bounds):
            labels[:, h0:h1, w0:w1, :] = 3 * i + j
    windows = window_partition(labels, window_size).squeeze(-1)
    diff = windows.unsqueeze(1) - windows.unsqueeze(2)
    return torch.zeros_like(diff).masked_fill_(diff != 0, -100.0)


class WindowAttention(nn.Module):
    """Window multi-head self-attention with relative position bias (Swin W-MSA / SW-MSA).

    Within an ``M×M`` window, ``head_h = softmax(Q_h K_hᵀ / √d + B_h + mask) V_h`` where
    ``B_h[i, j] = table[index[i, j], h]`` (:func:`relative_position_index`) and ``mask`` is
    :func:`shifted_window_mask` for shifted windows. The bias and the mask are added into one additive
    ``attn_mask`` of ``scaled_dot_product_attention``. Keys: ``relative_position_bias_table``, ``qkv``,
    ``proj`` (``relative_position_index`` is a non-persistent buffer, rebuilt rather than loaded).

    ``forward(x: (B·nW)×M²×C, mask: nW×M²×M² or None) -> (B·nW)×M²×C``, windows ordered batch-major.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer(
            "relative_position_index", relative_position_index(window_size), persistent=False
        )
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self) -> torch.Tensor:
        """``heads×M²×M²`` bias gathered from the table."""
        n = self.window_size * self.window_size
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias().to(q.dtype).unsqueeze(0)
        if mask is not None:
            num_windows = mask.shape[0]
            bias = (bias + mask.to(q.dtype).unsqueeze(1)).unsqueeze(0)
            bias = bias.expand(bw // num_windows, -1, -1, -1, -1).reshape(bw, self.num_heads, n, n)
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.attn_drop if self.training else 0.0
        )
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(bw, n, c)))

    def extra_repr(self) -> str:
        return f"window_size={self.window_size}, num_heads={self.num_heads}"
