"""ViT: tiny-config shapes and gradients, the class-token-only last block, position-embedding resampling
against timm's dynamic-size ViT, features at odd sizes, checkpoints, logits equal to timm's, and the ONNX-export
form (resampling as weight matrices) against ONNX Runtime at sizes other than the traced one."""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer as TimmViT

from densevision import create_model
from densevision.export import check_with_onnxruntime, export_model_bytes
from densevision.models.vit import VisionTransformer, ViTFeatures, bicubic_aa_weights, resample_pos_embed

TINY = dict(embed_dim=32, depth=2, num_heads=2, img_size=64)
NAME = "vit_small_patch16_224"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def randomize_(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.normal_(1.0 if "norm" in name and name.endswith("weight") else 0.0, 0.1)
            elif name in ("cls_token", "pos_embed"):
                p.normal_(0, 0.5)
            else:
                p.normal_(0, 1.0 / math.sqrt(p[0].numel()))
    return model


def test_classifier_shapes_and_interface() -> None:
    model = create_model(NAME, num_classes=7, **TINY).eval()
    x = torch.randn(2, 3, 64, 64)
    tokens = model.forward_features(x)
    assert tokens.shape == (2, 17, 32)
    assert model.forward_head(tokens, pre_logits=True).shape == (2, 32)
    assert model(x).shape == (2, 7)
    assert model(torch.randn(1, 3, 50, 90)).shape == (1, 7)
    assert len(model.feature_info) == 2 and model.feature_info[-1]["reduction"] == 16
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5) and model.num_features == 32
    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3


def test_forward_equals_full_token_path() -> None:
    """``forward`` computes only the class token in the last block; the logits must not change."""
    model = randomize_(create_model(NAME, num_classes=7, **TINY)).eval()
    x = torch.randn(3, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("features_only", [False, True])
def test_every_parameter_gets_a_gradient(features_only: bool) -> None:
    model = create_model(NAME, num_classes=5, features_only=features_only, drop_path_rate=0.1, **TINY).train()
    out = model(torch.randn(2, 3, 40, 72))
    loss = sum(o.square().mean() for o in out) if features_only else out.square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_other_input_sizes_match_timm_dynamic_size() -> None:
    """Position-embedding resampling (bicubic, antialiased) as timm's ``dynamic_img_size`` ViT does it."""
    reference = TimmViT(img_size=64, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_classes=5,
                        dynamic_img_size=True)
    randomize_(reference).eval()
    model = VisionTransformer(num_classes=5, **TINY).eval()
    model.load_state_dict(reference.state_dict())
    for h, w in ((96, 128), (32, 48), (64, 64)):
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)


def test_resample_pos_embed_keeps_class_token() -> None:
    pos = torch.randn(1, 1 + 16, 8)
    out = resample_pos_embed(pos, (6, 3))
    assert out.shape == (1, 1 + 18, 8)
    torch.testing.assert_close(out[:, :1], pos[:, :1])
    assert resample_pos_embed(pos, (4, 4)) is pos


@pytest.mark.parametrize(("old", "new"), [(4, (4, 4)), (4, (7, 6)), (14, (9, 3)), (14, (40, 2)), (14, (1, 1))])
def test_bicubic_aa_weights_equal_antialiased_interpolate(old: int, new: tuple[int, int]) -> None:
    grid = torch.randn(1, 8, old, old)
    want = F.interpolate(grid, size=new, mode="bicubic", antialias=True, align_corners=False)
    got = bicubic_aa_weights(old, new[0]) @ grid @ bicubic_aa_weights(old, new[1]).t()
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


def test_features_onnx_graph_holds_at_untraced_sizes() -> None:
    """Traced at 64×96 (position grid 4×6 from 4×4), run by ONNX Runtime at the pretraining grid, at a smaller
    one (the embedding downsampled) and at sizes that pad the patches and crop the pyramid levels."""
    model = randomize_(create_model(NAME, features_only=True, **TINY)).eval()
    onnx_bytes, _ = export_model_bytes(model, features=True, size=(64, 96))
    sizes = [(64, 96), (64, 64), (40, 50), (100, 70)]
    inputs = [torch.randn(2 if i == 0 else 1, 3, h, w) for i, (h, w) in enumerate(sizes)]
    checks = check_with_onnxruntime(onnx_bytes, model, inputs, atol=1e-4, label=NAME)
    assert [c["input_shape"][2:] for c in checks] == [list(s) for s in sizes]


