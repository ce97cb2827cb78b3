"""Swin Transformer (Liu et al., 2021): shifted-window attention with relative position bias.

Classifier (``SwinTransformer``, timm's interface and state-dict keys) and dense backbone (``SwinFeatures``,
the official detection backbone: four stage outputs, each through its own LayerNorm ``norm0..norm3``,
strides 4/8/16/32, any input size). Checkpoints in the official layout (``{'model': ...}``, downsample at
the end of each stage, ``head.``), the timm layout (downsample at the start of the next stage, ``head.fc.``)
and this project's own (= timm's keys) load into both.

Activations stay channels-last (``B×H×W×C``). Cyclic shift, padding to window multiples and window partition
are one precomputed permutation per block (``WindowLayout``): one gather in, one gather out, instead of
roll + pad + permute + copy both ways. While tracing (ONNX export with the TorchScript exporter,
``torch.jit.trace``) a block instead pads, rolls and reshapes, with the pads and the shift mask computed from
the traced size (:func:`shifted_window_mask_traced`), so the graph holds for any input size; the result is the
same.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from timm.models._features import feature_take_indices
from torch import nn

from densevision.layers import DropPath, Mlp
from densevision.layers.attention import WindowAttention, shifted_window_mask
from densevision.models.features import FeatureExtractor, resolve_out_indices
from densevision.models.interface import (
    TimmInterface,
    check_global_pool,
    check_output_fmt,
    global_pool,
    run_stage,
    to_output_fmt,
)
from densevision.models.registry import features_kwargs, register_model

__all__ = ["SwinFeatures", "SwinTransformer", "WindowLayout", "shifted_window_mask_traced", "window_layout"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _tracing() -> bool:
    """Sizes are traced tensors (ONNX export with ``dynamo=False``, ``torch.jit.trace``): take the size-generic
    path. ``torch.jit.is_tracing()`` rather than ``torch.onnx.is_in_onnx_export()``, which costs microseconds
    per call in eager mode."""
    return torch.jit.is_tracing()


@dataclass(frozen=True)
class WindowLayout:
    """Where each token of an ``H×W`` map goes for (shifted) window attention.

    Slot ``i`` of the window-ordered sequence (``nW`` windows of ``M²`` slots, row-major windows) holds token
    ``gather[i]`` of the row-major map, or the zero padding token ``L = H·W`` when the padded, cyclically
    shifted position lies outside the image; ``scatter[t]`` is the slot of token ``t``. ``None`` means the
    identity.
    """

    gather: torch.Tensor | None
    scatter: torch.Tensor | None
    mask: torch.Tensor | None
    padded: bool

    def partition(self, x: torch.Tensor, window_area: int) -> torch.Tensor:
        """``B×L×C -> (B·nW)×M²×C``."""
        if self.gather is not None:
            if self.padded:
                x = F.pad(x, (0, 0, 0, 1))
            x = x.index_select(1, self.gather)
        return x.reshape(-1, window_area, x.shape[-1])

    def reverse(self, windows: torch.Tensor, batch: int) -> torch.Tensor:
        """``(B·nW)×M²×C -> B×L×C`` (padding slots dropped)."""
        x = windows.reshape(batch, -1, windows.shape[-1])
        return x if self.scatter is None else x.index_select(1, self.scatter)


@functools.lru_cache(maxsize=64)
def window_layout(
    height: int, width: int, window_size: int, shift_size: int, device: torch.device
) -> WindowLayout:
    """The :class:`WindowLayout` of an ``H×W`` map: padded right/bottom to multiples of ``M``, rolled by
    ``−shift`` (official detection-backbone order: pad, then shift), split into ``M×M`` windows; with the
    shifted-window mask computed for the padded size."""
    m = window_size
    hp, wp = math.ceil(height / m) * m, math.ceil(width / m) * m
    padded = (hp, wp) != (height, width)
    mask = shifted_window_mask(hp, wp, m, shift_size, device=device) if shift_size else None
    if not padded and not shift_size and width == m:
        return WindowLayout(None, None, mask, False)
    ys = (torch.arange(hp, device=device) + shift_size) % hp
    xs = (torch.arange(wp, device=device) + shift_size) % wp
    source = (ys[:, None] * wp + xs[None, :]).view(hp // m, m, wp // m, m).permute(0, 2, 1, 3).reshape(-1)
    slot_of = torch.empty_like(source).scatter_(0, source, torch.arange(source.numel(), device=device))
    scatter = slot_of.view(hp, wp)[:height, :width].reshape(-1)
    sy, sx = source // wp, source % wp
    gather = torch.where((sy < height) & (sx < width), sy * width + sx, height * width)
    return WindowLayout(gather, scatter, mask, padded)


def shifted_window_mask_traced(
    height: int | torch.Tensor, width: int | torch.Tensor, window_size: int, shift_size: int,
    device: torch.device | None = None,
) -> torch.Tensor:
    """:func:`shifted_window_mask` (``nW×M²×M²``, 0 / −100) from tensor ops only, without in-place slice writes,
    so ``height`` and ``width`` (multiples of M) may be traced sizes (ONNX export, ``torch.jit.trace``)."""
    m, s = window_size, shift_size
    ys, xs = torch.arange(height, device=device), torch.arange(width, device=device)
    region_y = (ys >= height - m).long() + (ys >= height - s).long()
    region_x = (xs >= width - m).long() + (xs >= width - s).long()
    labels = (3 * region_y[:, None] + region_x[None, :]).view(height // m, m, width // m, m)
    windows = labels.permute(0, 2, 1, 3).reshape(-1, m * m)
    return (windows[:, None, :] != windows[:, :, None]).float() * -100.0


@register_notrace_module  # size-dependent layout: a leaf for torch.fx
class PatchEmbed(nn.Module):
    """``B×3×H×W -> B×⌈H/p⌉×⌈W/p⌉×C``: pad right/bottom to multiples of ``p``, ``p×p``/``p`` conv, norm."""

    def __init__(
        self,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        norm_layer: type[nn.Module] | None = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        h, w = x.shape[-2:]
        if _tracing() or h % p or w % p:
            x = F.pad(x, (0, -w % p, 0, -h % p))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


@register_notrace_module  # size-dependent layout: a leaf for torch.fx
class SwinTransformerBlock(nn.Module):
    """``x + DropPath(W-MSA(norm1(x)))``, then ``x + DropPath(MLP(norm2(x)))`` on ``B×H×W×C``.

    ``shift_size > 0`` makes it SW-MSA: the map is rolled by ``−shift`` before the window split (and back
    after), with :func:`shifted_window_mask` keeping attention inside image-contiguous regions.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int = 7,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_layer: type[nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = norm_layer(dim)
        self.attn = WindowAttention(
            dim, num_heads, window_size, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop
        )
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _tracing():
            return self._forward_traced(x)
        b, h, w, c = x.shape
        layout = window_layout(h, w, self.window_size, self.shift_size, x.device)
        x = x.reshape(b, h * w, c)
        windows = layout.partition(self.norm1(x), self.window_size * self.window_size)
        x = x + self.drop_path1(layout.reverse(self.attn(windows, layout.mask), b))
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x.view(b, h, w, c)

    def _forward_traced(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` as pad, roll, reshape/permute and crop with sizes taken from ``x`` (tracing)."""
        b, h, w, c = x.shape
        m, s = self.window_size, self.shift_size
        pad_h, pad_w = -h % m, -w % m
        y = F.pad(self.norm1(x), (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        if s:
            y = torch.roll(y, (-s, -s), (1, 2))
        windows = y.view(b, hp // m, m, wp // m, m, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, m * m, c)
        mask = shifted_window_mask_traced(hp, wp, m, s, x.device) if s else None
        y = self.attn(windows, mask).view(b, hp // m, wp // m, m, m, c)
        y = y.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        if s:
            y = torch.roll(y, (s, s), (1, 2))
        x = x + self.drop_path1(y[:, :h, :w])
        return x + self.drop_path2(self.mlp(self.norm2(x)))

    def extra_repr(self) -> str:
        return f"window_size={self.window_size}, shift_size={self.shift_size}"


@register_notrace_module  # size-dependent layout: a leaf for torch.fx
class PatchMerging(nn.Module):
    """``B×H×W×C -> B×⌈H/2⌉×⌈W/2⌉×2C``: concat ``x[0::2,0::2], x[1::2,0::2], x[0::2,1::2], x[1::2,1::2]``
    (odd sizes padded), LayerNorm(4C), bias-free Linear(4C→2C)."""

    def __init__(
        self, dim: int, out_dim: int | None = None, norm_layer: type[nn.Module] = nn.LayerNorm
    ) -> None:
        super().__init__()
        self.norm = norm_layer(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim or 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        if _tracing() or h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
            h, w = h + h % 2, w + w % 2
        x = x.view(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(b, h // 2, w // 2, 4 * c)
        return self.reduction(self.norm(x))


class SwinTransformerStage(nn.Module):
    """Optional :class:`PatchMerging` (timm layout: at the start of stages 1–3), then blocks alternating
    W-MSA and SW-MSA."""

    def __init__(
        self,
        dim: int,
        out_dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        downsample: bool,
        mlp_ratio: float,
        qkv_bias: bool,
        proj_drop: float,
        attn_drop: float,
        drop_path: Sequence[float],
        norm_layer: type[nn.Module],
    ) -> None:
        super().__init__()
        self.downsample = PatchMerging(dim, out_dim, norm_layer) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[
            SwinTransformerBlock(
                out_dim, num_heads, window_size=window_size, shift_size=0 if i % 2 == 0 else shift_size,
                mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_drop=proj_drop, attn_drop=attn_drop,
                drop_path=drop_path[i], norm_layer=norm_layer,
            )
            for i in range(depth)
        ])

    def forward(self, x: torch.Tensor, checkpointing: bool = False) -> torch.Tensor:
        """Merge, then the blocks (each checkpointed when ``checkpointing``)."""
        return run_stage(self.blocks, self.downsample(x), checkpointing)


def _swin_trunk(
    img_size: int | None,
    patch_size: int = 4,
    in_chans: int = 3,
    embed_dim: int = 96,
    depths: Sequence[int] = (2, 2, 6, 2),
    num_heads: Sequence[int] = (3, 6, 12, 24),
    window_size: int = 7,
    mlp_ratio: float = 4.0,
    qkv_bias: bool = True,
    proj_drop_rate: float = 0.0,
    attn_drop_rate: float = 0.0,
    drop_path_rate: float = 0.1,
    norm_layer: type[nn.Module] = nn.LayerNorm,
) -> tuple[PatchEmbed, nn.Sequential, tuple[int, ...]]:
    """Patch embedding, the stages and their widths. With ``img_size`` (classifier) a stage whose resolution
    is not larger than the window gets a window clamped to that resolution and no shift (official classifier);
    without it (dense backbone) every stage keeps ``window_size`` and shifts, padding as needed."""
    dims = tuple(embed_dim * 2**i for i in range(len(depths)))
    rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
    patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, norm_layer)
    stages = []
    for i, depth in enumerate(depths):
        window, shift = window_size, window_size // 2
        if img_size is not None:
            resolution = math.ceil(img_size / patch_size / 2**i)
            if resolution <= window_size:
                window, shift = resolution, 0
        stages.append(SwinTransformerStage(
            dims[max(i - 1, 0)], dims[i], depth, num_heads[i], window_size=window, shift_size=shift,
            downsample=i > 0, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_drop=proj_drop_rate,
            attn_drop=attn_drop_rate, drop_path=rates[sum(depths[:i]) : sum(depths[: i + 1])],
            norm_layer=norm_layer,
        ))
    return patch_embed, nn.Sequential(*stages), dims


class ClassifierHead(nn.Module):
    """Global pool (``"avg"`` over ``H, W`` of ``B×H×W×C``, or ``""``: none), dropout, ``fc`` (identity for 0
    classes)."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0, pool_type: str = "avg") -> None:
        super().__init__()
        self.pool_type = check_global_pool(pool_type)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(global_pool(x, self.pool_type, channels_last=True))
        return x if pre_logits else self.fc(x)


def group_matcher(coarse: bool = False) -> dict:
    """timm's parameter groups (stem, one per stage or per block, final norms) for layer-wise decay."""
    if coarse:
        return {"stem": r"^patch_embed", "blocks": [(r"^layers\.(\d+)", None), (r"^norm", (99999,))]}
    return {
        "stem": r"^patch_embed",
        "blocks": [
            (r"^layers\.(\d+)\.downsample", (0,)),
            (r"^layers\.(\d+)\.blocks\.(\d+)", None),
            (r"^norm", (99999,)),
        ],
    }


def bias_table_names(model: nn.Module) -> set[str]:
    """The relative position bias tables, kept out of weight decay as in timm."""
    return {name for name, _ in model.named_parameters() if name.endswith("relative_position_bias_table")}


class SwinTransformer(TimmInterface):
    """Swin Transformer classifier with timm's interface and state-dict keys.

    ``forward(B×3×H×W) -> B×classes``; ``forward_features -> B×h×w×C`` (normalised, channels-last). Inputs of
    other sizes than ``img_size`` are padded to window multiples inside each block.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        global_pool: str = "avg",
        norm_layer: type[nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.output_fmt = "NHWC"
        self.patch_embed, self.layers, dims = _swin_trunk(
            img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim, depths=depths,
            num_heads=num_heads, window_size=window_size, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
            proj_drop_rate=proj_drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate,
            norm_layer=norm_layer,
        )
        self.num_features = dims[-1]
        self.feature_info = [
            {"num_chs": d, "reduction": patch_size * 2**i, "module": f"layers.{i}"}
            for i, d in enumerate(dims)
        ]
        self.norm = norm_layer(self.num_features)
        self.head = ClassifierHead(self.num_features, num_classes, drop_rate, pool_type=global_pool)
        self.pretrained_cfg: dict[str, Any] = _cfg(img_size, num_classes=num_classes)
        self.apply(_init_weights)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return group_matcher(coarse)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return bias_table_names(self)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier by a new ``num_classes``-way one (identity for 0); ``global_pool``: ``"avg"``
        or ``""`` (none)."""
        self.num_classes = num_classes
        if global_pool is not None:
            self.head.pool_type = check_global_pool(global_pool)
        fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        _init_weights(fc)
        self.head.fc = fc.to(self.norm.weight.device)
        self.pretrained_cfg["num_classes"] = num_classes

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's ``forward_intermediates``: the stage outputs named by ``indices`` (None: all, n: the last n)
        as ``output_fmt``, and the normalised features (``forward_features``) unless ``intermediates_only``;
        ``norm`` applies the final norm to the last stage's output."""
        check_output_fmt(output_fmt)
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        stages = self.layers[: max_index + 1] if stop_early else self.layers
        checkpointing = self.checkpointing()
        intermediates = []
        x = self.patch_embed(x)
        for i, stage in enumerate(stages):
            x = stage(x, checkpointing)
            if i in take_indices:
                y = self.norm(x) if norm and i == len(self.layers) - 1 else x
                intermediates.append(to_output_fmt(y, output_fmt))
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last of ``indices`` (and the final norm / head when asked)."""
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[: max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``B×3×H×W -> B×h×w×C`` (h, w = ⌈H/32⌉, ⌈W/32⌉)."""
        x = self.patch_embed(x)
        checkpointing = self.checkpointing()
        for stage in self.layers:
            x = stage(x, checkpointing)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official / timm / densevision checkpoints -> this model's keys (format detected from the keys)."""
        state = _to_timm_layout(state_dict)
        return _resize_bias_tables(state, self.state_dict())


class SwinFeatures(FeatureExtractor):
    """Swin dense backbone: ``forward(B×3×H×W) -> [B×C_i×⌈H/s_i⌉×⌈W/s_i⌉]`` for any H, W.

    Levels ``i = 0..3``: the output of stage ``i`` before patch merging, through ``norm{i}`` (LayerNorm),
    NCHW; channels ``C, 2C, 4C, 8C``, strides 4, 8, 16, 32. Every stage keeps its window and shift (no
    clamping), the map is padded to window multiples inside each block and the shift mask is built for the
    padded size. Only the stages up to the last requested level are built. ``**kwargs``: the trunk arguments
    of :class:`SwinTransformer` (``embed_dim``, ``depths``, ``num_heads``, ``window_size`` …).
    """

    def __init__(
        self,
        out_indices: Sequence[int] | None = None,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        depths = tuple(kwargs.pop("depths", (2, 2, 6, 2)))
        self.out_indices = resolve_out_indices(out_indices, len(depths))
        last = max(self.out_indices)
        patch_size = kwargs.get("patch_size", 4)
        self.patch_embed, layers, dims = _swin_trunk(None, depths=depths, norm_layer=norm_layer, **kwargs)
        self.layers = layers[: last + 1]
        self._all_channels = dims
        self._all_strides = tuple(patch_size * 2**i for i in range(len(depths)))
        self._all_modules = tuple(f"layers.{i}" for i in range(len(depths)))
        for i in self.out_indices:
            self.add_module(f"norm{i}", norm_layer(dims[i]))
        self.apply(_init_weights)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return group_matcher(coarse)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return bias_table_names(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        levels: dict[int, torch.Tensor] = {}
        checkpointing = self.checkpointing()
        for i, stage in enumerate(self.layers):
            x = stage(x, checkpointing)
            if i in self.out_indices:
                levels[i] = getattr(self, f"norm{i}")(x).permute(0, 3, 1, 2).contiguous()
        return [levels[i] for i in self.out_indices]

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Classification or dense checkpoints (official / mmdet ``backbone.`` / timm / own) -> this module.

        The classifier's final ``norm`` and ``head`` are dropped; stages beyond the last level and norms of
        levels not requested are dropped; a checkpoint without ``norm{i}`` keeps this module's initial norms.
        """
        if any(k.startswith("backbone.") for k in state_dict):
            state_dict = {
                k[len("backbone.") :]: v for k, v in state_dict.items() if k.startswith("backbone.")
            }
        state = _to_timm_layout(state_dict)
        own = self.state_dict()
        last = max(self.out_indices)
        out = {}
        for k, v in state.items():
            stage = re.match(r"layers\.(\d+)\.", k)
            level = re.match(r"norm(\d+)\.", k)
            if k.startswith(("head.", "norm.")) or (stage and int(stage[1]) > last):
                continue
            if level and int(level[1]) not in self.out_indices:
                continue
            out[k] = v
        if not any(re.match(r"norm\d+\.", k) for k in out):
            out.update({k: v for k, v in own.items() if re.match(r"norm\d+\.", k)})
        return _resize_bias_tables(out, own)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _to_timm_layout(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop rebuilt buffers; official layout (``layers.N.downsample`` at the end of stage N, ``head.``) ->
    timm layout (``layers.N+1.downsample``, ``head.fc.``)."""
    state = {k: v for k, v in state_dict.items() if not k.endswith(("relative_position_index", "attn_mask"))}
    if not any(re.match(r"layers\.0\.downsample\.", k) for k in state):
        return state
    out = {}
    for k, v in state.items():
        k = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m[1]) + 1}.downsample.", k)
        out[re.sub(r"^head\.(weight|bias)$", r"head.fc.\1", k)] = v
    return out


def _resize_bias_tables(
    state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Resize relative position bias tables of another window size (bicubic over the ``(2M−1)²`` grid)."""
    out = dict(state)
    for k, v in state.items():
        target = own.get(k)
        if not k.endswith("relative_position_bias_table") or target is None or target.shape == v.shape:
            continue
        if target.shape[1] != v.shape[1]:
            continue
        old, new = math.isqrt(v.shape[0]), math.isqrt(target.shape[0])
        grid = v.float().t().reshape(1, -1, old, old)
        grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
        out[k] = grid.reshape(-1, new * new).t().to(v.dtype)
    return out


def _cfg(img_size: int = 224, **kwargs: Any) -> dict[str, Any]:
    return {
        "input_size": (3, img_size, img_size),
        "mean": _IMAGENET_MEAN,
        "std": _IMAGENET_STD,
        "interpolation": "bicubic",
        "crop_pct": 0.9 if img_size == 224 else 1.0,
        "pool_size": (img_size // 32, img_size // 32),
        "num_classes": 1000,
        "first_conv": "patch_embed.proj",
        "classifier": "head.fc",
        **kwargs,
    }


_ARCHS: dict[str, dict[str, Any]] = {
    "swin_tiny_patch4_window7_224": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "swin_small_patch4_window7_224": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    "swin_base_patch4_window7_224": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    "swin_large_patch4_window7_224": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
    "swin_base_patch4_window12_384": dict(img_size=384, window_size=12, embed_dim=128, depths=(2, 2, 18, 2),
                                          num_heads=(4, 8, 16, 32)),
    "swin_large_patch4_window12_384": dict(img_size=384, window_size=12, embed_dim=192, depths=(2, 2, 18, 2),
                                           num_heads=(6, 12, 24, 48)),
}
# The weights timm loads by default (Microsoft's release in timm's layout): ImageNet-1k for Swin-T, ImageNet-22k
# fine-tuned on 1k for the others.
_HUB_TAGS = {
    "swin_tiny_patch4_window7_224": "ms_in1k",
    "swin_small_patch4_window7_224": "ms_in22k_ft_in1k",
    "swin_base_patch4_window7_224": "ms_in22k_ft_in1k",
    "swin_large_patch4_window7_224": "ms_in22k_ft_in1k",
    "swin_base_patch4_window12_384": "ms_in22k_ft_in1k",
    "swin_large_patch4_window12_384": "ms_in22k_ft_in1k",
}


def _weights_cfg(name: str) -> dict[str, str]:
    return {"architecture": name, "hf_hub_id": f"timm/{name}.{_HUB_TAGS[name]}"}


default_cfgs = {name: _cfg(arch.get("img_size", 224), **_weights_cfg(name)) for name, arch in _ARCHS.items()}


def _create_swin(
    name: str,
    *,
    num_classes: int = 1000,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    args = {**_ARCHS[name], **kwargs}
    if features_only:
        img_size = args.pop("img_size", 224)
        model = SwinFeatures(out_indices=out_indices, **features_kwargs(_swin_trunk, args))
        model.pretrained_cfg = _cfg(img_size, num_classes=0)
    else:
        model = SwinTransformer(num_classes=num_classes, **args)
    model.pretrained_cfg.update(_weights_cfg(name))
    return model


@register_model
def swin_tiny_patch4_window7_224(**kwargs: Any) -> nn.Module:
    """Swin-T: C 96, depths 2-2-6-2, heads 3-6-12-24, window 7, 224²."""
    return _create_swin("swin_tiny_patch4_window7_224", **kwargs)


@register_model
def swin_small_patch4_window7_224(**kwargs: Any) -> nn.Module:
    """Swin-S: C 96, depths 2-2-18-2, heads 3-6-12-24, window 7, 224²."""
    return _create_swin("swin_small_patch4_window7_224", **kwargs)


@register_model
def swin_base_patch4_window7_224(**kwargs: Any) -> nn.Module:
    """Swin-B: C 128, depths 2-2-18-2, heads 4-8-16-32, window 7, 224²."""
    return _create_swin("swin_base_patch4_window7_224", **kwargs)


@register_model
def swin_large_patch4_window7_224(**kwargs: Any) -> nn.Module:
    """Swin-L: C 192, depths 2-2-18-2, heads 6-12-24-48, window 7, 224²."""
    return _create_swin("swin_large_patch4_window7_224", **kwargs)


@register_model
def swin_base_patch4_window12_384(**kwargs: Any) -> nn.Module:
    """Swin-B at 384²: window 12."""
    return _create_swin("swin_base_patch4_window12_384", **kwargs)


@register_model
def swin_large_patch4_window12_384(**kwargs: Any) -> nn.Module:
    """Swin-L at 384²: window 12."""
    return _create_swin("swin_large_patch4_window12_384", **kwargs)
