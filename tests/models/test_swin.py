"""Swin: the block against an upstream-style reference (pad, roll, partition), tiny-config shapes and gradients,
features at odd sizes, checkpoint formats (official, timm, own, mmdet ``backbone.``), logits equal to timm's, and
the ONNX-export form (traced pads and mask) against ONNX Runtime at sizes other than the traced one."""

from __future__ import annotations

import argparse
import math
import re

import pytest
import timm
import torch
import torch.nn.functional as F

from densevision import create_model
from densevision.errors import CheckpointError
from densevision.export import check_with_onnxruntime, export_model_bytes
from densevision.layers.attention import (
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from densevision.models.swin import (
    SwinFeatures,
    SwinTransformer,
    SwinTransformerBlock,
    shifted_window_mask_traced,
    window_layout,
)

TINY = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), drop_path_rate=0.0)
NAME = "swin_tiny_patch4_window7_224"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def randomize_(model: torch.nn.Module) -> torch.nn.Module:
    """Give every parameter O(0.1–1) random values so that layout mistakes change the output visibly."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                p.normal_(0, 1.0)
            elif p.ndim == 1:
                p.normal_(1.0 if "norm" in name and name.endswith("weight") else 0.0, 0.1)
            else:
                p.normal_(0, 1.0 / math.sqrt(p[0].numel()))
    return model


def reference_block(block: SwinTransformerBlock, x: torch.Tensor) -> torch.Tensor:
    """Official detection-backbone block on ``B×H×W×C``: norm1, pad to window multiples, roll by −shift,
    partition, attention with bias (+ mask for the padded size), reverse, roll back, crop, residuals."""
    b, h, w, c = x.shape
    m, s = block.window_size, block.shift_size
    attn = block.attn
    y = block.norm1(x)
    hp, wp = math.ceil(h / m) * m, math.ceil(w / m) * m
    y = F.pad(y, (0, 0, 0, wp - w, 0, hp - h))
    mask = None
    if s:
        y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        labels = torch.zeros(1, hp, wp, 1)
        cnt = 0
        for hs in (slice(0, -m), slice(-m, -s), slice(-s, None)):
            for ws in (slice(0, -m), slice(-m, -s), slice(-s, None)):
                labels[:, hs, ws, :] = cnt
                cnt += 1
        lw = window_partition(labels, m).squeeze(-1)
        mask = (lw.unsqueeze(1) - lw.unsqueeze(2)).ne(0).float() * -100.0
    windows = window_partition(y, m)
    nw, n = windows.shape[0], m * m
    heads = attn.num_heads
    qkv = attn.qkv(windows).reshape(nw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * (c // heads) ** -0.5, qkv[1], qkv[2]
    scores = q @ k.transpose(-2, -1)
    index = relative_position_index(m)
    bias = attn.relative_position_bias_table[index.view(-1)].view(n, n, -1).permute(2, 0, 1)
    scores = scores + bias.unsqueeze(0)
    if mask is not None:
        scores = scores.view(nw // mask.shape[0], mask.shape[0], heads, n, n) + mask[None, :, None]
        scores = scores.view(-1, heads, n, n)
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(nw, n, c)
    y = window_reverse(attn.proj(out), m, hp, wp)
    if s:
        y = torch.roll(y, shifts=(s, s), dims=(1, 2))
    x = x + y[:, :h, :w]
    return x + block.mlp(block.norm2(x))


@pytest.mark.parametrize(
    ("h", "w", "m", "s"), [(14, 14, 7, 0), (14, 14, 7, 3), (9, 13, 4, 2), (5, 5, 7, 3), (3, 10, 7, 0), (11, 6, 3, 1)]
)
def test_block_matches_reference(h: int, w: int, m: int, s: int) -> None:
    block = randomize_(SwinTransformerBlock(8, 2, window_size=m, shift_size=s)).eval()
    x = torch.randn(2, h, w, 8)
    with torch.no_grad():
        want = reference_block(block, x)
        torch.testing.assert_close(block(x), want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(block._forward_traced(x), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("h", "w", "m", "s"), [(7, 7, 7, 3), (14, 21, 7, 3), (12, 8, 4, 2), (6, 9, 3, 1)])
def test_traced_mask_equals_mask(h: int, w: int, m: int, s: int) -> None:
    torch.testing.assert_close(shifted_window_mask_traced(h, w, m, s), shifted_window_mask(h, w, m, s), rtol=0, atol=0)


def test_features_onnx_graph_holds_at_untraced_sizes() -> None:
    """Traced at 64×96 (no padding anywhere), run by ONNX Runtime at sizes that pad at the patch embedding, in
    every block and at each patch merging, and at maps smaller than one window."""
    small = dict(embed_dim=16, depths=(1, 2, 1, 1), num_heads=(1, 2, 2, 4))
    model = randomize_(create_model(NAME, features_only=True, **small)).eval()
    onnx_bytes, _ = export_model_bytes(model, features=True, size=(64, 96))
    inputs = [torch.randn(2, 3, 64, 96), torch.randn(1, 3, 93, 150), torch.randn(1, 3, 31, 17)]
    checks = check_with_onnxruntime(onnx_bytes, model, inputs, atol=1e-4, label=NAME)
    assert [c["input_shape"] for c in checks] == [list(x.shape) for x in inputs]


def test_window_layout_is_a_permutation() -> None:
    layout = window_layout(9, 13, 4, 2, torch.device("cpu"))
    assert layout.padded and layout.gather.numel() == 12 * 16
    real = layout.gather[layout.gather < 9 * 13]
    assert sorted(real.tolist()) == list(range(9 * 13))
    torch.testing.assert_close(layout.gather[layout.scatter], torch.arange(9 * 13))
    identity = window_layout(14, 7, 7, 0, torch.device("cpu"))
    assert identity.gather is None and identity.mask is None


def test_classifier_shapes_and_interface() -> None:
    model = create_model(NAME, num_classes=10, **TINY).eval()
    x = torch.randn(2, 3, 64, 64)
    assert model(x).shape == (2, 10)
    features = model.forward_features(x)
    assert features.shape == (2, 2, 2, 128)
    assert model.forward_head(features, pre_logits=True).shape == (2, 128)
    assert model(torch.randn(1, 3, 50, 70)).shape == (1, 10)
    assert model.num_features == 128 and model.get_classifier().out_features == 10
    assert [i["reduction"] for i in model.feature_info] == [4, 8, 16, 32]
    assert model.pretrained_cfg["input_size"] == (3, 224, 224)
    model.reset_classifier(0)
    assert model(x).shape == (2, 128)


def test_window_clamped_and_unshifted_when_not_larger_than_resolution() -> None:
    model = SwinTransformer(img_size=224, **TINY)
    last = model.layers[3].blocks
    assert [b.window_size for b in last] == [7, 7] and [b.shift_size for b in last] == [0, 0]
    assert [b.shift_size for b in model.layers[2].blocks] == [0, 3]
    small = SwinTransformer(img_size=96, **TINY)
    assert [b.window_size for b in small.layers[2].blocks] == [6, 6]
    assert small.layers[2].blocks[1].attn.relative_position_bias_table.shape == (121, 2)
    features = SwinFeatures(**TINY)
    assert [b.shift_size for b in features.layers[3].blocks] == [0, 3]


@pytest.mark.parametrize("features_only", [False, True])
def test_every_parameter_gets_a_gradient(features_only: bool) -> None:
    model = create_model(NAME, num_classes=5, features_only=features_only, **TINY).train()
    out = model(torch.randn(2, 3, 45, 61))
    loss = sum(o.square().mean() for o in out) if features_only else out.square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


@pytest.mark.parametrize(("h", "w"), [(224, 224), (250, 333), (512, 768), (31, 17)])
def test_features_any_size(h: int, w: int) -> None:
    model = create_model(NAME, features_only=True, **TINY).eval()
    with torch.no_grad():
        levels = model(torch.randn(1, 3, h, w))
    assert model.out_channels == [16, 32, 64, 128] and model.strides == [4, 8, 16, 32]
    for level, c, s in zip(levels, model.out_channels, model.strides, strict=True):
        assert level.shape == (1, c, math.ceil(h / s), math.ceil(w / s))
        assert level.is_contiguous() and torch.isfinite(level).all()


def test_features_out_indices_builds_only_needed_stages() -> None:
    model = create_model(NAME, features_only=True, out_indices=(1, 2), **TINY)
    assert len(model.layers) == 3 and model.out_channels == [32, 64] and model.strides == [8, 16]
    assert not hasattr(model, "norm0") and hasattr(model, "norm2")
    assert [t.shape[1] for t in model(torch.randn(1, 3, 40, 40))] == [32, 64]


def to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm layout -> official layout: downsample back to the end of the previous stage, ``head.fc.`` -> ``head.``,
    plus the buffers the official checkpoints carry."""
    out = {}
    for k, v in state.items():
        k = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m[1]) - 1}.downsample.", k)
        out[k.replace("head.fc.", "head.")] = v
    out["layers.0.blocks.0.attn.relative_position_index"] = relative_position_index(7)
    out["layers.0.blocks.1.attn_mask"] = torch.zeros(64, 49, 49)
    return out


