"""Every registered model: exact parameter counts (reference sheet and timm), timm's classifier interface, and
features at odd sizes. Shapes are checked on the ``meta`` device (no arithmetic), so even the largest
variants cost well under a second; big variants' shape checks are marked slow."""

from __future__ import annotations

import math

import pytest
import timm
import torch

from densevision import create_model, list_models
from densevision.models.features import FeatureExtractor

# Upstream parameter counts at 1000 classes (REFERENCE.md). timm's default vit_large_patch32_224 has no head
# (305,510,400); with a 1000-class head it has 306,535,400.
EXPECTED_PARAMS = {
    "hrnet_w18_small": 13_187_464,
    "hrnet_w18_small_v2": 15_597_464,
    "hrnet_w18": 21_299_004,
    "hrnet_w30": 37_712_220,
    "hrnet_w32": 41_232_680,
    "hrnet_w40": 57_557_160,
    "hrnet_w44": 67_064_984,
    "hrnet_w48": 77_469_864,
    "hrnet_w64": 128_059_944,
    "swin_tiny_patch4_window7_224": 28_288_354,
    "swin_small_patch4_window7_224": 49_606_258,
    "swin_base_patch4_window7_224": 87_768_224,
    "swin_large_patch4_window7_224": 196_532_476,
    "swin_base_patch4_window12_384": 87_903_584,
    "swin_large_patch4_window12_384": 196_735_516,
    "vit_tiny_patch16_224": 5_717_416,
    "vit_small_patch16_224": 22_050_664,
    "vit_small_patch32_224": 22_878_952,
    "vit_base_patch16_224": 86_567_656,
    "vit_base_patch32_224": 88_224_232,
    "vit_large_patch16_224": 304_326_632,
    "vit_large_patch32_224": 306_535_400,
    "cyclemlp_b1": 15_155_400,
    "cyclemlp_b2": 26_802_504,
    "cyclemlp_b3": 38_385_720,
    "cyclemlp_b4": 51_796_552,
    "cyclemlp_b5": 75_747_280,
    "asmlp_tiny": 28_282_696,
    "asmlp_small": 49_594_696,
    "asmlp_base": 87_752_808,
}
SMALL = 30_000_000
NAMES = list_models()


def has_timm_twin(name: str) -> bool:
    return timm.models.is_model(name) and not timm.models.model_entrypoint(name).__module__.startswith("densevision")


def meta_model(name: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs).eval()


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def by_size(names: list[str]) -> list:
    """Small variants in the fast suite, big ones marked slow."""
    return [n if EXPECTED_PARAMS.get(n, 0) <= SMALL else pytest.param(n, marks=pytest.mark.slow) for n in names]


@pytest.mark.parametrize("name", NAMES)
def test_param_count(name: str) -> None:
    assert name in EXPECTED_PARAMS, f"{name}: add its upstream parameter count to EXPECTED_PARAMS"
    assert count(meta_model(name)) == EXPECTED_PARAMS[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if has_timm_twin(n)])
def test_param_count_equals_timm(name: str) -> None:
    with torch.device("meta"):
        reference = timm.create_model(name, pretrained=False, num_classes=1000)
    assert count(meta_model(name)) == count(reference)


def test_headless_param_count_matches_reference_sheet() -> None:
    assert count(meta_model("vit_large_patch32_224", num_classes=0)) == 305_510_400


@pytest.mark.parametrize("name", by_size(NAMES))
def test_classifier_interface(name: str) -> None:
    model = meta_model(name, num_classes=11)
    cfg = model.pretrained_cfg
    assert {"input_size", "mean", "std", "interpolation", "crop_pct", "num_classes"} <= set(cfg)
    x = torch.zeros(2, *cfg["input_size"], device="meta")
    assert model(x).shape == (2, 11)
    pooled = model.forward_head(model.forward_features(x), pre_logits=True)
    assert pooled.shape == (2, model.num_features)
    assert model.get_classifier().out_features == 11
    assert all({"num_chs", "reduction", "module"} <= set(info) for info in model.feature_info)
    model.reset_classifier(3)
    assert model.to("meta")(x).shape == (2, 3)


@pytest.mark.parametrize("name", by_size(NAMES))
def test_features_at_odd_size(name: str) -> None:
    model = meta_model(name, features_only=True)
    assert isinstance(model, FeatureExtractor)
    assert model.strides == [4, 8, 16, 32]
    h, w = 250, 333
    levels = model(torch.zeros(1, 3, h, w, device="meta"))
    assert [t.shape[1] for t in levels] == model.out_channels
    for t, s in zip(levels, model.strides, strict=True):
        assert h // s <= t.shape[2] <= math.ceil(h / s) and w // s <= t.shape[3] <= math.ceil(w / s)
    last = meta_model(name, features_only=True, out_indices=(-1,))
    assert last.strides == [32] and len(last(torch.zeros(1, 3, 96, 64, device="meta"))) == 1


@pytest.mark.parametrize("name", NAMES)
def test_features_declare_the_classifiers_preprocessing(name: str) -> None:
    """Heads built on a feature extractor normalise inputs as its weights expect (e.g. ViT's 0.5 mean/std)."""
    features, classifier = meta_model(name, features_only=True), meta_model(name)
    for key in ("input_size", "mean", "std", "interpolation"):
        assert features.pretrained_cfg[key] == classifier.pretrained_cfg[key]


@pytest.mark.parametrize("name", [n for n in NAMES if EXPECTED_PARAMS.get(n, 0) <= SMALL])
def test_small_variants_run_for_real(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=4).eval()
    with torch.no_grad():
        out = model(torch.randn(1, *model.pretrained_cfg["input_size"]))
    assert out.shape == (1, 4) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "name", ["hrnet_w18_small", "swin_tiny_patch4_window7_224", "vit_tiny_patch16_224", "cyclemlp_b1", "asmlp_tiny"]
)
def test_autocast_bfloat16_follows_float32(name: str) -> None:
    """Mixed precision (``bench --amp``, training with ``--amp``) runs every family's classifier and features
    and stays within bfloat16 rounding of the fp32 outputs (CycleMLP: both the folded per-sample products of
    large maps and the mixed branches of small ones)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    for features_only in (False, True):
        model = create_model(name, features_only=features_only).eval()
        with torch.inference_mode():
            expected = model(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                got = model(x)
        expected, got = (t if isinstance(t, list | tuple) else [t] for t in (expected, got))
        for e, g in zip(expected, got, strict=True):
            assert g.shape == e.shape
            assert (g.float() - e).abs().max() <= 0.05 * e.abs().max()
