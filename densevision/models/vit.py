"""Vision Transformer (Dosovitskiy et al., 2021): patch tokens + class token through pre-norm blocks.

Classifier (``VisionTransformer``, timm's interface and state-dict keys) and dense backbone (``ViTFeatures``:
a simple feature pyramid from the last block, strides 4/8/16/32, as in ViTDet). Both accept any input size:
the image is padded right/bottom to a patch multiple and the position embedding is resampled (bicubic,
antialiased, fp32) to the input's grid.

While tracing (ONNX export with the TorchScript exporter, ``torch.jit.trace``): ONNX has no antialiased bicubic
resize, so the resampling is written as two weight matrices computed from the traced grid size
(``out = W_h · P · W_wᵀ``, :func:`bicubic_aa_weights`), the weights PyTorch's antialiased kernel uses; the
exported graph matches PyTorch at every input size, smaller or larger than the pretraining size. Padding and
cropping are always traced, so the graph holds at sizes other than the traced one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function, register_notrace_module
from timm.models import checkpoint, checkpoint_seq
from timm.models._features import feature_take_indices
from torch import nn

from densevision.layers import DropPath, Mlp
from densevision.layers.attention import MultiHeadAttention
from densevision.models.features import FeatureExtractor, resolve_out_indices
from densevision.models.interface import TimmInterface, check_global_pool, check_output_fmt
from densevision.models.registry import features_kwargs, register_model

__all__ = ["ViTFeatures", "VisionTransformer", "bicubic_aa_weights", "resample_pos_embed"]

_LayerNorm = partial(nn.LayerNorm, eps=1e-6)
_POOL_TYPES = ("token", "avg", "")
_FEATURE_STRIDES = (4, 8, 16, 32)


def _tracing() -> bool:
    """Sizes are traced tensors (ONNX export with ``dynamo=False``, ``torch.jit.trace``): take the size-generic
    path. ``torch.jit.is_tracing()`` rather than ``torch.onnx.is_in_onnx_export()``, which costs microseconds
    per call in eager mode."""
    return torch.jit.is_tracing()


@register_notrace_function  # size-dependent resampling: a leaf for torch.fx
def resample_pos_embed(
    pos_embed: torch.Tensor, grid: tuple[int, int], num_prefix_tokens: int = 1
) -> torch.Tensor:
    """``1×(P+g·g)×D -> 1×(P+h·w)×D``: bicubic, antialiased, fp32 resampling of the square grid part; the
    ``P`` prefix (class) tokens are kept as they are."""
    old = math.isqrt(pos_embed.shape[1] - num_prefix_tokens)
    traced = _tracing()
    if not traced and (old, old) == tuple(grid):
        return pos_embed
    prefix, tokens = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    tokens = tokens.float().reshape(1, old, old, -1).permute(0, 3, 1, 2)
    if traced:
        rows, cols = (bicubic_aa_weights(old, n, tokens.device) for n in grid)
        tokens = rows @ tokens @ cols.t()
    else:
        tokens = F.interpolate(tokens, size=grid, mode="bicubic", antialias=True, align_corners=False)
    tokens = tokens.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1).to(pos_embed.dtype)
    return torch.cat([prefix, tokens], dim=1)


def bicubic_aa_weights(
    in_size: int, out_size: int | torch.Tensor, device: torch.device | None = None
) -> torch.Tensor:
    """``out×in`` fp32 matrix of antialiased bicubic resampling along one axis (``align_corners=False``), as
    ``F.interpolate(..., mode="bicubic", antialias=True)`` computes it: output ``i`` centred at
    ``c_i = (i + ½)·in/out`` reads input ``j`` with weight ``k((j + ½ − c_i) / max(in/out, 1))``, Keys' cubic
    ``k`` with ``a = −½``, each row normalised to sum 1. ``out_size`` may be a traced size (ONNX export)."""
    scale = in_size / out_size
    center = (torch.arange(out_size, dtype=torch.float32, device=device) + 0.5) * scale
    stretch = torch.clamp(torch.as_tensor(scale, dtype=torch.float32, device=device), min=1.0)
    source = torch.arange(in_size, dtype=torch.float32, device=device)
    t = ((source[None, :] - center[:, None] + 0.5) / stretch).abs()
    a = -0.5
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = (((t - 5) * t + 8) * t - 4) * a
    w = torch.where(t < 1, near, torch.where(t < 2, far, torch.zeros_like(t)))
    return w / w.sum(dim=1, keepdim=True)


@register_notrace_module  # size-dependent padding: a leaf for torch.fx
class PatchEmbed(nn.Module):
    """``B×3×H×W -> (B×(h·w)×D, (h, w))``: pad right/bottom to multiples of ``p``, ``p×p``/``p`` conv."""

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        p = self.patch_size
        h, w = x.shape[-2:]
        if _tracing() or h % p or w % p:
            x = F.pad(x, (0, -w % p, 0, -h % p))
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2), (x.shape[-2], x.shape[-1])


class Block(nn.Module):
    """Pre-norm transformer block: ``x + DropPath(MHSA(norm1(x)))``, ``x + DropPath(MLP(norm2(x)))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_layer: type[nn.Module] | partial = _LayerNorm,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = MultiHeadAttention(
            dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop
        )
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, num_queries: int | None = None) -> torch.Tensor:
        """``B×N×D -> B×N×D``, or ``B×Q×D`` for the first ``num_queries`` tokens only (all N stay keys)."""
        y = self.drop_path1(self.attn(self.norm1(x), num_queries=num_queries))
        x = x + y if num_queries is None else x[:, :num_queries] + y
        return x + self.drop_path2(self.mlp(self.norm2(x)))


