"""AS-MLP: outputs equal upstream's formulation (NCHW 1×1 convolutions, GroupNorms, the pad → chunk → roll →
concat → crop shift, written here from the upstream facts), official state-dict names, any input size, dense
features, checkpoint loading and timm's registry."""

from __future__ import annotations

import re

import pytest
import timm
import torch
import torch.nn.functional as F

import densevision
from densevision import create_model
from densevision.bench import upstream_formulations
from densevision.models.asmlp import group_norm1_nhwc
from densevision.models.features import FeatureExtractor

NAME = "asmlp_tiny"
UPSTREAM = upstream_formulations()  # pad-chunk-roll shift, NCHW blocks
TINY = dict(embed_dim=8, depths=(1, 2, 1, 1))


def randomize_(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial weights everywhere (GroupNorm affine and biases included)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.2 if p.ndim > 1 else 0.5) + (1.0 if p.ndim == 1 else 0.0))
    return model


def reference_trunk(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Upstream (dense) network in NCHW: pad to a multiple of 4, patch embed + norm, blocks, merging with odd
    sizes padded; returns every stage's output before merging."""
    h, w = x.shape[-2:]
    x = F.pad(x, (0, -w % 4, 0, -h % 4))
    x = model.patch_embed.norm(model.patch_embed.proj(x))
    outs = []
    for layer in model.layers:
        for blk in layer.blocks:
            x = UPSTREAM.ReferenceASMLP.block(blk, x)
        outs.append(x)
        if layer.downsample is not None:
            x = F.pad(x, (0, x.shape[3] % 2, 0, x.shape[2] % 2))
            x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], 1)
            x = layer.downsample.reduction(layer.downsample.norm(x))
    return outs


@pytest.mark.parametrize("size", [(224, 224), (90, 137)])
def test_classifier_equals_reference_at_any_size(size: tuple[int, int]) -> None:
    model = randomize_(create_model(NAME, num_classes=7, **TINY)).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected = model.head(model.norm(reference_trunk(model, x)[-1]).mean((2, 3)))
        assert (model(x) - expected).abs().max() <= 1e-4


def test_features_equal_reference_at_odd_size() -> None:
    features = randomize_(create_model(NAME, features_only=True, **TINY)).eval()
    x = torch.randn(1, 3, 70, 53)
    with torch.no_grad():
        got = features(x)
        stages = reference_trunk(features, x)
    assert isinstance(features, FeatureExtractor) and features.out_channels == [8, 16, 32, 64]
    for i, (g, s) in enumerate(zip(got, stages, strict=True)):
        assert g.is_contiguous() and (g - getattr(features, f"norm{i}")(s)).abs().max() <= 1e-4
    assert [tuple(t.shape[-2:]) for t in got] == [(18, 14), (9, 7), (5, 4), (3, 2)]


def test_official_state_dict_names() -> None:
    with torch.device("meta"):
        state = create_model(NAME).state_dict()
    mixer = r"axial_shift\.(conv1|conv2_1|conv2_2|conv3|norm1|norm2)"
    block = rf"layers\.[0-3]\.blocks\.\d+\.(norm1|norm2|{mixer}|mlp\.fc[12])"
    pattern = re.compile(rf"(patch_embed\.(proj|norm)|{block}|layers\.[0-2]\.downsample\.(norm|reduction)|norm|head)"
                         r"\.(weight|bias)")
    assert all(pattern.fullmatch(k) for k in state), [k for k in state if not pattern.fullmatch(k)]
    assert state["layers.2.blocks.5.axial_shift.conv2_1.weight"].shape == (384, 384, 1, 1)
    assert state["layers.1.downsample.reduction.weight"].shape == (384, 768, 1, 1)
    assert "layers.0.downsample.reduction.bias" not in state


def test_features_load_classification_and_dense_checkpoints(tmp_path) -> None:
    classifier = randomize_(create_model(NAME, **TINY)).eval()
    torch.save({"model": classifier.state_dict()}, tmp_path / "cls.pth")
    features = create_model(NAME, features_only=True, out_indices=(0, 2), pretrained=tmp_path / "cls.pth", **TINY)
    assert len(features.layers) == 3 and features.layers[2].downsample is None and not hasattr(features, "norm1")
    assert torch.equal(features.norm2.weight, torch.ones(32))  # fresh, as upstream's dense backbone
    assert torch.equal(features.layers[1].blocks[1].mlp.fc1.weight, classifier.layers[1].blocks[1].mlp.fc1.weight)

    dense = randomize_(create_model(NAME, features_only=True, **TINY)).eval()
    mmdet = {f"backbone.{k}": v for k, v in dense.state_dict().items()} | {"neck.conv.weight": torch.zeros(1)}
    torch.save({"state_dict": mmdet, "meta": {"epoch": 12}}, tmp_path / "dense.pth")  # mmdetection layout
    loaded = create_model(NAME, features_only=True, pretrained=tmp_path / "dense.pth", **TINY).eval()
    x = torch.randn(1, 3, 40, 36)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(loaded(x), dense(x), strict=True))


def test_timm_registry() -> None:
    assert densevision.list_models("asmlp*") == ["asmlp_base", "asmlp_small", "asmlp_tiny"]
    features = timm.create_model(NAME, features_only=True, out_indices=(1, 3), **TINY)
    assert isinstance(features, FeatureExtractor) and features.strides == [8, 32]
    model = timm.create_model("asmlp_base", num_classes=5, **TINY)
    assert model.pretrained_cfg["input_size"] == (3, 224, 224) and model.get_classifier().out_features == 5


def test_train_step_updates_every_parameter() -> None:
    model = create_model(NAME, num_classes=4, drop_path_rate=0.1, **TINY).train()
    loss = F.cross_entropy(model(torch.randn(2, 3, 48, 40)), torch.tensor([1, 2]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_group_norm1_nhwc_equals_group_norm_values_and_gradients() -> None:
    """The GPU formulation of the norms: same outputs and gradients as ``nn.GroupNorm(1, C)`` on NCHW."""
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(1, 12)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = (torch.randn(3, 5, 7, 12) * 4 + 2).requires_grad_()
    expected = norm(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    got = group_norm1_nhwc(x, norm.weight, norm.bias, norm.eps)
    assert got.shape == x.shape and (got - expected).abs().max() <= 1e-5
    grads = torch.autograd.grad((expected * expected.detach().sin()).sum(), (x, norm.weight, norm.bias))
    ours = torch.autograd.grad((got * expected.detach().sin()).sum(), (x, norm.weight, norm.bias))
    for g, o in zip(grads, ours, strict=True):
        assert (g - o).abs().max() <= 1e-4 * g.abs().max()
