"""HRNet: timm parity (parameter counts, state-dict keys, logits, branch outputs, training-mode outputs),
checkpoint formats, dense outputs at odd sizes, the stem residual, and gradients through every parameter."""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from densevision import create_model
from densevision.errors import CheckpointError
from densevision.models.hrnet import HRNetFeatures, add_resized, conv_bn, hrnet_v2_concat

NAMES = ["hrnet_w18_small", "hrnet_w18_small_v2", "hrnet_w18", "hrnet_w30", "hrnet_w32", "hrnet_w40",
         "hrnet_w44", "hrnet_w48", "hrnet_w64"]
TINY = {"width": 4, "stage1_blocks": 1, "stage1_planes": 8, "num_modules": (1, 2, 1), "num_blocks": (1, 1, 1)}


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN affine parameters and BN statistics measured on noise, so that activations keep a sane scale
    and folding BN into the convolutions is not a no-op."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=gen) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=gen) * 0.1
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 3, 64, 64, generator=gen))
    return model.eval()


def timm_checkpoint(name: str, tmp_path) -> tuple[nn.Module, str]:
    """A timm model with ``trained_like`` weights, the classifier scaled so that logits reach about ±10 as a
    trained ImageNet model's do (the comparison is absolute), and the path of its saved state dict."""
    torch.manual_seed(0)
    reference = trained_like(timm.create_model(name, pretrained=False))
    with torch.no_grad():
        scale = 10 / reference(torch.randn(2, 3, 224, 224)).abs().max()
        reference.classifier.weight.mul_(scale)
        reference.classifier.bias.mul_(scale)
    path = str(tmp_path / f"{name}.pth")
    torch.save(reference.state_dict(), path)
    return reference, path


@pytest.mark.parametrize("name", [n if n.startswith("hrnet_w18") else pytest.param(n, marks=pytest.mark.slow)
                                  for n in NAMES])
def test_param_count_and_keys_equal_timm(name: str) -> None:
    with torch.device("meta"):
        ours = create_model(name)
        reference = timm.create_model(name, pretrained=False)
    assert count(ours) == count(reference)
    ours_sd, ref_sd = ours.state_dict(), reference.state_dict()
    assert list(ours_sd) == list(ref_sd)
    assert all(ours_sd[k].shape == ref_sd[k].shape for k in ref_sd)


@pytest.mark.parametrize("name", ["hrnet_w18_small", "hrnet_w18_small_v2"])
def test_logits_equal_timm(name: str, tmp_path) -> None:
    reference, path = timm_checkpoint(name, tmp_path)
    model = create_model(name, pretrained=path).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert 3 < expected.abs().max() < 30
    assert (got - expected).abs().max() <= 1e-4


@pytest.mark.slow
def test_logits_equal_timm_w32(tmp_path) -> None:
    reference, path = timm_checkpoint("hrnet_w32", tmp_path)
    model = create_model("hrnet_w32", pretrained=path).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert 3 < expected.abs().max() < 30
    assert (got - expected).abs().max() <= 1e-4


def test_features_only_loads_classification_checkpoint_and_equals_timm_branches(tmp_path) -> None:
    reference, path = timm_checkpoint("hrnet_w18_small_v2", tmp_path)
    model = create_model("hrnet_w18_small_v2", features_only=True, pretrained=path).eval()
    assert "classifier.weight" not in model.state_dict()
    x = torch.randn(1, 3, 160, 224)
    with torch.no_grad():
        stem = reference.act2(reference.bn2(reference.conv2(reference.act1(reference.bn1(reference.conv1(x))))))
        expected = reference.stages(stem)
        got = model(x)
    assert len(got) == 4
    for e, g in zip(expected, got, strict=True):
        assert e.shape == g.shape and (e - g).abs().max() <= 5e-5 * e.abs().max()


def test_training_mode_matches_timm() -> None:
    """Batch statistics (no folding) in the forward and the same running-statistics update."""
    torch.manual_seed(0)
    reference = timm.create_model("hrnet_w18_small", pretrained=False).train()
    model = create_model("hrnet_w18_small").train()
    model.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 64, 96)
    expected, got = reference(x), model(x)
    assert (got - expected).abs().max() <= 1e-4 * max(1.0, expected.abs().max().item())
    stats = [m.stage4[0].fuse_layers[0][1][1].running_mean for m in (reference, model)]
    assert torch.allclose(stats[0], stats[1], atol=1e-5)


