"""CycleMLP: outputs equal upstream's formulation (deformable-convolution Cycle-FC, materialised branches, written
here from the upstream facts), official state-dict names and ``offset`` buffers, dense features at any size,
checkpoint loading and timm's registry."""

from __future__ import annotations

import argparse
import re

import pytest
import timm
import torch
from torchvision.ops import deform_conv2d

import densevision
from densevision import create_model
from densevision.errors import CheckpointError
from densevision.models.cyclemlp import CycleMixer
from densevision.models.features import FeatureExtractor

NAME = "cyclemlp_b1"
TINY = dict(layers=(1, 1, 2, 1), embed_dims=(8, 16, 24, 32), mlp_ratios=(2, 2, 2, 2))


def randomize_(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial weights everywhere (LayerNorm affine and biases included); offsets untouched."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.2 if p.ndim > 1 else 0.5) + (1.0 if p.ndim == 1 else 0.0))
    return model


def deform_fc(fc: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Upstream Cycle-FC on channels-last ``x``: deform_conv2d with the ``offset`` buffer expanded over B, H, W."""
    b, h, w, _ = x.shape
    y = deform_conv2d(x.permute(0, 3, 1, 2), fc.offset.expand(b, -1, h, w), fc.weight, fc.bias)
    return y.permute(0, 2, 3, 1)


def reference_mixer(m: CycleMixer, x: torch.Tensor) -> torch.Tensor:
    b, _, _, c = x.shape
    h, w, cc = deform_fc(m.sfc_h, x), deform_fc(m.sfc_w, x), m.mlp_c(x)
    a = (h + w + cc).permute(0, 3, 1, 2).flatten(2).mean(2)
    a = m.reweight(a).reshape(b, c, 3).permute(2, 0, 1).softmax(dim=0).unsqueeze(2).unsqueeze(2)
    return m.proj(h * a[0] + w * a[1] + cc * a[2])


def reference_trunk(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Upstream network: overlapping patch embed, blocks with the reference mixer, 3×3 s2 downsampling; returns
    the channels-last output of every stage."""
    x = model.patch_embed.proj(x).permute(0, 2, 3, 1)
    stages = []
    for idx, module in enumerate(model.network):
        if idx % 2:
            x = module.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            continue
        for blk in module:
            x = x + reference_mixer(blk.attn, blk.norm1(x))
            x = x + blk.mlp(blk.norm2(x))
        stages.append(x)
    return stages


@pytest.mark.parametrize("size", [(2, 3), (3, 5), (9, 11)])
def test_mixer_equals_deform_formulation(size: tuple[int, int]) -> None:
    """Covers the three paths: branch mixing (map ≤ C), per-sample weights, per-sample weights with proj folded."""
    mixer = randomize_(CycleMixer(8)).eval()
    x = torch.randn(2, *size, 8)
    with torch.no_grad():
        assert (mixer(x) - reference_mixer(mixer, x)).abs().max() <= 1e-4


def test_mixer_gradients_equal_deform_formulation() -> None:
    mixer = randomize_(CycleMixer(8))
    x = torch.randn(2, 9, 11, 8)
    target = torch.randn(2, 9, 11, 8)
    (mixer(x) * target).sum().backward()
    ours = {n: p.grad.clone() for n, p in mixer.named_parameters()}
    mixer.zero_grad()
    (reference_mixer(mixer, x) * target).sum().backward()
    for n, p in mixer.named_parameters():
        assert (ours[n] - p.grad).abs().max() <= 1e-3 * max(1.0, p.grad.abs().max().item()), n


def test_classifier_equals_reference() -> None:
    model = randomize_(create_model(NAME, num_classes=7, **TINY)).eval()
    x = torch.randn(2, 3, 67, 45)
    with torch.no_grad():
        last = reference_trunk(model, x)[-1]
        expected = model.head(model.norm(last).mean((1, 2)))
        assert (model(x) - expected).abs().max() <= 1e-4
        assert model.forward_features(x).shape == (2, 3, 2, 32)


def test_features_equal_reference_at_odd_size() -> None:
    features = randomize_(create_model(NAME, features_only=True, **TINY)).eval()
    x = torch.randn(1, 3, 70, 53)
    with torch.no_grad():
        got = features(x)
        stages = reference_trunk(features, x)
    assert isinstance(features, FeatureExtractor) and features.out_channels == [8, 16, 24, 32]
    for i, (g, s) in enumerate(zip(got, stages, strict=True)):
        expected = getattr(features, f"norm{2 * i}")(s).permute(0, 3, 1, 2)
        assert g.is_contiguous() and (g - expected).abs().max() <= 1e-4
    assert [tuple(t.shape[-2:]) for t in got] == [(17, 13), (9, 7), (5, 4), (3, 2)]


def test_official_state_dict_names() -> None:
    with torch.device("meta"):
        state = create_model(NAME).state_dict()
    mixer = r"attn\.(mlp_c|sfc_[hw]|reweight\.fc[12]|proj)"
    block = rf"network\.[0246]\.\d+\.(norm1|norm2|{mixer}|mlp\.fc[12])"
    pattern = re.compile(rf"(patch_embed\.proj|{block}|network\.[135]\.proj|norm|head)\.(weight|bias|offset)")
    assert all(pattern.fullmatch(k) for k in state), [k for k in state if not pattern.fullmatch(k)]
    assert "network.0.0.attn.mlp_c.bias" not in state
    assert state["network.4.3.attn.sfc_w.offset"].shape == (1, 640, 1, 1)
    assert len([k for k in state if k.endswith(".offset")]) == 2 * (2 + 2 + 4 + 2)


def test_checkpoint_with_or_without_offsets(tmp_path) -> None:
    source = randomize_(create_model(NAME, **TINY)).eval()
    state = source.state_dict()
    x = torch.randn(1, 3, 32, 32)
    for label, ckpt in [("with", state), ("without", {k: v for k, v in state.items() if not k.endswith("offset")})]:
        path = tmp_path / f"{label}.pth"
        torch.save({"model": ckpt}, path)
        model = create_model(NAME, pretrained=path, **TINY).eval()
        with torch.no_grad():
            assert torch.equal(model(x), source(x)), label
    wrong = dict(state)
    wrong["network.0.0.attn.sfc_h.offset"] = -wrong["network.0.0.attn.sfc_h.offset"]
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match="offset"):
        create_model(NAME, pretrained=tmp_path / "wrong.pth", **TINY)


def test_training_checkpoint_needs_trust(tmp_path) -> None:
    path = tmp_path / "train.pth"
    torch.save({"model": create_model(NAME, **TINY).state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match="trust"):
        create_model(NAME, pretrained=path, **TINY)
    assert create_model(NAME, pretrained=path, trust_checkpoint=True, **TINY) is not None


def test_features_load_classification_and_dense_checkpoints(tmp_path) -> None:
    classifier = randomize_(create_model(NAME, **TINY)).eval()
    torch.save({"model": classifier.state_dict()}, tmp_path / "cls.pth")
    features = create_model(NAME, features_only=True, out_indices=(1, 2), pretrained=tmp_path / "cls.pth", **TINY)
    assert len(features.network) == 5 and not hasattr(features, "norm0")
    assert torch.equal(features.norm4.weight, torch.ones(24))  # fresh, as upstream's dense backbones
    assert torch.equal(features.network[4][1].mlp.fc2.weight, classifier.network[4][1].mlp.fc2.weight)

    dense = randomize_(create_model(NAME, features_only=True, **TINY)).eval()
    mmdet = {f"backbone.{k}": v for k, v in dense.state_dict().items()} | {"neck.conv.weight": torch.zeros(1)}
    torch.save({"state_dict": mmdet, "meta": {"epoch": 12}}, tmp_path / "dense.pth")  # mmdetection layout
    loaded = create_model(NAME, features_only=True, pretrained=tmp_path / "dense.pth", **TINY).eval()
    x = torch.randn(1, 3, 40, 36)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(loaded(x), dense(x), strict=True))


def test_timm_registry() -> None:
    assert densevision.list_models("cyclemlp*") == [f"cyclemlp_b{i}" for i in range(1, 6)]
    features = timm.create_model(NAME, features_only=True)
    assert isinstance(features, FeatureExtractor) and features.out_channels == [64, 128, 320, 512]
    with torch.no_grad():
        assert [t.shape[1] for t in features(torch.randn(1, 3, 64, 64))] == [64, 128, 320, 512]
    model = timm.create_model("cyclemlp_b5", num_classes=3, **{**TINY, "embed_dims": (8, 16, 24, 32)})
    assert model.pretrained_cfg["crop_pct"] == 0.875 and model.get_classifier().out_features == 3


def test_train_step_updates_every_parameter() -> None:
    model = create_model(NAME, num_classes=4, drop_path_rate=0.1, **TINY).train()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 64, 64)), torch.tensor([0, 3]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
