"""HRNet (Wang et al., "Deep High-Resolution Representation Learning for Visual Recognition", TPAMI 2020).

Four parallel branches (widths C, 2C, 4C, 8C at strides 4/8/16/32) exchange information after every module by
summing resampled copies of each other. The state-dict names are those of the official
HRNet-Image-Classification code, which timm uses too, so official and timm checkpoints load unchanged:
``conv1, bn1, conv2, bn2, layer1, transition{1,2,3}, stage{2,3,4}.{m}.branches / fuse_layers,
incre_modules, downsamp_modules, final_layer, classifier``.

Three representations come out of the same body:

- classification (``HRNet``): the official "incre" neck, 2048-d pooled features, timm's interface;
- ``features_only`` (``HRNetFeatures``): the four branch outputs for ANY input size (lower-resolution branches
  are resized to the exact size of the higher one, so odd sizes work);
- HRNetV2: :func:`hrnet_v2_concat` resizes every branch to branch 0 and concatenates (270 channels for W18);
  the HRNetV2p detection pyramid is :class:`densevision.detection.necks.HRNetV2pNeck`.

Speed: on the CPU activations are channels-last (oneDNN's native layout, no reorder around each convolution);
with inference statistics (eval ``BatchNorm2d`` or ``FrozenBatchNorm2d``) each conv + BN pair runs as one
convolution whose weights absorb the normalisation (computed on the fly, the state dict is untouched); nearest
upsampling by whole factors is a broadcast add instead of a materialised copy; sums and ReLUs work in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function
from timm.models import checkpoint
from timm.models._features import feature_take_indices
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from densevision.models.features import FeatureExtractor, resolve_out_indices
from densevision.models.interface import TimmInterface, check_global_pool, check_output_fmt, global_pool, run_stage
from densevision.models.registry import build_variant, register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_BN_MOMENTUM = 0.1
_HEAD_PLANES = (32, 64, 128, 256)  # incre Bottleneck planes per branch (outputs 128, 256, 512, 1024)
_STRIDES = (4, 8, 16, 32)
_BODY_MODULES = ("conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "stage2", "transition2", "stage3",
                 "transition3", "stage4")


def _has_inference_stats(bn: nn.Module) -> bool:
    if isinstance(bn, FrozenBatchNorm2d):
        return True
    return isinstance(bn, nn.BatchNorm2d) and not bn.training and bn.affine and bn.running_var is not None


@register_notrace_function  # device- and mode-dependent folding: a leaf for torch.fx
def conv_bn(x: torch.Tensor, conv: nn.Conv2d, bn: nn.Module) -> torch.Tensor:
    """``bn(conv(x))``. On the CPU with inference statistics it is a single convolution whose weight and bias
    absorb the normalisation (equal up to rounding, one pass over the activations fewer; gradients flow as
    usual). On a GPU the fold's few tiny kernels per call cost more than the pass they save, so it stays two
    ops there."""
    if x.device.type != "cpu" or not _has_inference_stats(bn):
        return bn(conv(x))
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    weight = conv.weight * scale[:, None, None, None]
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


@register_notrace_function  # size-dependent broadcast: a leaf for torch.fx
def add_resized(
    y: torch.Tensor, z: torch.Tensor, *, mode: str = "nearest", align_corners: bool = False
) -> torch.Tensor:
    """``y + resize(z, y's size)`` (B×C×H×W + B×C×h×w -> B×C×H×W). Nearest upsampling by whole factors is a
    broadcast add, equal to ``F.interpolate(z, size=(H, W))`` without materialising the upsampled map. While
    tracing (ONNX export) the size-independent interpolation is recorded, so exported graphs take any size."""
    (big_h, big_w), (h, w) = y.shape[-2:], z.shape[-2:]
    if mode == "nearest" and not torch.jit.is_tracing() and big_h % h == 0 and big_w % w == 0:
        y6 = y.unflatten(3, (w, big_w // w)).unflatten(2, (h, big_h // h))
        return (y6 + z[:, :, :, None, :, None]).flatten(4, 5).flatten(2, 3)
    ac = align_corners if mode in ("bilinear", "bicubic") else None
    return y + F.interpolate(z, size=(big_h, big_w), mode=mode, align_corners=ac)


def hrnet_v2_concat(features: Sequence[torch.Tensor], align_corners: bool = False) -> torch.Tensor:
    """The HRNetV2 representation: every map resized (bilinear) to the first one's size and concatenated.

    ``[B×C_i×H_i×W_i] -> B×ΣC_i×H_0×W_0`` (four W18 branches: 18+36+72+144 = 270 channels at stride 4).
    """
    size = features[0].shape[-2:]
    resized = [F.interpolate(f, size=size, mode="bilinear", align_corners=align_corners) for f in features[1:]]
    return torch.cat([features[0], *resized], dim=1)


class ConvBn(nn.Sequential):
    """conv k×k (stride s) → BN (→ ReLU), keys ``0`` (conv) and ``1`` (BN) as upstream's ``nn.Sequential``."""

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, *, act: bool = True, bias: bool = False
    ) -> None:
        layers = [
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=bias),
            nn.BatchNorm2d(out_chs, momentum=_BN_MOMENTUM),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = conv_bn(x, self[0], self[1])
        return self[2](x) if len(self) == 3 else x


