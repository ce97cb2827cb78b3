"""AS-MLP (Lian et al., "AS-MLP: An Axial Shifted MLP Architecture for Vision", ICLR 2022).

Official-exact port of svip-lab/AS-MLP ``models/as_mlp.py`` with the same state-dict names
(``patch_embed.{proj,norm}``, ``layers.{i}.blocks.{j}.{norm1,axial_shift.*,norm2,mlp.*}``,
``layers.{i}.downsample.{norm,reduction}``, ``norm``, ``head``) and shapes: every "linear" layer is a 1×1
``Conv2d`` and every norm is ``GroupNorm(1, C)``. The axial shift needs no CuPy kernel
(:func:`densevision.layers.axial_shift`), so the model runs on any device and exports to ONNX.

Inside the network activations are channels-last (``B×H×W×C``): a 1×1 convolution is then one matrix product
over the channel axis (no layout reorders around each convolution) and the shift moves whole rows; the norms
run on the channels-last view of the same memory. Dense outputs are NCHW.
"""

import re
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function, register_notrace_module
from timm.models import checkpoint
from timm.models._features import feature_take_indices
from torch import nn

from densevision.layers import DropPath, InplaceGELU, axial_shift, mlp_forward
from densevision.models.features import FeatureExtractor, resolve_out_indices
from densevision.models.interface import (
    TimmInterface,
    check_global_pool,
    check_output_fmt,
    global_pool,
    to_output_fmt,
)
from densevision.models.registry import build_variant, register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def group_norm1(dim: int) -> nn.GroupNorm:
    """``GroupNorm(1, dim)``: normalises over C, H and W of each sample (upstream's ``MyNorm``)."""
    return nn.GroupNorm(1, dim)


def pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1×1 convolution applied to channels-last ``x: …×C_in -> …×C_out``."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


