"""The segmenter: a backbone's ``features_only`` maps → a decode head (→ an auxiliary head while training),
logits bilinearly resized to the input size. Any input size; CPU-first (plain BatchNorm).

``build_segmenter("swin_tiny_patch4_window7_224", "upernet", 150)`` builds the Swin-T UperNet of the Swin
segmentation repository (60M parameters with its auxiliary head); ``"timm:<model>"`` takes any timm
``features_only`` model. :func:`load_segmenter` rebuilds a trained model from its checkpoint's model spec;
:func:`init_backbone_from` starts the backbone from another model's (e.g. a detector's) weights.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from densevision.engine.checkpoint import find_checkpoint, init_from_checkpoint, model_spec, read_model_spec
from densevision.errors import CheckpointError, DenseVisionError
from densevision.models.bodies import build_body, check_body
from densevision.models.checkpoint import load_state_dict_checked, read_checkpoint, unwrap_state_dict
from densevision.segmentation.heads import FCNHead, build_head, resize
from densevision.segmentation.mmseg_weights import is_segmenter_state_dict, load_segmentation_weights

BUILDER = "segmenter"
# Used only when the body declares no ``pretrained_cfg`` (ImageNet statistics).
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
# Parameters without weight decay in the Swin / AS-MLP segmentation recipes (besides norms and biases).
_NO_DECAY_NAMES = frozenset({"absolute_pos_embed", "relative_position_bias_table", "pos_embed", "cls_token"})


class Segmenter(nn.Module):
    """Backbone + decode head (+ auxiliary head on feature level ``aux_index``).

    ``forward(images: B×3×H×W in [0, 1]) -> B×K×H×W`` logits; with ``return_aux=True`` (training) a dict
    ``{"seg": B×K×H×W, "aux": B×K×H×W}`` (``"aux"`` only with an auxiliary head). Images are normalised
    inside with the backbone's mean / std, so an exported graph takes the same [0, 1] input.

    Args:
        backbone: ``forward(B×3×H×W) -> list[B×C_i×H_i×W_i]``.
        head: maps that list to ``B×K×H_0×W_0``.
        aux_head: maps level ``aux_index`` to ``B×K×h×w`` (None: no auxiliary head).
        arch: how the model was built (:func:`build_segmenter` arguments), saved with checkpoints.
        classes: class names (saved with checkpoints, used by predict).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, *, aux_head: nn.Module | None = None,
                 aux_index: int = 2, arch: Mapping[str, Any] | None = None,
                 classes: Sequence[str] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.decode_head = head
        self.auxiliary_head = aux_head
        self.aux_index = aux_index
        self.arch = dict(arch or {})
        self.classes = list(classes or [])
        cfg = getattr(backbone, "pretrained_cfg", None) or {}
        self.register_buffer("mean", torch.tensor(cfg.get("mean", _MEAN)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", _STD)).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor, return_aux: bool = False) -> torch.Tensor | dict[str, torch.Tensor]:
        size = images.shape[-2:]
        feats = self.backbone((images - self.mean) / self.std)
        logits = resize(self.decode_head(feats), size)
        if not return_aux:
            return logits
        out = {"seg": logits}
        if self.auxiliary_head is not None:
            out["aux"] = resize(self.auxiliary_head(feats[self.aux_index]), size)
        return out

    def no_weight_decay(self) -> set[str]:
        """Full names of the position tables (and what the backbone lists), which get no weight decay."""
        own = getattr(self.backbone, "no_weight_decay", None)
        listed = {f"backbone.{n}" for n in own()} if callable(own) else set()
        return listed | {n for n, _ in self.named_parameters() if n.rsplit(".", 1)[-1] in _NO_DECAY_NAMES}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Label maps: ``B×3×H×W`` in [0, 1] -> ``B×H×W`` int64 (argmax of the logits)."""
        return self(images).argmax(1)


def build_segmenter(
    backbone: str,
    head: str,
    num_classes: int,
    *,
    channels: int | None = None,
    fpn_channels: int = 256,
    pool_scales: Sequence[int] = (1, 2, 3, 6),
    dropout: float = 0.1,
    aux: bool | None = None,
    aux_channels: int = 256,
    aux_index: int = 2,
    weights: str | os.PathLike | None = None,
    require_segmenter: bool = False,
    trust_checkpoint: bool = False,
    classes: Sequence[str] | None = None,
    backbone_kwargs: Mapping[str, Any] | None = None,
) -> Segmenter:
    """A segmenter over the zoo or ``"timm:<model>"`` backbone ``backbone``.

    Args:
        head: ``"upernet"``, ``"fpn"`` (Semantic FPN) or ``"hrnetv2"``.
        num_classes: K, the logits' channels.
        channels: head width (default: UperNet 512, Semantic FPN 128).
        fpn_channels: Semantic FPN's pyramid width.
        pool_scales / dropout: UperNet pyramid bins; dropout before the classifiers.
        aux: auxiliary FCN head (``aux_channels`` wide) on level ``aux_index`` (default: with UperNet only).
        weights: a checkpoint of the whole segmenter as mmsegmentation (the Swin / AS-MLP repositories),
            HRNet-Semantic-Segmentation or densevision wrote it, loaded strictly
            (:mod:`~densevision.segmentation.mmseg_weights`); else a checkpoint of the backbone (ImageNet weights:
            official / timm / densevision formats). ``require_segmenter``: a backbone-only ``weights`` is a
            :class:`CheckpointError` (fine-tuning from a whole segmenter).
        classes: class names kept with the model.
        backbone_kwargs: architecture overrides of the backbone (e.g. ``{"width": 8}`` for a tiny HRNet).
    """
    if num_classes < 1:
        raise DenseVisionError(f"num_classes must be at least 1, got {num_classes}")
    if classes is not None and len(classes) != num_classes:
        raise DenseVisionError(f"{len(classes)} class names for num_classes={num_classes}")
    whole = None
    if weights is not None:
        state = unwrap_state_dict(read_checkpoint(weights, trust_checkpoint=trust_checkpoint))
        whole = state if is_segmenter_state_dict(state) else None
        if whole is None and require_segmenter:
            raise CheckpointError(f"{weights}: holds no whole segmenter (no decode_head.* or last_layer.* tensors); "
                                  "a backbone checkpoint goes to --backbone-weights")
    body = build_body(backbone, weights=weights if whole is None else None, trust_checkpoint=trust_checkpoint,
                      **dict(backbone_kwargs or {}))
    if not any(p.is_meta for p in body.parameters()):
        check_body(body, backbone)
    in_channels, strides = list(body.out_channels), list(body.strides)
    try:
        decode = build_head(head, in_channels, strides, num_classes, channels=channels, fpn_channels=fpn_channels,
                            pool_scales=pool_scales, dropout=dropout)
    except ValueError as exc:
        raise DenseVisionError(str(exc)) from None
    aux = head == "upernet" if aux is None else aux
    if aux and not 0 <= aux_index < len(in_channels):
        raise DenseVisionError(f"aux_index {aux_index} is outside the backbone's {len(in_channels)} levels")
    aux_head = FCNHead(in_channels[aux_index], num_classes, channels=aux_channels, dropout=dropout) if aux else None
    arch = {"backbone": backbone, "head": head, "num_classes": num_classes, "channels": channels,
            "fpn_channels": fpn_channels, "pool_scales": list(pool_scales), "dropout": dropout, "aux": aux,
            "aux_channels": aux_channels, "aux_index": aux_index, "backbone_kwargs": dict(backbone_kwargs or {})}
    model = Segmenter(body, decode, aux_head=aux_head, aux_index=aux_index, arch=arch, classes=classes)
    if whole is not None:
        load_segmentation_weights(model, whole, str(weights))
    return model


def init_backbone_from(model: Segmenter, path: str | os.PathLike, *, prefix: str = "backbone.body.",
                       trust_checkpoint: bool = False) -> Segmenter:
    """Initialise ``model.backbone`` from the ``prefix*`` tensors of another model's checkpoint on the same
    backbone (:func:`~densevision.engine.checkpoint.init_from_checkpoint`)."""
    init_from_checkpoint(model.backbone, path, prefix=prefix, trust_checkpoint=trust_checkpoint)
    return model


def segmenter_spec(model: Segmenter) -> dict[str, Any]:
    """The ``segmenter`` model spec: :func:`build_segmenter` arguments, class names in ``meta``."""
    return model_spec(BUILDER, model.arch, {"classes": model.classes})


def load_segmenter(path: str | os.PathLike, *, trust_checkpoint: bool = False) -> Segmenter:
    """Rebuild a trained segmenter (eval mode) from a ``seg train`` run directory (:func:`find_checkpoint`)
    or checkpoint file."""
    file = find_checkpoint(path)
    state = read_checkpoint(file, trust_checkpoint=trust_checkpoint)
    spec = read_model_spec(state, str(file)) if isinstance(state, Mapping) else None
    if spec is None or spec["builder"] != BUILDER:
        found = "no model spec" if spec is None else f"a {spec['builder']} model"
        raise CheckpointError(f"{file}: holds {found}, not a segmenter (train one with `densevision seg train`)")
    arch = dict(spec["config"])
    classes = spec["meta"].get("classes") or None
    try:
        model = build_segmenter(arch.pop("backbone"), arch.pop("head"), arch.pop("num_classes"), classes=classes,
                                **arch)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{file}: the saved segmenter configuration is invalid ({exc})") from None
    load_state_dict_checked(model, unwrap_state_dict(state), str(file))
    return model.eval()
