"""CycleMLP (Chen et al., "CycleMLP: A MLP-like Architecture for Dense Prediction", ICLR 2022).

Official-exact port of ShoufaChen/CycleMLP ``cycle_mlp.py``: same state-dict names (``patch_embed.proj``,
``network.{0,2,4,6}.{j}.attn.{mlp_c,sfc_h,sfc_w,reweight,proj}``, ``network.{1,3,5}.proj``, ``norm``, ``head``,
the persistent Cycle-FC ``offset`` buffers) and the same outputs, but Cycle-FC runs as a shift + 1×1 projection
(:class:`densevision.layers.CycleFC`) instead of a deformable convolution: several times faster, CPU-friendly
and ONNX-exportable. Activations are channels-last (``B×H×W×C``) inside the network, as upstream.
"""

import re
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from timm.models._features import feature_take_indices
from torch import nn

from densevision.errors import CheckpointError
from densevision.layers import CycleFC, DropPath, InplaceGELU, Mlp
from densevision.models.features import FeatureExtractor, resolve_out_indices
from densevision.models.interface import (
    TimmInterface,
    check_global_pool,
    check_output_fmt,
    global_pool,
    run_stage,
    to_output_fmt,
)
from densevision.models.registry import build_variant, register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_STRIDES = (4, 8, 16, 32)