def group_matcher(coarse: bool = False) -> dict:
    """timm's parameter groups (embedding, one per block, final norm / pyramid) for layer-wise decay."""
    return {"stem": r"^(?:cls_token|pos_embed|patch_embed)", "blocks": [(r"^blocks\.(\d+)", None),
                                                                       (r"^(?:norm|pyramid)", (99999,))]}


class _ViTTrunk(TimmInterface):
    """Patch embedding, class token, learned position embedding and blocks, shared by both ViT modules."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer: type[nn.Module] | partial = _LayerNorm,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        grid = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))
        self.pos_drop = nn.Dropout(proj_drop_rate)
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        self.blocks = nn.Sequential(*[
            Block(
                embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_drop=proj_drop_rate,
                attn_drop=attn_drop_rate, drop_path=rates[i], norm_layer=norm_layer,
            )
            for i in range(depth)
        ])
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        _init_weights(self.blocks)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return group_matcher(coarse)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """The position embedding and class token, as in timm."""
        return {"pos_embed", "cls_token"}

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """``self.blocks(x)``, block by block checkpointed under ``set_grad_checkpointing``."""
        return checkpoint_seq(self.blocks, x) if self.checkpointing() else self.blocks(x)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``B×3×H×W -> (B×(1+h·w)×D, (h, w))``: class token first, position embedding added."""
        x, grid = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + resample_pos_embed(self.pos_embed, grid)
        return self.pos_drop(x), grid