def test_checkpoint_prefixes_and_old_buffers(tmp_path) -> None:
    """mmdet/mmseg ``backbone.`` and segmentation-code ``model.`` prefixes; heads dropped; checkpoints without
    ``num_batches_tracked`` (older PyTorch) still load."""
    source = create_model("hrnet_w18_small", features_only=True, **TINY)
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    for prefix, extra in (("backbone.", "neck.reduction_conv.conv.weight"), ("model.", "last_layer.0.weight")):
        path = tmp_path / f"{prefix}pth"
        torch.save({"state_dict": {**{prefix + k: v for k, v in state.items()}, extra: torch.zeros(1)}}, path)
        model = create_model("hrnet_w18_small", features_only=True, pretrained=path, **TINY)
        assert torch.equal(model.stage4[0].branches[3][0].conv2.weight, source.stage4[0].branches[3][0].conv2.weight)


def test_mismatched_checkpoint_names_the_keys(tmp_path) -> None:
    path = tmp_path / "w18.pth"
    with torch.device("meta"):
        state = create_model("hrnet_w18_small", features_only=True).state_dict()
    torch.save({k: torch.zeros(v.shape) for k, v in state.items()}, path)
    with pytest.raises(CheckpointError, match=r"w18\.pth: .*missing keys: layer1\.1\..*shape mismatch: layer1\.0\."):
        create_model("hrnet_w18_small_v2", features_only=True, pretrained=path)
    with pytest.raises(CheckpointError, match="missing keys: classifier.bias"):
        create_model("hrnet_w18_small", pretrained=path)


@pytest.mark.parametrize("name", ["hrnet_w18_small", "hrnet_w18_small_v2"])
def test_dense_shapes(name: str) -> None:
    """Branches at strides 4–32 rounded up (odd sizes included), HRNetV2 = 15·C channels at stride 4."""
    with torch.device("meta"):
        model = create_model(name, features_only=True)
    c = model.out_channels[0]
    assert model.out_channels == [c, 2 * c, 4 * c, 8 * c] and model.strides == [4, 8, 16, 32]
    for h, w in [(224, 224), (250, 333), (512, 768)]:
        levels = model(torch.zeros(1, 3, h, w, device="meta"))
        side = (math.ceil(math.ceil(h / 2) / 2), math.ceil(math.ceil(w / 2) / 2))
        for i, level in enumerate(levels):
            assert level.shape == (1, c * 2**i, *side)
            side = (math.ceil(side[0] / 2), math.ceil(side[1] / 2))
        assert hrnet_v2_concat(levels).shape == (1, 15 * c, *levels[0].shape[-2:])


def test_hrnet_v2_channels_w18() -> None:
    with torch.device("meta"):
        model = create_model("hrnet_w18_small_v2", features_only=True)
        assert model.forward_v2(torch.zeros(1, 3, 128, 128)).shape == (1, 270, 32, 32)


@pytest.mark.parametrize("fuse_mode", ["nearest", "bilinear"])
def test_odd_sizes_run_for_real(fuse_mode: str) -> None:
    torch.manual_seed(0)
    model = trained_like(create_model("hrnet_w18_small", features_only=True, fuse_mode=fuse_mode, **TINY))
    with torch.no_grad():
        levels = model(torch.randn(1, 3, 250, 333))
    assert [tuple(t.shape[-2:]) for t in levels] == [(63, 84), (32, 42), (16, 21), (8, 11)]
    assert all(torch.isfinite(t).all() for t in levels)


def test_unknown_fuse_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="fuse_mode"):
        create_model("hrnet_w18_small", features_only=True, fuse_mode="area", **TINY)