def _conv3x3(in_chs: int, out_chs: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, 3, stride, 1, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convs with a residual connection (stages 2–4)."""

    expansion = 1

    def __init__(self, in_chs: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_chs, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes, momentum=_BN_MOMENTUM)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, momentum=_BN_MOMENTUM)
        self.downsample = (
            ConvBn(in_chs, planes, 1, stride, act=False) if stride != 1 or in_chs != planes else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = F.relu_(conv_bn(x, self.conv1, self.bn1))
        return F.relu_(conv_bn(out, self.conv2, self.bn2).add_(shortcut))


class Bottleneck(nn.Module):
    """1×1 → 3×3 → 1×1 (×4 channels) with a residual connection (stage 1 and the classification neck)."""

    expansion = 4

    def __init__(self, in_chs: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_chs = planes * self.expansion
        self.conv1 = nn.Conv2d(in_chs, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=_BN_MOMENTUM)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes, momentum=_BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs, momentum=_BN_MOMENTUM)
        self.downsample = (
            ConvBn(in_chs, out_chs, 1, stride, act=False) if stride != 1 or in_chs != out_chs else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = F.relu_(conv_bn(x, self.conv1, self.bn1))
        out = F.relu_(conv_bn(out, self.conv2, self.bn2))
        return F.relu_(conv_bn(out, self.conv3, self.bn3).add_(shortcut))


def _make_layer(block: type[nn.Module], in_chs: int, planes: int, num_blocks: int) -> nn.Sequential:
    blocks = [block(in_chs, planes)]
    blocks += [block(planes * block.expansion, planes) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


def _fuse_layer(channels: Sequence[int], i: int, j: int) -> nn.Module:
    """The path from branch ``j`` to branch ``i``: 1×1 conv + BN (resized in ``forward``) from a lower
    resolution; ``i - j`` stride-2 3×3 conv + BN steps from a higher one, ReLU between them, not after the last."""
    if j > i:
        return ConvBn(channels[j], channels[i], 1, act=False)
    if j == i:
        return nn.Identity()
    steps = i - j
    return nn.Sequential(*[
        ConvBn(channels[j], channels[i] if k == steps - 1 else channels[j], 3, 2, act=k < steps - 1)
        for k in range(steps)
    ])


class HRModule(nn.Module):
    """One multi-resolution module: BasicBlocks per branch, then every branch receives the sum of all branches
    resampled to its resolution, followed by a ReLU.

    ``forward(list of B×C_i×H_i×W_i) -> list of the same shapes``; branch ``i+1`` has size ``ceil(H_i / 2)``.
    """

    def __init__(
        self, channels: Sequence[int], num_blocks: int, *, fuse_mode: str = "nearest", align_corners: bool = False
    ) -> None:
        super().__init__()
        n = len(channels)
        self.fuse_mode = fuse_mode
        self.align_corners = align_corners
        self.branches = nn.ModuleList(_make_layer(BasicBlock, c, c, num_blocks) for c in channels)
        self.fuse_layers = (
            nn.ModuleList(nn.ModuleList(_fuse_layer(channels, i, j) for j in range(n)) for i in range(n))
            if n > 1
            else None
        )

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        if self.fuse_layers is None:
            return xs
        return [self._fuse(i, fuse, xs) for i, fuse in enumerate(self.fuse_layers)]

    def _fuse(self, i: int, fuse: nn.ModuleList, xs: list[torch.Tensor]) -> torch.Tensor:
        # Summation order j = 0..n-1 as upstream. Sums of full tensors are in place (``y`` is a fresh conv
        # output there); the broadcast adds are not, since in-place writes through views break ONNX tracing.
        y = None
        for j in range(i):
            z = fuse[j](xs[j])
            y = z if y is None else y.add_(z)
        y = xs[i] if y is None else y.add_(xs[i])
        for j in range(i + 1, len(xs)):
            y = add_resized(y, fuse[j](xs[j]), mode=self.fuse_mode, align_corners=self.align_corners)
        return F.relu_(y)


def _transition(pre: Sequence[int], cur: Sequence[int]) -> nn.ModuleList:
    """Existing branches get a 3×3 conv only where the width changes; each new branch comes from the last
    previous branch through stride-2 3×3 conv steps."""
    layers: list[nn.Module] = []
    for i, c in enumerate(cur):
        if i < len(pre):
            layers.append(ConvBn(pre[i], c, 3) if pre[i] != c else nn.Identity())
        else:
            steps = i + 1 - len(pre)
            layers.append(nn.Sequential(*[
                ConvBn(pre[-1], c if k == steps - 1 else pre[-1], 3, 2) for k in range(steps)
            ]))
    return nn.ModuleList(layers)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


@register_notrace_function  # device-dependent layout: a leaf for torch.fx
def channels_last_on_cpu(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory on the CPU (oneDNN's native layout), unchanged elsewhere."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


def group_matcher(coarse: bool = False) -> dict:
    """timm's parameter groups (stem, one per stage or per module, classification neck) for layer-wise decay."""
    block = r"^(?:layer|transition|stage)(\d+)" if coarse else r"^(?:layer|transition|stage)(\d+)\.(\d+)"
    return {"stem": r"^(?:conv[12]|bn[12])\.", "blocks": [(block, None), (r"^(?:incre|downsamp|final)", (99999,))]}


class HRNetBody(TimmInterface):
    """Stem, stage 1 (Bottlenecks) and stages 2–4 (multi-resolution modules); shared by the classifier and the
    feature extractor.

    ``forward_stem(B×3×H×W, stem_residual) -> B×64×H/4×W/4`` and ``forward_stages(B×64×h×w) -> [B×C·2^i×…]``
    are separate so a subclass can add an input to the stem (``stem_residual`` is added after ``conv1``,
    before ``bn1``, e.g. a mask encoded by its own conv, as boundary patch refinement does).

    Args:
        width: C, the width of branch 0 (branches are C, 2C, 4C, 8C).
        stage1_blocks / stage1_planes: Bottlenecks of stage 1 and their planes (output 4 × planes).
        num_modules / num_blocks: multi-resolution modules of stages 2–4 and BasicBlocks per branch.
        stem_width: output channels of ``conv1``.
        fuse_mode: how lower resolutions are upsampled in the fuse layers: ``"nearest"`` (classification code,
            timm) or ``"bilinear"`` (semantic-segmentation code); always to the exact target size.
        align_corners: for ``fuse_mode="bilinear"``.
        drop_path_rate: accepted as timm's common argument; HRNet has no stochastic depth, so only 0.
    """

    def __init__(
        self,
        *,
        width: int,
        stage1_blocks: int,
        stage1_planes: int,
        num_modules: Sequence[int],
        num_blocks: Sequence[int],
        in_chans: int = 3,
        stem_width: int = 64,
        fuse_mode: str = "nearest",
        align_corners: bool = False,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if drop_path_rate:
            raise ValueError(f"HRNet has no stochastic depth (drop_path_rate={drop_path_rate})")
        if fuse_mode not in ("nearest", "bilinear"):
            raise ValueError(f"fuse_mode must be 'nearest' or 'bilinear', not {fuse_mode!r}")
        self.conv1 = nn.Conv2d(in_chans, stem_width, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width, momentum=_BN_MOMENTUM)
        self.conv2 = nn.Conv2d(stem_width, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=_BN_MOMENTUM)
        self.layer1 = _make_layer(Bottleneck, 64, stage1_planes, stage1_blocks)
        channels = [stage1_planes * Bottleneck.expansion]
        for stage, (modules, blocks) in enumerate(zip(num_modules, num_blocks, strict=True), start=2):
            new = [width * 2**k for k in range(stage)]
            self.add_module(f"transition{stage - 1}", _transition(channels, new))
            self.add_module(f"stage{stage}", nn.Sequential(*[
                HRModule(new, blocks, fuse_mode=fuse_mode, align_corners=align_corners) for _ in range(modules)
            ]))
            channels = new
        self.num_stages = len(num_modules)
        self.branch_channels = tuple(channels)

    def forward_stem(self, x: torch.Tensor, stem_residual: torch.Tensor | None = None) -> torch.Tensor:
        """``B×C_in×H×W -> B×64×ceil(H/4)×ceil(W/4)``; ``stem_residual`` (B×stem_width×H/2×W/2) is added to
        ``conv1(x)`` before ``bn1``. On the CPU the network runs channels-last (oneDNN's native layout: no
        reorders around each convolution), so the maps it returns are channels-last strided there."""
        x = channels_last_on_cpu(x)
        x = conv_bn(x, self.conv1, self.bn1) if stem_residual is None else self.bn1(self.conv1(x) + stem_residual)
        return F.relu_(conv_bn(F.relu_(x), self.conv2, self.bn2))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stem output ``B×64×h×w`` -> the branch outputs ``[B×C·2^i×ceil(h/2^i)×ceil(w/2^i)]``; blocks and
        multi-resolution modules checkpointed under ``set_grad_checkpointing``."""
        checkpointing = self.checkpointing()
        xs = [run_stage(self.layer1, x, checkpointing)]
        for stage in range(2, self.num_stages + 2):
            transition = getattr(self, f"transition{stage - 1}")
            xs = [t(xs[min(i, len(xs) - 1)]) for i, t in enumerate(transition)]
            for module in getattr(self, f"stage{stage}"):
                xs = checkpoint(module, xs) if checkpointing else module(xs)
        return xs

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return group_matcher(coarse)

    def stage_groups(self) -> list[list[nn.Module]]:
        """Modules grouped as ``[stem, stage 1, ..., stage 4]`` in execution order (for freezing)."""
        groups = [[self.conv1, self.bn1, self.conv2, self.bn2], [self.layer1]]
        for stage in range(2, self.num_stages + 2):
            groups.append([getattr(self, f"transition{stage - 1}"), getattr(self, f"stage{stage}")])
        return groups

    def _prepare_state_dict(self, state_dict: dict[str, torch.Tensor], keep_body_only: bool) -> dict:
        """Strip a wrapper prefix (``backbone.`` of mmdet/mmseg, ``model.`` of the segmentation code), drop
        non-body keys when asked, and fill ``num_batches_tracked`` buffers absent from older checkpoints."""
        prefix = ""
        if "conv1.weight" not in state_dict:
            for k in state_dict:
                if k.endswith(".conv1.weight") and k[: -len("conv1.weight")] + "layer1.0.conv1.weight" in state_dict:
                    prefix = k[: -len("conv1.weight")]
                    break
        state = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if keep_body_only:
            state = {k: v for k, v in state.items() if k.split(".", 1)[0] in _BODY_MODULES}
        for k, v in self.state_dict().items():
            if k.endswith("num_batches_tracked") and k not in state and k.rsplit(".", 1)[0] + ".weight" in state:
                state[k] = torch.zeros_like(v)
        return state


class HRNet(HRNetBody):
    """HRNet classifier with timm's interface.

    ``forward_features(B×3×H×W) -> B×2048×H/32×W/32``: each branch widened by one Bottleneck (``incre_modules``,
    128/256/512/1024 channels), merged from high to low resolution by stride-2 convs (``downsamp_modules``),
    then a 1×1 conv to 2048 (``final_layer``); ``forward_head`` pools and classifies.
    """

    def __init__(
        self, *, num_classes: int = 1000, drop_rate: float = 0.0, global_pool: str = "avg", **body_kwargs
    ) -> None:
        super().__init__(**body_kwargs)
        self.num_classes = num_classes
        self.num_features = 2048
        self.global_pool = check_global_pool(global_pool)
        self.incre_modules = nn.ModuleList(
            _make_layer(Bottleneck, c, p, 1) for c, p in zip(self.branch_channels, _HEAD_PLANES, strict=True)
        )
        head_chs = [p * Bottleneck.expansion for p in _HEAD_PLANES]
        self.downsamp_modules = nn.ModuleList(
            ConvBn(a, b, 3, 2, bias=True) for a, b in zip(head_chs[:-1], head_chs[1:], strict=True)
        )
        self.final_layer = ConvBn(head_chs[-1], self.num_features, 1, bias=True)
        self.head_drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [
            {"num_chs": c, "reduction": s, "module": "stage4"}
            for c, s in zip(self.branch_channels, _STRIDES, strict=True)
        ]
        self.pretrained_cfg: dict = {}
        self.apply(_init_weights)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh ``num_classes``-way classifier (identity for 0); ``global_pool``: ``"avg"`` or ``""``."""
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = check_global_pool(global_pool)
        classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.classifier = classifier.to(self.conv1.weight.device)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's ``forward_intermediates``: the branch outputs named by ``indices`` (None: all, n: the last n;
        the ``features_only`` outputs), and ``forward_features`` unless ``intermediates_only``. The branches
        are computed together, so ``stop_early`` saves nothing; HRNet has no final norm (``norm`` is a no-op)."""
        check_output_fmt(output_fmt, ("NCHW",))
        take_indices, _ = feature_take_indices(len(self.branch_channels), indices)
        xs = self.forward_stages(self.forward_stem(x))
        intermediates = [xs[i] for i in take_indices]
        if intermediates_only:
            return intermediates
        return self.forward_neck(xs), intermediates

    def forward_neck(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """The classification neck: branch outputs -> ``B×2048×h/8×w/8``."""
        y = self.incre_modules[0](xs[0])
        for i, down in enumerate(self.downsamp_modules):
            y = self.incre_modules[i + 1](xs[i + 1]) + down(y)
        return self.final_layer(y)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_neck(self.forward_stages(self.forward_stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(global_pool(x, self.global_pool, channels_last=False))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official (HRNet-Image-Classification), timm and densevision checkpoints share the key names."""
        return self._prepare_state_dict(state_dict, keep_body_only=False)


class HRNetFeatures(HRNetBody, FeatureExtractor):
    """HRNet dense backbone: ``B×3×H×W -> [B×C·2^i×H_i×W_i]`` (C, 2C, 4C, 8C at strides 4/8/16/32) for any
    H, W, where ``H_0 = ceil(ceil(H/2)/2)`` and ``H_{i+1} = ceil(H_i/2)``.

    :func:`hrnet_v2_concat` of all four outputs is the HRNetV2 representation (``forward_v2``).
    """

    def __init__(self, *, out_indices: Sequence[int] | None = None, **body_kwargs) -> None:
        super().__init__(**body_kwargs)
        self.out_indices = resolve_out_indices(out_indices, len(self.branch_channels))
        self._all_channels = self.branch_channels
        self._all_strides = _STRIDES[: len(self.branch_channels)]
        self._all_modules = tuple(f"stage{self.num_stages + 1}" for _ in self.branch_channels)
        self.pretrained_cfg: dict = {}
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.select(self.forward_stages(self.forward_stem(x)))

    def forward_v2(self, x: torch.Tensor) -> torch.Tensor:
        """HRNetV2: ``B×3×H×W -> B×(C+2C+4C+8C)×H_0×W_0``, all branches at stride 4."""
        return hrnet_v2_concat(self.forward_stages(self.forward_stem(x)))

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Classification (official / timm), segmentation (``model.`` prefix, ``last_layer``) and
        mmdet/mmseg (``backbone.`` prefix) checkpoints: everything outside the body is dropped."""
        return self._prepare_state_dict(state_dict, keep_body_only=True)


def _cfg_small() -> dict:
    return {"width": 16, "stage1_blocks": 1, "stage1_planes": 32, "num_modules": (1, 1, 1), "num_blocks": (2, 2, 2)}


def _cfg_small_v2() -> dict:
    return {"width": 18, "stage1_blocks": 2, "stage1_planes": 64, "num_modules": (1, 3, 2), "num_blocks": (2, 2, 2)}


def _cfg_wide(width: int) -> dict:
    return {
        "width": width, "stage1_blocks": 4, "stage1_planes": 64, "num_modules": (1, 4, 3), "num_blocks": (4, 4, 4),
    }


_CFGS = {
    "hrnet_w18_small": _cfg_small(),
    "hrnet_w18_small_v2": _cfg_small_v2(),
    **{f"hrnet_w{w}": _cfg_wide(w) for w in (18, 30, 32, 40, 44, 48, 64)},
}


def _pretrained_cfg(name: str, num_classes: int) -> dict:
    """timm's configuration of the official (HRNet-Image-Classification) ImageNet weights, which timm hosts
    unchanged as ``<name>.ms_in1k``."""
    return {
        "architecture": name,
        "hf_hub_id": f"timm/{name}.ms_in1k",
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "interpolation": "bilinear",
        "crop_pct": 0.875,
        "num_classes": num_classes,
        "first_conv": "conv1",
        "classifier": "classifier",
    }


default_cfgs = {name: _pretrained_cfg(name, 1000) for name in _CFGS}


def _create_hrnet(
    name: str,
    *,
    num_classes: int = 1000,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    **kwargs,
) -> nn.Module:
    return build_variant(HRNet, HRNetFeatures, {**_CFGS[name], **kwargs}, partial(_pretrained_cfg, name),
                         num_classes=num_classes, features_only=features_only, out_indices=out_indices)


@register_model
def hrnet_w18_small(**kwargs) -> nn.Module:
    """HRNet-W18-Small-v1: 13.2M params, 1.49 GMACs, 72.3% top-1."""
    return _create_hrnet("hrnet_w18_small", **kwargs)


@register_model
def hrnet_w18_small_v2(**kwargs) -> nn.Module:
    """HRNet-W18-Small-v2: 15.6M params, 2.42 GMACs, 75.1% top-1."""
    return _create_hrnet("hrnet_w18_small_v2", **kwargs)


@register_model
def hrnet_w18(**kwargs) -> nn.Module:
    """HRNet-W18: 21.3M params, 3.99 GMACs, 76.8% top-1."""
    return _create_hrnet("hrnet_w18", **kwargs)


@register_model
def hrnet_w30(**kwargs) -> nn.Module:
    """HRNet-W30: 37.7M params, 7.55 GMACs, 78.2% top-1."""
    return _create_hrnet("hrnet_w30", **kwargs)


@register_model
def hrnet_w32(**kwargs) -> nn.Module:
    """HRNet-W32: 41.2M params, 8.31 GMACs, 78.5% top-1."""
    return _create_hrnet("hrnet_w32", **kwargs)


@register_model
def hrnet_w40(**kwargs) -> nn.Module:
    """HRNet-W40: 57.6M params, 11.8 GMACs, 78.9% top-1."""
    return _create_hrnet("hrnet_w40", **kwargs)


@register_model
def hrnet_w44(**kwargs) -> nn.Module:
    """HRNet-W44: 67.1M params, 13.9 GMACs, 78.9% top-1."""
    return _create_hrnet("hrnet_w44", **kwargs)


@register_model
def hrnet_w48(**kwargs) -> nn.Module:
    """HRNet-W48: 77.5M params, 16.1 GMACs, 79.3% top-1."""
    return _create_hrnet("hrnet_w48", **kwargs)


@register_model
def hrnet_w64(**kwargs) -> nn.Module:
    """HRNet-W64: 128.1M params, 26.9 GMACs, 79.5% top-1."""
    return _create_hrnet("hrnet_w64", **kwargs)