class VisionTransformer(_ViTTrunk):
    """ViT classifier with timm's interface and keys (``cls_token``, ``pos_embed``, ``patch_embed.proj``,
    ``blocks.{i}``, ``norm``, ``head``); the head reads the class token (``global_pool="token"``), the mean of
    the patch tokens (``"avg"``) or nothing (``""``: all tokens).

    ``forward(B×3×H×W) -> B×classes``; ``forward_features -> B×(1+N)×D`` (normalised tokens).
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        num_classes: int = 1000,
        drop_rate: float = 0.0,
        global_pool: str = "token",
        norm_layer: type[nn.Module] | partial = _LayerNorm,
        **kwargs: Any,
    ) -> None:
        super().__init__(img_size=img_size, patch_size=patch_size, norm_layer=norm_layer, **kwargs)
        self.num_classes = num_classes
        self.num_features = self.embed_dim
        self.global_pool = check_global_pool(global_pool, _POOL_TYPES)
        self.output_fmt = "NLC"
        self.feature_info = [
            {"num_chs": self.embed_dim, "reduction": patch_size, "module": f"blocks.{i}"}
            for i in range(len(self.blocks))
        ]
        self.norm = norm_layer(self.embed_dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        _init_weights(self.head)
        self.pretrained_cfg: dict[str, Any] = _cfg(img_size, num_classes)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier by a new ``num_classes``-way one (identity for 0); ``global_pool``:
        ``"token"``, ``"avg"`` or ``""``."""
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = check_global_pool(global_pool, _POOL_TYPES)
        head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        _init_weights(head)
        self.head = head.to(self.pos_embed.device)
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
        """timm's ``forward_intermediates``: the patch tokens after the blocks named by ``indices`` (None: all,
        n: the last n), ``B×D×h×w`` (``"NCHW"``) or ``B×h·w×D`` (``"NLC"``), each through the final norm when
        ``norm``; and the normalised tokens (``forward_features``) unless ``intermediates_only``."""
        check_output_fmt(output_fmt, ("NCHW", "NLC"))
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        blocks = self.blocks[: max_index + 1] if stop_early else self.blocks
        x, (gh, gw) = self.embed(x)
        checkpointing = self.checkpointing()
        intermediates = []
        for i, block in enumerate(blocks):
            x = checkpoint(block, x) if checkpointing else block(x)
            if i in take_indices:
                y = (self.norm(x) if norm else x)[:, 1:]
                if output_fmt == "NCHW":
                    y = y.transpose(1, 2).reshape(y.shape[0], -1, gh, gw)
                intermediates.append(y)
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the blocks after the last of ``indices`` (and the final norm / head when asked)."""
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[: max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``B×3×H×W -> B×(1+N)×D``."""
        x, _ = self.embed(x)
        return self.norm(self.run_blocks(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "token":
            x = x[:, 0]
        elif self.global_pool == "avg":
            x = x[:, 1:].mean(1)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B×3×H×W -> B×classes``; equal to ``forward_head(forward_features(x))``, but with the class-token
        head (outside gradient checkpointing) the last block computes only the class token, saving most of
        that block's work."""
        if self.global_pool != "token" or self.checkpointing():
            return self.forward_head(self.forward_features(x))
        x, _ = self.embed(x)
        for block in self.blocks[:-1]:  # the installed blocks (a slice would be a new, untraceable module)
            x = block(x)
        x = self.blocks[-1](x, num_queries=1)
        return self.forward_head(self.norm(x))

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """timm / densevision checkpoints (same keys); a position embedding of another grid is resampled."""
        return _resize_pos_embed(dict(state_dict), self.pos_embed)


class _LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of ``B×C×H×W``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class PyramidLevel(nn.Module):
    """One level of the simple feature pyramid (ViTDet), from the ``B×D×h×w`` map at stride ``p``.

    Finer levels: ``log2(p/s)`` stride-2 transposed convs halving the channels (LayerNorm + GELU between
    them); the same stride: identity; coarser: max-pooling (ceil mode). Then ``norm`` (LayerNorm over
    channels).
    """

    def __init__(self, dim: int, patch_size: int, stride: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = dim
        if stride < patch_size:
            steps = int(math.log2(patch_size // stride))
            for j in range(steps):
                layers.append(nn.ConvTranspose2d(channels, channels // 2, kernel_size=2, stride=2))
                channels //= 2
                if j < steps - 1:
                    layers += [_LayerNorm2d(channels), nn.GELU()]
        elif stride > patch_size:
            k = stride // patch_size
            layers.append(nn.MaxPool2d(kernel_size=k, stride=k, ceil_mode=True))
        self.out_channels = channels
        self.resample = nn.Sequential(*layers)
        self.norm = _LayerNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.resample(x))


class ViTFeatures(_ViTTrunk, FeatureExtractor):
    """ViT dense backbone: ``forward(B×3×H×W) -> [B×C_i×⌈H/s_i⌉×⌈W/s_i⌉]`` for any H, W.

    The last block's patch tokens form a ``D×⌈H/p⌉×⌈W/p⌉`` map; levels ``i = 0..3`` at strides 4, 8, 16, 32
    come from it through :class:`PyramidLevel` (``pyramid.{i}``), cropped to ``⌈H/s⌉×⌈W/s⌉``. Channels for
    patch 16: ``D/4, D/2, D, D``; for patch 32: ``D/8, D/4, D/2, D``. ``**kwargs``: the arguments of
    :class:`VisionTransformer`'s trunk (``embed_dim``, ``depth``, ``num_heads``, ``img_size`` of the
    position embedding …).
    """

    def __init__(self, out_indices: Sequence[int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out_indices = resolve_out_indices(out_indices, len(_FEATURE_STRIDES))
        levels = {
            str(i): PyramidLevel(self.embed_dim, self.patch_size, s) for i, s in enumerate(_FEATURE_STRIDES)
        }
        self._all_channels = tuple(level.out_channels for level in levels.values())
        self._all_strides = _FEATURE_STRIDES
        self._all_modules = tuple(f"pyramid.{i}" for i in range(len(_FEATURE_STRIDES)))
        self.pyramid = nn.ModuleDict({str(i): levels[str(i)] for i in self.out_indices})
        _init_weights(self.pyramid)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[-2:]
        tokens, (gh, gw) = self.embed(x)
        tokens = self.run_blocks(tokens)
        fmap = tokens[:, 1:].transpose(1, 2).reshape(tokens.shape[0], self.embed_dim, gh, gw)
        out = []
        for i in self.out_indices:
            s = self._all_strides[i]
            level = self.pyramid[str(i)](fmap)
            th, tw = (h + s - 1) // s, (w + s - 1) // s  # ceil (no negatives: ONNX Div truncates)
            if _tracing() or level.shape[-2:] != (th, tw):
                level = level[..., :th, :tw].contiguous()
            out.append(level)
        return out

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Classification (timm / own) or dense checkpoints -> this module: the classifier's ``norm``/``head``
        are dropped; a checkpoint without pyramid weights keeps this module's initial ones; pyramid levels not
        requested are dropped."""
        own = self.state_dict()
        out = {}
        for k, v in state_dict.items():
            level = re.match(r"pyramid\.(\d+)\.", k)
            if k.startswith(("head.", "norm.", "fc_norm.")) or (
                level and int(level[1]) not in self.out_indices
            ):
                continue
            out[k] = v
        if not any(k.startswith("pyramid.") for k in out):
            out.update({k: v for k, v in own.items() if k.startswith("pyramid.")})
        return _resize_pos_embed(out, self.pos_embed)


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _resize_pos_embed(state: dict[str, torch.Tensor], own: torch.Tensor) -> dict[str, torch.Tensor]:
    pos = state.get("pos_embed")
    if pos is not None and pos.shape != own.shape and pos.shape[-1] == own.shape[-1]:
        grid = math.isqrt(own.shape[1] - 1)
        state["pos_embed"] = resample_pos_embed(pos, (grid, grid))
    return state


def _cfg(img_size: int, num_classes: int) -> dict[str, Any]:
    """timm's pretrained configuration of its ViT weights (mean/std 0.5, bicubic, crop 0.9)."""
    return {
        "input_size": (3, img_size, img_size),
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "interpolation": "bicubic",
        "crop_pct": 0.9,
        "num_classes": num_classes,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
    }


_ARCHS: dict[str, dict[str, Any]] = {
    "vit_tiny_patch16_224": dict(patch_size=16, embed_dim=192, depth=12, num_heads=3),
    "vit_small_patch16_224": dict(patch_size=16, embed_dim=384, depth=12, num_heads=6),
    "vit_small_patch32_224": dict(patch_size=32, embed_dim=384, depth=12, num_heads=6),
    "vit_base_patch16_224": dict(patch_size=16, embed_dim=768, depth=12, num_heads=12),
    "vit_base_patch32_224": dict(patch_size=32, embed_dim=768, depth=12, num_heads=12),
    "vit_large_patch16_224": dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16),
    "vit_large_patch32_224": dict(patch_size=32, embed_dim=1024, depth=24, num_heads=16),
}
# The weights timm loads by default: AugReg ImageNet-21k fine-tuned on 1k (AugReg2 for ViT-B/16); ViT-L/32 has
# only the original ImageNet-21k weights, without a classifier.
_HUB_TAGS = {
    "vit_tiny_patch16_224": "augreg_in21k_ft_in1k",
    "vit_small_patch16_224": "augreg_in21k_ft_in1k",
    "vit_small_patch32_224": "augreg_in21k_ft_in1k",
    "vit_base_patch16_224": "augreg2_in21k_ft_in1k",
    "vit_base_patch32_224": "augreg_in21k_ft_in1k",
    "vit_large_patch16_224": "augreg_in21k_ft_in1k",
    "vit_large_patch32_224": "orig_in21k",
}


def _weights_cfg(name: str) -> dict[str, str]:
    return {"architecture": name, "hf_hub_id": f"timm/{name}.{_HUB_TAGS[name]}"}


default_cfgs = {name: {**_cfg(224, 1000), **_weights_cfg(name)} for name in _ARCHS}


def _create_vit(
    name: str,
    *,
    num_classes: int = 1000,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    args = {**_ARCHS[name], **kwargs}
    if features_only:
        model = ViTFeatures(out_indices=out_indices, **features_kwargs(_ViTTrunk, args))
        model.pretrained_cfg = _cfg(args.get("img_size", 224), 0)
    else:
        model = VisionTransformer(num_classes=num_classes, **args)
    model.pretrained_cfg.update(_weights_cfg(name))
    return model


@register_model
def vit_tiny_patch16_224(**kwargs: Any) -> nn.Module:
    """ViT-Ti/16: D 192, depth 12, 3 heads."""
    return _create_vit("vit_tiny_patch16_224", **kwargs)


@register_model
def vit_small_patch16_224(**kwargs: Any) -> nn.Module:
    """ViT-S/16: D 384, depth 12, 6 heads."""
    return _create_vit("vit_small_patch16_224", **kwargs)


@register_model
def vit_small_patch32_224(**kwargs: Any) -> nn.Module:
    """ViT-S/32: D 384, depth 12, 6 heads."""
    return _create_vit("vit_small_patch32_224", **kwargs)


@register_model
def vit_base_patch16_224(**kwargs: Any) -> nn.Module:
    """ViT-B/16: D 768, depth 12, 12 heads."""
    return _create_vit("vit_base_patch16_224", **kwargs)


@register_model
def vit_base_patch32_224(**kwargs: Any) -> nn.Module:
    """ViT-B/32: D 768, depth 12, 12 heads."""
    return _create_vit("vit_base_patch32_224", **kwargs)


@register_model
def vit_large_patch16_224(**kwargs: Any) -> nn.Module:
    """ViT-L/16: D 1024, depth 24, 16 heads."""
    return _create_vit("vit_large_patch16_224", **kwargs)


@register_model
def vit_large_patch32_224(**kwargs: Any) -> nn.Module:
    """ViT-L/32: D 1024, depth 24, 16 heads."""
    return _create_vit("vit_large_patch32_224", **kwargs)