def group_norm1_nhwc(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """``GroupNorm(1, C)`` of channels-last ``x: B×H×W×C`` as one reduction and one fused multiply-add: the
    per-sample statistics over H, W and C fold with the per-channel affine into ``x · s + t`` (``s``, ``t``:
    B×1×1×C). Output channels-last like the input."""
    var, mean = torch.var_mean(x, dim=(1, 2, 3), keepdim=True, correction=0)
    scale = torch.rsqrt(var + eps) * weight
    return torch.addcmul(bias - mean * scale, x, scale)


def norm_nhwc(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An NCHW norm module applied to channels-last ``x: B×H×W×C`` (``GroupNorm(1, C)``: see
    :func:`group_norm1_channels_last`; others through the channels-last NCHW view)."""
    if isinstance(norm, nn.GroupNorm) and norm.num_groups == 1 and norm.affine:
        return group_norm1_channels_last(x, norm.weight, norm.bias, norm.eps)
    return norm(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


@register_notrace_function  # device-dependent kernel choice: a leaf for torch.fx
def group_norm1_channels_last(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """``GroupNorm(1, C)`` of channels-last ``x: B×H×W×C``. On the CPU through the channels-last NCHW view (its
    native kernel reads that layout); elsewhere :func:`group_norm1_nhwc`, since a GPU's kernel would copy to
    NCHW and back (an H100 ran asmlp_tiny 1.27× faster so)."""
    if x.device.type != "cpu":
        return group_norm1_nhwc(x, weight, bias, eps)
    return F.group_norm(x.permute(0, 3, 1, 2), 1, weight, bias, eps).permute(0, 2, 3, 1)


@register_notrace_function  # size-dependent padding: a leaf for torch.fx
def pad_to_multiple(x: torch.Tensor, multiple: int, channels_last: bool) -> torch.Tensor:
    """``x`` (``B×C×H×W``, or ``B×H×W×C`` when ``channels_last``) zero-padded at the bottom/right so that H and W
    are multiples of ``multiple``; ``x`` itself when they are (padded anyway under ONNX export or in TorchScript,
    where sizes are dynamic)."""
    h, w = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[3])
    pad = [0, -w % multiple, 0, -h % multiple]
    if channels_last:
        pad = [0, 0] + pad
    if torch.jit.is_scripting():
        return F.pad(x, pad)
    if torch.onnx.is_in_onnx_export() or pad[-1] or pad[-3]:
        return F.pad(x, pad)
    return x


@register_notrace_module  # input-size-dependent chunking (mlp_forward): a leaf for torch.fx
class ConvMlp(nn.Module):
    """``drop(fc2(drop(act(fc1(x)))))`` with 1×1 convolutions (keys ``fc1``, ``fc2``) on ``B×H×W×C``."""

    def __init__(self, dim: int, hidden: int, act_layer: type[nn.Module] = InplaceGELU, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fc1, fc2 = self.fc1, self.fc2
        if torch.jit.is_scripting():
            h = self.act(F.linear(x, fc1.weight.flatten(1), fc1.bias))
            return self.drop(F.linear(self.drop(h), fc2.weight.flatten(1), fc2.bias))
        return mlp_forward(x, fc1.weight.flatten(1), fc1.bias, self.act, fc2.weight.flatten(1), fc2.bias, self.drop)


class AxialShift(nn.Module):
    """AS-MLP token mixer (state key ``axial_shift``): ``B×H×W×C -> B×H×W×C``.

    ``conv1 → norm1 → GELU``, then two parallel branches, the axial shift along W then ``conv2_1`` and the
    shift along H then ``conv2_2`` (each followed by GELU), summed, ``norm2``, ``conv3``.
    """

    def __init__(self, dim: int, shift_size: int, as_bias: bool = True, norm_layer=group_norm1) -> None:
        super().__init__()
        self.dim = dim
        self.shift_size = shift_size
        self.conv1 = nn.Conv2d(dim, dim, 1, bias=as_bias)
        self.conv2_1 = nn.Conv2d(dim, dim, 1, bias=as_bias)
        self.conv2_2 = nn.Conv2d(dim, dim, 1, bias=as_bias)
        self.conv3 = nn.Conv2d(dim, dim, 1, bias=as_bias)
        self.actn = InplaceGELU()
        self.norm1 = norm_layer(dim)
        self.norm2 = norm_layer(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.actn(norm_nhwc(self.norm1, pointwise(self.conv1, x)))
        x_lr = self.actn(pointwise(self.conv2_1, axial_shift(x, self.shift_size, dim=2, channel_dim=3)))
        x_td = self.actn(pointwise(self.conv2_2, axial_shift(x, self.shift_size, dim=1, channel_dim=3)))
        return pointwise(self.conv3, norm_nhwc(self.norm2, x_lr + x_td))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, shift_size={self.shift_size}"


class AxialShiftedBlock(nn.Module):
    """``x + axial_shift(norm1(x))`` then ``x + mlp(norm2(x))`` on ``B×H×W×C``."""

    def __init__(
        self,
        dim: int,
        shift_size: int = 5,
        mlp_ratio: float = 4.0,
        as_bias: bool = True,
        drop: float = 0.0,
        drop_path: float = 0.0,
        act_layer: type[nn.Module] = InplaceGELU,
        norm_layer=group_norm1,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.axial_shift = AxialShift(dim, shift_size, as_bias=as_bias, norm_layer=norm_layer)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.axial_shift(norm_nhwc(self.norm1, x)))
        return x + self.drop_path(self.mlp(norm_nhwc(self.norm2, x)))


class PatchMerging(nn.Module):
    """2×2 space-to-channel merge (order x[0::2,0::2], x[1::2,0::2], x[0::2,1::2], x[1::2,1::2]), norm, 1×1
    reduction: ``B×H×W×C -> B×⌈H/2⌉×⌈W/2⌉×2C`` (odd sizes padded at the bottom/right with zeros)."""

    def __init__(self, dim: int, norm_layer=group_norm1) -> None:
        super().__init__()
        self.dim = dim
        self.reduction = nn.Conv2d(4 * dim, 2 * dim, 1, bias=False)
        self.norm = norm_layer(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_to_multiple(x, 2, channels_last=True)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return pointwise(self.reduction, norm_nhwc(self.norm, x))


class ASMLPStage(nn.Module):
    """The blocks of one resolution, then (except in the last stage) the merge to the next (``downsample``)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        *,
        shift_size: int,
        mlp_ratio: float,
        as_bias: bool,
        drop: float,
        drop_path: Sequence[float],
        norm_layer,
        downsample: bool,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            AxialShiftedBlock(
                dim, shift_size=shift_size, mlp_ratio=mlp_ratio, as_bias=as_bias, drop=drop,
                drop_path=drop_path[i], norm_layer=norm_layer,
            )
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim, norm_layer=norm_layer) if downsample else None

    def forward_blocks(self, x: torch.Tensor, checkpointing: bool = False) -> torch.Tensor:
        """The blocks, without the merge; each block checkpointed when ``checkpointing``."""
        for block in self.blocks:
            x = checkpoint(block, x) if checkpointing else block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_blocks(x)
        return x if self.downsample is None else self.downsample(x)


class PatchEmbed(nn.Module):
    """Patch embedding and norm: ``B×3×H×W -> B×⌈H/p⌉×⌈W/p⌉×C`` (image zero-padded at the bottom/right to a
    multiple of the patch size ``p``, as upstream's dense backbone)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, norm_layer=group_norm1) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = norm_layer(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_to_multiple(x, self.patch_size, channels_last=False)
        return self.norm(self.proj(x)).permute(0, 2, 3, 1).contiguous()


def _build_stages(
    depths: Sequence[int],
    embed_dim: int,
    *,
    num_stages: int,
    shift_size: int,
    mlp_ratio: float,
    as_bias: bool,
    drop_rate: float,
    drop_path_rate: float,
    norm_layer,
) -> nn.ModuleList:
    """Stages ``0..num_stages−1``; stochastic depth grows linearly from 0 to ``drop_path_rate`` over all
    blocks of the full network, as upstream."""
    total = sum(depths)
    rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
    return nn.ModuleList(
        ASMLPStage(
            embed_dim * 2**i, depths[i], shift_size=shift_size, mlp_ratio=mlp_ratio, as_bias=as_bias,
            drop=drop_rate, drop_path=rates[sum(depths[:i]):sum(depths[: i + 1])], norm_layer=norm_layer,
            downsample=i < len(depths) - 1,
        )
        for i in range(num_stages)
    )


def _init_weights(module: nn.Module) -> None:
    """Upstream initialisation: truncated normal (std 0.02) for Linear weights, zero biases; convs default."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def group_matcher(coarse: bool = False) -> dict:
    """timm's parameter groups (stem, one per stage or per block, final norm) for layer-wise decay."""
    if coarse:
        return {"stem": r"^patch_embed", "blocks": [(r"^layers\.(\d+)", None), (r"^norm", (99999,))]}
    return {
        "stem": r"^patch_embed",
        "blocks": [
            (r"^layers\.(\d+)\.downsample", (99998,)),
            (r"^layers\.(\d+)\.blocks\.(\d+)", None),
            (r"^norm", (99999,)),
        ],
    }


class ASMLP(TimmInterface):
    """AS-MLP classifier with timm's interface; any input size (``forward_features``: ``B×H/32×W/32×C``,
    channels-last). ``forward_intermediates`` returns each stage's blocks' output (before merging)."""

    def __init__(
        self,
        *,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_classes: int = 1000,
        in_chans: int = 3,
        global_pool: str = "avg",
        patch_size: int = 4,
        shift_size: int = 5,
        mlp_ratio: float = 4.0,
        as_bias: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer=group_norm1,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.global_pool = check_global_pool(global_pool)
        self.output_fmt = "NHWC"
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, norm_layer=norm_layer)
        self.pos_drop = nn.Dropout(drop_rate)
        self.layers = _build_stages(
            depths, embed_dim, num_stages=len(depths), shift_size=shift_size, mlp_ratio=mlp_ratio,
            as_bias=as_bias, drop_rate=drop_rate, drop_path_rate=drop_path_rate, norm_layer=norm_layer,
        )
        self.norm = norm_layer(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [
            {"num_chs": embed_dim * 2**i, "reduction": patch_size * 2**i, "module": f"layers.{i}"}
            for i in range(len(depths))
        ]
        self.pretrained_cfg: dict = {}
        self.apply(_init_weights)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return group_matcher(coarse)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh ``num_classes``-way head (identity for 0); ``global_pool``: ``"avg"`` or ``""`` (none)."""
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = check_global_pool(global_pool)
        head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        head.apply(_init_weights)
        self.head = head.to(self.norm.weight.device)

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
        layers = self.layers[: max_index + 1] if stop_early else self.layers
        checkpointing = self.checkpointing()
        intermediates = []
        x = self.pos_drop(self.patch_embed(x))
        for i, layer in enumerate(layers):
            out = layer.forward_blocks(x, checkpointing)
            if i in take_indices:
                y = norm_nhwc(self.norm, out) if norm and i == len(self.layers) - 1 else out
                intermediates.append(to_output_fmt(y, output_fmt))
            x = out if layer.downsample is None else layer.downsample(out)
        if intermediates_only:
            return intermediates
        return norm_nhwc(self.norm, x), intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last of ``indices`` and its merge (and the final norm / head when asked)."""
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[: max_index + 1]
        self.layers[-1].downsample = None
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``B×3×H×W -> B×h×w×C`` (normalised, channels-last)."""
        x = self.pos_drop(self.patch_embed(x))
        checkpointing = self.checkpointing()
        for layer in self.layers:
            x = layer.forward_blocks(x, checkpointing)
            if layer.downsample is not None:
                x = layer.downsample(x)
        return norm_nhwc(self.norm, x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = global_pool(x, self.global_pool, channels_last=True)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class ASMLPFeatures(FeatureExtractor):
    """AS-MLP dense backbone (upstream's detection backbone): ``B×3×H×W -> [B×C_i×H_i×W_i]``, strides 4–32.

    The image is padded at the bottom/right to a multiple of 4; each selected stage's output before merging
    passes through its own ``norm{i}`` GroupNorm; stages after the deepest selected one are not built.
    """

    def __init__(
        self,
        *,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        out_indices: Sequence[int] | None = None,
        in_chans: int = 3,
        patch_size: int = 4,
        shift_size: int = 5,
        mlp_ratio: float = 4.0,
        as_bias: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer=group_norm1,
    ) -> None:
        super().__init__()
        self.out_indices = resolve_out_indices(out_indices, len(depths))
        self._all_channels = tuple(embed_dim * 2**i for i in range(len(depths)))
        self._all_strides = tuple(patch_size * 2**i for i in range(len(depths)))
        self._all_modules = tuple(f"layers.{i}" for i in range(len(depths)))
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, norm_layer=norm_layer)
        self.pos_drop = nn.Dropout(drop_rate)
        self.layers = _build_stages(
            depths, embed_dim, num_stages=max(self.out_indices) + 1, shift_size=shift_size, mlp_ratio=mlp_ratio,
            as_bias=as_bias, drop_rate=drop_rate, drop_path_rate=drop_path_rate, norm_layer=norm_layer,
        )
        if self.layers[-1].downsample is not None:
            self.layers[-1].downsample = None
        for i in sorted(set(self.out_indices)):
            self.add_module(f"norm{i}", norm_layer(self._all_channels[i]))
        self.apply(_init_weights)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return group_matcher(coarse)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.pos_drop(self.patch_embed(x))
        levels: dict[int, torch.Tensor] = {}
        checkpointing = self.checkpointing()
        for i, layer in enumerate(self.layers):
            out = layer.forward_blocks(x, checkpointing)
            if i in self.out_indices:
                levels[i] = getattr(self, f"norm{i}")(out.permute(0, 3, 1, 2)).contiguous()
            if layer.downsample is not None:
                x = layer.downsample(out)
        return [levels[i] for i in self.out_indices]

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Load a classification or dense checkpoint (an mmdetection/mmsegmentation one too: its ``backbone.``
        part): drop ``norm``/``head`` and unbuilt layers; output norms absent from the checkpoint (ImageNet
        weights) keep their fresh initialisation, as upstream."""
        if any(k.startswith("backbone.") for k in state_dict):
            state_dict = {k.removeprefix("backbone."): v for k, v in state_dict.items() if k.startswith("backbone.")}
        own = self.state_dict()
        last = len(self.layers) - 1

        def unused(key: str) -> bool:
            layer = re.match(r"layers\.(\d+)\.", key)
            return key not in own and (
                key.startswith(("norm.", "head."))
                or re.match(r"norm\d+\.", key) is not None
                or (layer is not None and (int(layer[1]) > last or key.startswith(f"layers.{last}.downsample.")))
            )

        state = {k: v for k, v in state_dict.items() if not unused(k)}
        for k, v in own.items():
            if re.match(r"norm\d+\.", k) and k not in state:
                state[k] = v.clone()
        return state


_CFGS = {
    "asmlp_tiny": {"embed_dim": 96, "depths": (2, 2, 6, 2)},
    "asmlp_small": {"embed_dim": 96, "depths": (2, 2, 18, 2)},
    "asmlp_base": {"embed_dim": 128, "depths": (2, 2, 18, 2)},
}


def _pretrained_cfg(name: str, num_classes: int) -> dict:
    """Evaluation settings of the official ImageNet weights; those are shared as OneDrive links (no direct
    download), so no location is named: load a downloaded copy with ``pretrained=PATH``."""
    return {
        "architecture": name,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "interpolation": "bicubic",
        "crop_pct": 0.875,
        "num_classes": num_classes,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
    }


# timm reads its pretrained configurations from ``default_cfgs`` (densevision loads the weights).
default_cfgs = {name: _pretrained_cfg(name, 1000) for name in _CFGS}


def _create_asmlp(
    name: str,
    *,
    num_classes: int = 1000,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    **kwargs,
) -> nn.Module:
    return build_variant(ASMLP, ASMLPFeatures, {**_CFGS[name], **kwargs}, partial(_pretrained_cfg, name),
                         num_classes=num_classes, features_only=features_only, out_indices=out_indices)


@register_model(join_timm=True)
def asmlp_tiny(**kwargs) -> nn.Module:
    """AS-MLP-T: 28.3M params, 4.4 GMACs, 81.3% top-1."""
    return _create_asmlp("asmlp_tiny", **kwargs)


@register_model(join_timm=True)
def asmlp_small(**kwargs) -> nn.Module:
    """AS-MLP-S: 49.6M params, 8.5 GMACs, 83.1% top-1."""
    return _create_asmlp("asmlp_small", **kwargs)


@register_model(join_timm=True)
def asmlp_base(**kwargs) -> nn.Module:
    """AS-MLP-B: 87.8M params, 15.2 GMACs, 83.3% top-1."""
    return _create_asmlp("asmlp_base", **kwargs)