@pytest.mark.parametrize("big,small", [((8, 12), (4, 6)), ((8, 12), (2, 3)), ((63, 84), (32, 42)), ((9, 9), (4, 4))])
@pytest.mark.parametrize("channels_last", [False, True])
def test_add_resized_equals_interpolate(big, small, channels_last: bool) -> None:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    y = torch.randn(2, 3, *big).contiguous(memory_format=fmt)
    z = torch.randn(2, 3, *small).contiguous(memory_format=fmt)
    expected = y + F.interpolate(z, size=big, mode="nearest")
    assert torch.equal(add_resized(y, z), expected)
    bilinear = y + F.interpolate(z, size=big, mode="bilinear", align_corners=False)
    assert torch.allclose(add_resized(y, z, mode="bilinear"), bilinear)


@pytest.mark.parametrize("norm", ["bn", "frozen"])
def test_folded_conv_bn_equals_conv_then_bn(norm: str) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, 2, 1, bias=True)
    bn = (nn.BatchNorm2d(6) if norm == "bn" else FrozenBatchNorm2d(6)).eval()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.running_mean.normal_()
    x = torch.randn(2, 4, 9, 7, requires_grad=True)
    expected = bn(conv(x))
    got = conv_bn(x, conv, bn)
    assert torch.allclose(got, expected, atol=1e-5)
    (gx_ref,) = torch.autograd.grad(expected.square().sum(), x)
    (gx,) = torch.autograd.grad(got.square().sum(), x)
    assert torch.allclose(gx, gx_ref, atol=1e-4)


def test_stem_residual_is_added_before_bn1() -> None:
    torch.manual_seed(0)
    model = trained_like(create_model("hrnet_w18_small", features_only=True, **TINY))
    x = torch.randn(1, 3, 33, 47)
    residual = torch.randn(1, 64, 17, 24)
    with torch.no_grad():
        stem = F.relu(model.bn2(model.conv2(F.relu(model.bn1(model.conv1(x) + residual)))))
        assert torch.allclose(model.forward_stem(x, stem_residual=residual), stem, atol=1e-5)
        assert torch.allclose(model.forward_stem(x, stem_residual=torch.zeros_like(residual)), model.forward_stem(x),
                              atol=1e-5)
        assert stem.shape == (1, 64, 9, 12)


@pytest.mark.parametrize("features_only", [False, True])
@pytest.mark.parametrize("train", [True, False])
def test_every_parameter_gets_a_gradient(features_only: bool, train: bool) -> None:
    torch.manual_seed(0)
    model = create_model("hrnet_w18_small", features_only=features_only, num_classes=5, **TINY)
    model.train(train)
    out = model(torch.randn(2, 3, 45, 61))
    loss = sum(o.square().mean() for o in out) if features_only else out.square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_classifier_interface_and_out_indices() -> None:
    model = create_model("hrnet_w18_small", num_classes=7, **TINY)
    assert model.pretrained_cfg["input_size"] == (3, 224, 224) and model.num_features == 2048
    assert [f["num_chs"] for f in model.feature_info] == [4, 8, 16, 32]
    model.reset_classifier(0)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 2048)
    features = create_model("hrnet_w18_small", features_only=True, out_indices=(1, -1), **TINY)
    assert isinstance(features, HRNetFeatures)
    assert features.out_channels == [8, 32] and features.strides == [8, 32]
    assert [tuple(t.shape[1:]) for t in features(torch.randn(1, 3, 64, 64))] == [(8, 8, 8), (32, 2, 2)]
    groups = features.stage_groups()
    assert len(groups) == 5 and sum(count(m) for g in groups for m in g) == count(features)


def test_onnx_export_takes_any_size(tmp_path) -> None:
    """Traced with dynamic height and width at 64×96 (whole-factor fuses) and checked by ONNX Runtime at 93×144,
    where the fuses need interpolation to uneven sizes."""
    from densevision.export import export_onnx

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pth"
    torch.save(trained_like(create_model("hrnet_w18_small", features_only=True, **TINY)).state_dict(), ckpt)
    report = export_onnx("hrnet_w18_small", tmp_path / "tiny.onnx", features=True, size=(64, 96), checkpoint=ckpt,
                         **TINY)
    assert [c["input_shape"] for c in report.checked] == [[2, 3, 64, 96], [1, 3, 93, 144]]
    assert report.max_abs_diff <= 1e-4