@pytest.mark.parametrize(("h", "w"), [(224, 224), (250, 333), (512, 768), (20, 35)])
@pytest.mark.parametrize(("patch", "channels"), [(16, [8, 16, 32, 32]), (32, [4, 8, 16, 32])])
def test_features_any_size(h: int, w: int, patch: int, channels: list[int]) -> None:
    model = create_model(NAME, features_only=True, patch_size=patch, **TINY).eval()
    with torch.no_grad():
        levels = model(torch.randn(1, 3, h, w))
    assert model.out_channels == channels and model.strides == [4, 8, 16, 32]
    for level, c, s in zip(levels, channels, model.strides, strict=True):
        assert level.shape == (1, c, math.ceil(h / s), math.ceil(w / s))
        assert torch.isfinite(level).all()


def test_classification_checkpoint_into_features(tmp_path) -> None:
    classifier = randomize_(create_model(NAME, **TINY)).eval()
    path = tmp_path / "cls.pth"
    torch.save(classifier.state_dict(), path)
    model = create_model(NAME, features_only=True, out_indices=(2,), pretrained=path, **TINY).eval()
    assert isinstance(model, ViTFeatures) and list(model.pyramid) == ["2"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        (level,) = model(x)
        tokens = classifier.blocks(classifier.embed(x)[0])
    grid = tokens[:, 1:].transpose(1, 2).reshape(1, 32, 4, 4)
    torch.testing.assert_close(level, model.pyramid["2"].norm(grid))


def test_position_embedding_of_another_grid_is_resampled(tmp_path) -> None:
    source = randomize_(create_model(NAME, **TINY))
    path = tmp_path / "g4.pth"
    torch.save(source.state_dict(), path)
    model = create_model(NAME, pretrained=path, **{**TINY, "img_size": 96})
    assert model.pos_embed.shape == (1, 37, 32)
    torch.testing.assert_close(model.pos_embed.data, resample_pos_embed(source.pos_embed.data, (6, 6)))


@pytest.fixture(scope="module")
def timm_vit_small() -> torch.nn.Module:
    torch.manual_seed(1)
    return randomize_(timm.create_model(NAME, pretrained=False)).eval()


def test_logits_equal_timm(timm_vit_small, tmp_path) -> None:
    path = tmp_path / "timm.pth"
    torch.save(timm_vit_small.state_dict(), path)
    model = create_model(NAME, pretrained=path).eval()
    assert sum(p.numel() for p in model.parameters()) == 22_050_664
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (model(x) - timm_vit_small(x)).abs().max() <= 1e-4


@pytest.mark.slow
def test_vit_base_logits_equal_timm(tmp_path) -> None:
    name = "vit_base_patch16_224"
    reference = randomize_(timm.create_model(name, pretrained=False)).eval()
    path = tmp_path / "timm.pth"
    torch.save(reference.state_dict(), path)
    model = create_model(name, pretrained=path).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (model(x) - reference(x)).abs().max() <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize(("h", "w"), [(224, 224), (250, 333), (512, 768)])
def test_vit_small_features_real_sizes(h: int, w: int) -> None:
    model = create_model(NAME, features_only=True).eval()
    with torch.no_grad():
        levels = model(torch.randn(1, 3, h, w))
    assert [tuple(t.shape[1:]) for t in levels] == [
        (c, math.ceil(h / s), math.ceil(w / s)) for c, s in zip((96, 192, 384, 384), (4, 8, 16, 32), strict=True)
    ]


def test_autocast_bfloat16() -> None:
    model = create_model(NAME, num_classes=3, **TINY).eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 64, 48))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