@register_notrace_module  # shape-dependent strategy: a leaf for torch.fx
class CycleMixer(nn.Module):
    """CycleMLP token mixer (state key ``attn``): ``B×H×W×C -> B×H×W×C``.

    Upstream: three branches ``h = sfc_h(x)`` (Cycle-FC along W), ``w = sfc_w(x)`` (along H), ``c = mlp_c(x)``,
    mixed per channel by the softmax weights ``a`` that ``reweight`` predicts from the spatial mean of
    ``h + w + c``, then ``proj``. Everything after the shifts is linear once ``a`` is known, and ``a`` only
    needs the means of the (shifted) inputs. So the branches are never materialised: batched products with
    per-sample weights (the branch weights scaled by ``a``, with ``proj`` folded in when the map has more than
    ``3C`` positions) accumulate into one output. A third of each Cycle-FC's channels has offset 0: those
    join ``mlp_c``'s product with ``x``, and only the moved channels are shifted, into compact inputs of
    ``2C/3`` channels (``7C/3`` input channels in all instead of ``3C``: 2/9 fewer multiply-adds). Maps with
    at most ``C`` positions mix materialised branches instead; so does TorchScript (:meth:`forward_branches`).
    """

    def __init__(self, dim: int, qkv_bias: bool = False, proj_drop: float = 0.0) -> None:
        super().__init__()
        self.mlp_c = nn.Linear(dim, dim, bias=qkv_bias)
        self.sfc_h = CycleFC(dim, dim, (1, 3))
        self.sfc_w = CycleFC(dim, dim, (3, 1))
        self.reweight = Mlp(dim, dim // 4, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self.forward_branches(x)
        return self._forward_fused(x)

    def forward_branches(self, x: torch.Tensor) -> torch.Tensor:
        """Upstream's formulation: the three branches materialised, mixed by ``a``, then ``proj``."""
        b, h, w, c = x.shape
        n = h * w
        hb = self.sfc_h(x).reshape(b, n, c)
        wb = self.sfc_w(x).reshape(b, n, c)
        cb = self.mlp_c(x).reshape(b, n, c)
        a = self.reweight(hb.mean(1) + wb.mean(1) + cb.mean(1)).reshape(b, c, 3).softmax(-1)
        out = self.proj(hb * a[:, None, :, 0] + wb * a[:, None, :, 1] + cb * a[:, None, :, 2])
        return self.proj_drop(out.view(b, h, w, c))

    @torch.jit.unused
    def _forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        n = h * w
        fcs = (self.sfc_h, self.sfc_w)
        weights = [fc.weight.flatten(1) for fc in fcs] + [self.mlp_c.weight]
        biases = [fc.bias if fc.bias is not None else x.new_zeros(c) for fc in (*fcs, self.mlp_c)]
        if c >= n:  # small map: per-sample weights would outweigh the activations, so mix the branches
            inputs = [t.reshape(b, n, c) for t in (self.sfc_h.shift(x), self.sfc_w.shift(x), x)]
            branches = [F.linear(t, wt, bs) for t, wt, bs in zip(inputs, weights, biases, strict=True)]
            mean = sum(br.mean(1) for br in branches)
            a = self.reweight(mean).reshape(b, c, 3).softmax(-1)  # B × C(out) × 3(branch)
            out = self.proj(sum(br * a[:, None, :, k] for k, br in enumerate(branches)))
            return self.proj_drop(out.view(b, h, w, c))
        # Only the moved channels of each Cycle-FC are shifted; its still channels join mlp_c's product with x.
        x_flat = x.reshape(b, n, c)
        moved = [fc.shift_moved(x).reshape(b, n, -1) for fc in fcs]
        x_mean = x_flat.mean(1)
        mean = F.linear(x_mean, weights[2], biases[2])
        for fc, wt, bs, t in zip(fcs, weights[:2], biases[:2], moved, strict=True):
            mean = mean + F.linear(x_mean, wt * fc.still_mask, bs) + t.mean(1) @ wt[:, fc.moved_index].t()
        a = self.reweight(mean).reshape(b, c, 3).softmax(-1)  # B × C(out) × 3(branch)
        mixed = [(wt * a[:, :, k, None]).transpose(1, 2) for k, wt in enumerate(weights)]  # B × C(in) × C(out)
        products = [
            mixed[2] + sum(m * fc.still_mask[:, None] for fc, m in zip(fcs, mixed[:2], strict=True)),
            *(m[:, fc.moved_index] for fc, m in zip(fcs, mixed[:2], strict=True)),
        ]
        bias = sum(a[:, :, k] * bs for k, bs in enumerate(biases))  # B × C
        fold = 3 * c < n and not torch.onnx.is_in_onnx_export()
        if fold:
            products = [m @ self.proj.weight.t() for m in products]
            bias = F.linear(bias, self.proj.weight, self.proj.bias)
        out = torch.baddbmm(bias[:, None], x_flat, products[0])
        for t, m in zip(moved, products[1:], strict=True):  # autocast skips in-place ops: match out's dtype
            out = out.baddbmm_(t.to(out.dtype), m.to(out.dtype))
        if not fold:
            out = self.proj(out)
        return self.proj_drop(out.view(b, h, w, c))


class CycleBlock(nn.Module):
    """``x + mixer(norm1(x))`` then ``x + mlp(norm2(x))`` on ``B×H×W×C``."""

    def __init__(
        self,
        dim: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop: float = 0.0,
        drop_path: float = 0.0,
        act_layer: type[nn.Module] = InplaceGELU,
        norm_layer: type[nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = CycleMixer(dim, qkv_bias=qkv_bias, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Overlapping 7×7 stride-4 patch embedding with padding 2, as upstream: ``B×3×H×W -> B×h×w×C`` with
    ``h = ⌊(H − 3) / 4⌋ + 1`` (56 for 224)."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1).contiguous()


class Downsample(nn.Module):
    """3×3 stride-2 convolution between stages: ``B×H×W×C -> B×⌈H/2⌉×⌈W/2⌉×C'``."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_dim, out_dim, kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()


def _build_network(
    layers: Sequence[int],
    embed_dims: Sequence[int],
    mlp_ratios: Sequence[float],
    *,
    num_stages: int,
    qkv_bias: bool,
    drop_path_rate: float,
    norm_layer: type[nn.Module],
) -> nn.ModuleList:
    """``[stage0, down, stage1, down, stage2, down, stage3]`` truncated to ``num_stages`` stages.

    Stochastic depth grows linearly with the block index over the whole network, as upstream.
    """
    total = sum(layers)
    network: list[nn.Module] = []
    for i in range(num_stages):
        if i > 0:
            network.append(Downsample(embed_dims[i - 1], embed_dims[i]))
        first = sum(layers[:i])
        network.append(
            nn.Sequential(
                *[
                    CycleBlock(
                        embed_dims[i],
                        mlp_ratio=mlp_ratios[i],
                        qkv_bias=qkv_bias,
                        drop_path=drop_path_rate * (first + j) / max(total - 1, 1),
                        norm_layer=norm_layer,
                    )
                    for j in range(layers[i])
                ]
            )
        )
    return nn.ModuleList(network)


def _init_weights(module: nn.Module) -> None:
    """Upstream initialisation: truncated normal (std 0.02) for Linear and Cycle-FC weights, zero biases."""
    if isinstance(module, nn.Linear | CycleFC):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _check_offsets(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fill in absent Cycle-FC ``offset`` buffers; refuse offsets that differ from the fixed Cycle-FC layout."""
    state = dict(state_dict)
    for name, buf in model.state_dict().items():
        if not name.endswith(".offset"):
            continue
        if name not in state:
            state[name] = buf.clone()
        elif state[name].shape == buf.shape and not torch.equal(state[name].to(buf), buf):
            raise CheckpointError(f"{name}: checkpoint offsets differ from the Cycle-FC layout this model computes")
    return state


def group_matcher(coarse: bool = False) -> dict:
    """timm's parameter groups (stem, one per stage or per block, final norm) for layer-wise decay."""
    if coarse:
        return {"stem": r"^patch_embed", "blocks": [(r"^network\.(\d+)", None), (r"^norm", (99999,))]}
    return {
        "stem": r"^patch_embed",
        "blocks": [(r"^network\.(\d+)\.(\d+)", None), (r"^network\.(\d+)", (0,)), (r"^norm", (99999,))],
    }


class CycleMLP(TimmInterface):
    """CycleMLP classifier with timm's interface (``forward_features`` gives ``B×H/32×W/32×C``, channels-last).

    ``forward_intermediates`` returns the outputs of the stages (``network.{0,2,4,6}``, strides 4–32).
    """

    def __init__(
        self,
        layers: Sequence[int],
        embed_dims: Sequence[int],
        mlp_ratios: Sequence[float],
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        global_pool: str = "avg",
        qkv_bias: bool = False,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer: type[nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = embed_dims[-1]
        self.global_pool = check_global_pool(global_pool)
        self.output_fmt = "NHWC"
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        self.network = _build_network(
            layers, embed_dims, mlp_ratios, num_stages=len(layers), qkv_bias=qkv_bias,
            drop_path_rate=drop_path_rate, norm_layer=norm_layer,
        )
        self.norm = norm_layer(self.num_features)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [
            {"num_chs": c, "reduction": s, "module": f"network.{2 * i}"}
            for i, (c, s) in enumerate(zip(embed_dims, _STRIDES, strict=False))
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
        num_stages = (len(self.network) + 1) // 2
        take_indices, max_index = feature_take_indices(num_stages, indices)
        network = self.network[: 2 * max_index + 1] if stop_early else self.network
        intermediates = []
        x = self.patch_embed(x)
        for idx, module in enumerate(network):
            x = run_stage(module, x, self.checkpointing())
            if idx % 2 == 0 and idx // 2 in take_indices:
                y = self.norm(x) if norm and idx // 2 == num_stages - 1 else x
                intermediates.append(to_output_fmt(y, output_fmt))
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last of ``indices`` (and the final norm / head when asked)."""
        take_indices, max_index = feature_take_indices((len(self.network) + 1) // 2, indices)
        self.network = self.network[: 2 * max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``B×3×H×W -> B×h×w×C`` (normalised, channels-last)."""
        x = self.patch_embed(x)
        checkpointing = self.checkpointing()
        for module in self.network:
            x = run_stage(module, x, checkpointing)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(global_pool(x, self.global_pool, channels_last=True))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official checkpoints load as they are; absent ``offset`` buffers are filled in."""
        return _check_offsets(self, state_dict)


class CycleMLPFeatures(FeatureExtractor):
    """CycleMLP dense backbone: ``B×3×H×W -> [B×C_i×H_i×W_i]`` at strides 4–32 for any H, W.

    As upstream's detection/segmentation backbone (``fork_feat``), each output passes through its own LayerNorm
    ``norm{0,2,4,6}`` (named after the ``network`` index of its stage); only the selected outputs get one, and
    stages after the deepest selected output are not built.
    """

    def __init__(
        self,
        layers: Sequence[int],
        embed_dims: Sequence[int],
        mlp_ratios: Sequence[float],
        *,
        out_indices: Sequence[int] | None = None,
        in_chans: int = 3,
        qkv_bias: bool = False,
        drop_path_rate: float = 0.0,
        norm_layer: type[nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.out_indices = resolve_out_indices(out_indices, len(layers))
        self._all_channels = tuple(embed_dims)
        self._all_strides = _STRIDES[: len(layers)]
        self._all_modules = tuple(f"network.{2 * i}" for i in range(len(layers)))
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        self.network = _build_network(
            layers, embed_dims, mlp_ratios, num_stages=max(self.out_indices) + 1, qkv_bias=qkv_bias,
            drop_path_rate=drop_path_rate, norm_layer=norm_layer,
        )
        for i in sorted(set(self.out_indices)):
            self.add_module(f"norm{2 * i}", norm_layer(embed_dims[i]))
        self.apply(_init_weights)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return group_matcher(coarse)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        levels: dict[int, torch.Tensor] = {}
        checkpointing = self.checkpointing()
        for idx, module in enumerate(self.network):
            x = run_stage(module, x, checkpointing)
            if idx % 2 == 0 and idx // 2 in self.out_indices:
                levels[idx // 2] = getattr(self, f"norm{idx}")(x).permute(0, 3, 1, 2).contiguous()
        return [levels[i] for i in self.out_indices]

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Load a classification or dense checkpoint (an mmdetection/mmsegmentation one too: its ``backbone.``
        part): drop ``norm``/``head`` and unbuilt stages; output norms absent from the checkpoint (ImageNet
        weights) keep their fresh initialisation, as upstream."""
        if any(k.startswith("backbone.") for k in state_dict):
            state_dict = {k.removeprefix("backbone."): v for k, v in state_dict.items() if k.startswith("backbone.")}
        own = self.state_dict()

        def unused(key: str) -> bool:
            stage = re.match(r"network\.(\d+)\.", key)
            return (
                key.startswith(("norm.", "head."))
                or (stage is not None and int(stage[1]) >= len(self.network))
                or (re.match(r"norm\d+\.", key) is not None and key not in own)
            )

        state = {k: v for k, v in state_dict.items() if not unused(k)}
        for k, v in own.items():
            if re.match(r"norm\d+\.", k) and k not in state:
                state[k] = v.clone()
        return _check_offsets(self, state)


_CFGS = {
    "cyclemlp_b1": {"layers": (2, 2, 4, 2), "embed_dims": (64, 128, 320, 512), "mlp_ratios": (4, 4, 4, 4)},
    "cyclemlp_b2": {"layers": (2, 3, 10, 3), "embed_dims": (64, 128, 320, 512), "mlp_ratios": (4, 4, 4, 4)},
    "cyclemlp_b3": {"layers": (3, 4, 18, 3), "embed_dims": (64, 128, 320, 512), "mlp_ratios": (8, 8, 4, 4)},
    "cyclemlp_b4": {"layers": (3, 8, 27, 3), "embed_dims": (64, 128, 320, 512), "mlp_ratios": (8, 8, 4, 4)},
    "cyclemlp_b5": {"layers": (3, 4, 24, 3), "embed_dims": (96, 192, 384, 768), "mlp_ratios": (4, 4, 4, 4)},
}
_CROP_PCT = {"cyclemlp_b1": 0.9, "cyclemlp_b2": 0.9, "cyclemlp_b3": 0.9, "cyclemlp_b4": 0.875, "cyclemlp_b5": 0.875}


def _pretrained_cfg(name: str, num_classes: int) -> dict:
    """The official ImageNet weights (ShoufaChen/CycleMLP release v0.1) and their evaluation settings."""
    return {
        "architecture": name,
        "url": f"https://github.com/ShoufaChen/CycleMLP/releases/download/v0.1/CycleMLP_B{name[-1]}.pth",
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "interpolation": "bicubic",
        "crop_pct": _CROP_PCT[name],
        "num_classes": num_classes,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
    }


# timm reads its pretrained configurations from ``default_cfgs`` (densevision loads the weights).
default_cfgs = {name: _pretrained_cfg(name, 1000) for name in _CFGS}


def _create_cyclemlp(
    name: str,
    *,
    num_classes: int = 1000,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    **kwargs,
) -> nn.Module:
    return build_variant(CycleMLP, CycleMLPFeatures, {**_CFGS[name], **kwargs}, partial(_pretrained_cfg, name),
                         num_classes=num_classes, features_only=features_only, out_indices=out_indices)


@register_model(join_timm=True)
def cyclemlp_b1(**kwargs) -> nn.Module:
    """CycleMLP-B1: 15.2M params, 2.1 GMACs, 78.9% top-1."""
    return _create_cyclemlp("cyclemlp_b1", **kwargs)


@register_model(join_timm=True)
def cyclemlp_b2(**kwargs) -> nn.Module:
    """CycleMLP-B2: 26.8M params, 3.9 GMACs, 81.6% top-1."""
    return _create_cyclemlp("cyclemlp_b2", **kwargs)


@register_model(join_timm=True)
def cyclemlp_b3(**kwargs) -> nn.Module:
    """CycleMLP-B3: 38.4M params, 6.9 GMACs, 82.4% top-1."""
    return _create_cyclemlp("cyclemlp_b3", **kwargs)


@register_model(join_timm=True)
def cyclemlp_b4(**kwargs) -> nn.Module:
    """CycleMLP-B4: 51.8M params, 10.1 GMACs, 83.0% top-1."""
    return _create_cyclemlp("cyclemlp_b4", **kwargs)


@register_model(join_timm=True)
def cyclemlp_b5(**kwargs) -> nn.Module:
    """CycleMLP-B5: 75.7M params, 12.3 GMACs, 83.2% top-1."""
    return _create_cyclemlp("cyclemlp_b5", **kwargs)