@pytest.fixture(scope="module")
def timm_swin_tiny() -> torch.nn.Module:
    torch.manual_seed(1)
    return randomize_(timm.create_model(NAME, pretrained=False)).eval()


def test_logits_equal_timm_and_official_checkpoint(timm_swin_tiny, tmp_path) -> None:
    timm_path, official_path = tmp_path / "timm.pth", tmp_path / "official.pth"
    torch.save(timm_swin_tiny.state_dict(), timm_path)
    torch.save({"model": to_official(timm_swin_tiny.state_dict())}, official_path)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = timm_swin_tiny(x)
        for path in (timm_path, official_path):
            model = create_model(NAME, pretrained=path).eval()
            assert (model(x) - expected).abs().max() <= 1e-4
    assert sum(p.numel() for p in model.parameters()) == 28_288_354


def test_classification_checkpoint_into_features(timm_swin_tiny, tmp_path) -> None:
    path = tmp_path / "official.pth"
    torch.save({"model": to_official(timm_swin_tiny.state_dict())}, path)
    model = create_model(NAME, features_only=True, pretrained=path).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        levels = model(x)
        stages = timm_swin_tiny.forward_intermediates(x, intermediates_only=True)
    for i in range(3):
        norm = getattr(model, f"norm{i}")
        expected = norm(stages[i].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        assert (levels[i] - expected).abs().max() <= 1e-4


def test_dense_checkpoint_formats_roundtrip(tmp_path) -> None:
    source = randomize_(create_model(NAME, features_only=True, **TINY)).eval()
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        expected = source(x)
    own, mmdet = tmp_path / "own.pth", tmp_path / "mmdet.pth"
    torch.save(source.state_dict(), own)
    official = {f"backbone.{k}": v for k, v in to_official(source.state_dict()).items()}
    official["neck.lateral_convs.0.conv.weight"] = torch.zeros(4, 16, 1, 1)
    torch.save({"state_dict": official, "meta": {"epoch": 12}}, mmdet)
    for path in (own, mmdet):
        model = create_model(NAME, features_only=True, pretrained=path, **TINY).eval()
        with torch.no_grad():
            for a, b in zip(model(x), expected, strict=True):
                torch.testing.assert_close(a, b)


def test_bias_tables_of_another_window_are_resized(tmp_path) -> None:
    path = tmp_path / "w7.pth"
    torch.save(create_model(NAME, **TINY).state_dict(), path)
    model = create_model(NAME, pretrained=path, window_size=12, img_size=384, **TINY)
    assert model.layers[0].blocks[0].attn.relative_position_bias_table.shape == (23 * 23, 1)


def test_unsafe_and_mismatched_checkpoints_are_refused(tmp_path) -> None:
    unsafe = tmp_path / "train.pth"
    torch.save({"model": create_model(NAME, **TINY).state_dict(), "args": argparse.Namespace(lr=0.1)}, unsafe)
    with pytest.raises(CheckpointError, match="trust_checkpoint"):
        create_model(NAME, pretrained=unsafe, **TINY)
    assert create_model(NAME, pretrained=unsafe, trust_checkpoint=True, **TINY) is not None
    other = tmp_path / "other.pth"
    state = create_model(NAME, **TINY).state_dict()
    state["extra.weight"] = state.pop("norm.weight")
    torch.save(state, other)
    with pytest.raises(CheckpointError, match=r"missing keys: norm\.weight; unexpected keys: extra\.weight"):
        create_model(NAME, pretrained=other, **TINY)


@pytest.mark.slow
def test_swin_base_384_logits_equal_timm(tmp_path) -> None:
    name = "swin_base_patch4_window12_384"
    reference = randomize_(timm.create_model(name, pretrained=False)).eval()
    path = tmp_path / "timm.pth"
    torch.save({"model": to_official(reference.state_dict())}, path)
    model = create_model(name, pretrained=path).eval()
    x = torch.randn(1, 3, 384, 384)
    with torch.no_grad():
        assert (model(x) - reference(x)).abs().max() <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize(("h", "w"), [(224, 224), (250, 333), (512, 768)])
def test_swin_tiny_features_real_sizes(h: int, w: int) -> None:
    model = create_model(NAME, features_only=True).eval()
    with torch.no_grad():
        levels = model(torch.randn(1, 3, h, w))
    assert [tuple(t.shape[1:]) for t in levels] == [
        (c, math.ceil(h / s), math.ceil(w / s)) for c, s in zip((96, 192, 384, 768), (4, 8, 16, 32), strict=True)
    ]


def test_autocast_bfloat16() -> None:
    model = create_model(NAME, features_only=True, **TINY).eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        levels = model(torch.randn(1, 3, 60, 44))
    assert all(torch.isfinite(t).all() for t in levels)
