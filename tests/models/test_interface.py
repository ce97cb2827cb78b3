"""timm's model interface, classifier and ``features_only``: configuration aliases, heads and pooling, timm's
common ``create_model`` arguments, ``forward_intermediates`` and pruning, gradient checkpointing, parameter
groups, no-weight-decay names, ``FeatureInfo``, torch.fx tracing (and TorchScript of the traced graph) and
torch.compile. Each variant is built with tiny widths and depths of its family (its patch, window and image size
kept). The checks without a forward pass run on every registered model; those that run the model, on one
variant per family (the variants of a family share its code and differ only in sizes).
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from timm.layers import create_feature_extractor, get_graph_node_names
from timm.models import FeatureInfo, group_parameters
from torch import nn

from densevision.models import create_model, list_models, model_family

TINY = {
    "hrnet": {"width": 4, "stage1_blocks": 1, "stage1_planes": 8, "num_modules": (1, 1, 1), "num_blocks": (1, 1, 1)},
    "swin": {"embed_dim": 8, "depths": (2, 1, 2, 1), "num_heads": (1, 1, 2, 2)},
    "vit": {"embed_dim": 16, "depth": 3, "num_heads": 2},
    "cyclemlp": {"layers": (1, 1, 2, 1), "embed_dims": (8, 16, 24, 32), "mlp_ratios": (2, 2, 2, 2)},
    "asmlp": {"embed_dim": 8, "depths": (1, 1, 2, 1)},
}
# Families whose feature extractor is the classifier's trunk plus optional per-level norms (``norm{k}``), so its
# outputs equal the classifier's intermediates once those norms are identities.
SAME_TRUNK = ("hrnet", "cyclemlp", "asmlp")
NAMES = list_models()
FAMILIES = {
    "hrnet": "hrnet_w18_small",
    "swin": "swin_tiny_patch4_window7_224",
    "vit": "vit_small_patch16_224",
    "cyclemlp": "cyclemlp_b1",
    "asmlp": "asmlp_tiny",
}
ONE_PER_FAMILY = list(FAMILIES.values())
# Families whose FX-traced graph TorchScript compiles (timm's test_model_forward_fx_torchscript).
SCRIPTABLE = ("cyclemlp", "asmlp")
SIZE = (2, 3, 64, 96)


def tiny(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, **TINY[model_family(name)], **kwargs)


def classifier_names(model: nn.Module) -> tuple[str, ...]:
    return (model.pretrained_cfg["classifier"],)


def test_families_cover_the_zoo() -> None:
    assert {model_family(n) for n in NAMES} == set(FAMILIES)
    assert all(model_family(n) == family for family, n in FAMILIES.items())


@pytest.mark.parametrize("name", NAMES)
def test_classifier_attributes(name: str) -> None:
    model = tiny(name, num_classes=7)
    assert model.default_cfg is model.pretrained_cfg
    assert model.num_classes == 7 and model.head_hidden_size == model.num_features
    assert model.get_classifier().out_features == 7
    model.reset_classifier(3)
    assert model.num_classes == 3 and model.get_classifier().out_features == 3


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_heads_and_pooling(name: str) -> None:
    model = tiny(name, num_classes=7).eval()
    x = torch.randn(*SIZE)
    with torch.no_grad():
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
        assert pooled.shape == (2, model.head_hidden_size)
        assert model(x).shape == (2, 7)
        model.reset_classifier(0)
        assert model.num_classes == 0
        torch.testing.assert_close(model(x), pooled)
        model.reset_classifier(0, "")
        torch.testing.assert_close(model(x), features)
        unpooled = tiny(name, num_classes=0, global_pool="").eval()
        assert unpooled(x).shape == features.shape


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_create_model_takes_timms_common_arguments(name: str) -> None:
    kwargs = {"in_chans": 1, "drop_rate": 0.1, "global_pool": "avg"}
    if model_family(name) != "hrnet":  # HRNet has no stochastic depth
        kwargs["drop_path_rate"] = 0.1
    model = tiny(name, num_classes=5, **kwargs).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert model(x).shape == (1, 5)
    features = tiny(name, features_only=True, out_indices=(1, 3), **kwargs).eval()
    with torch.no_grad():
        levels = features(x)
    assert [t.shape[1] for t in levels] == features.feature_info.channels()


@pytest.mark.parametrize("name", NAMES)
def test_feature_info_names_modules(name: str) -> None:
    model = tiny(name, features_only=True)
    info = model.feature_info
    assert isinstance(info, FeatureInfo)
    modules = dict(model.named_modules())
    assert all(m in modules for m in info.module_name())
    assert len(info.channels()) == len(info.reduction()) == len(model.out_indices)
    classifier = tiny(name)
    assert FeatureInfo(classifier.feature_info, len(classifier.feature_info)).channels()


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_feature_info_describes_the_outputs(name: str) -> None:
    model = tiny(name, features_only=True).eval()
    info = model.feature_info
    h, w = SIZE[2] + 3, SIZE[3] + 5
    with torch.no_grad():
        levels = model(torch.randn(1, 3, h, w))
    assert [t.shape[1] for t in levels] == info.channels()
    for t, s in zip(levels, info.reduction(), strict=True):
        assert h // s <= t.shape[2] <= math.ceil(h / s) and w // s <= t.shape[3] <= math.ceil(w / s)


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_forward_intermediates(name: str) -> None:
    model = tiny(name).eval()
    info = FeatureInfo(model.feature_info, len(model.feature_info))
    x = torch.randn(*SIZE)
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x), rtol=0, atol=0)
        assert [t.shape[1] for t in intermediates] == info.channels()
        for t, s in zip(intermediates, info.reduction(), strict=True):
            assert t.shape[0] == 2 and t.shape[2:] == (math.ceil(SIZE[2] / s), math.ceil(SIZE[3] / s))
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        assert len(last_two) == 2
        for got, expected in zip(last_two, intermediates[-2:], strict=True):
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
        if getattr(model, "output_fmt", "NCHW") == "NHWC":
            nhwc = model.forward_intermediates(x, indices=[0], output_fmt="NHWC", intermediates_only=True)
            torch.testing.assert_close(nhwc[0].permute(0, 3, 1, 2), intermediates[0], rtol=0, atol=0)


@pytest.mark.parametrize("name", [FAMILIES[f] for f in SAME_TRUNK])
def test_forward_intermediates_equal_features_only(name: str) -> None:
    """With the classifier's weights and the per-level norms as identities, the feature extractor's outputs are
    the classifier's intermediates."""
    model = tiny(name).eval()
    features = tiny(name, features_only=True).eval()
    state = features.convert_state_dict(model.state_dict())
    features.load_state_dict(state)
    for key in [k for k in dict(features.named_children()) if re.fullmatch(r"norm\d+", k)]:
        setattr(features, key, nn.Identity())
    x = torch.randn(*SIZE)
    with torch.no_grad():
        expected = model.forward_intermediates(x, intermediates_only=True)
        got = features(x)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("name", [n for n in ONE_PER_FAMILY if model_family(n) != "hrnet"])
def test_prune_intermediate_layers_keeps_the_kept_levels(name: str) -> None:
    model = tiny(name).eval()
    x = torch.randn(*SIZE)
    with torch.no_grad():
        expected = model.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
        assert model.prune_intermediate_layers([0, 1]) == [0, 1]
        got = model.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
    assert model.num_classes == 0
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=0)


def _gradients(model: nn.Module, x: torch.Tensor, checkpointing: bool) -> dict[str, torch.Tensor]:
    model.set_grad_checkpointing(checkpointing)
    model.zero_grad()
    torch.manual_seed(1)  # the same stochastic-depth draws in both passes
    out = model(x)
    loss = sum((t.float() ** 2).mean() for t in out) if isinstance(out, list) else (out**2).mean()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("features_only", [False, True], ids=["classifier", "features"])
@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_grad_checkpointing_gives_the_same_gradients(name: str, features_only: bool) -> None:
    kwargs = {"features_only": True} if features_only else {"num_classes": 3}
    model = tiny(name, **kwargs).train()
    x = torch.randn(*SIZE)
    plain = _gradients(model, x, checkpointing=False)
    checkpointed = _gradients(model, x, checkpointing=True)
    assert plain.keys() == checkpointed.keys() and len(plain) == len(list(model.parameters()))
    for key, grad in plain.items():
        torch.testing.assert_close(checkpointed[key], grad, rtol=1e-5, atol=1e-5, msg=key)


def test_inference_ignores_grad_checkpointing() -> None:
    """Without autograd the blocks run as they are (the CPU fast paths stay in use)."""
    model = tiny("cyclemlp_b1").eval()
    model.set_grad_checkpointing()
    assert model.grad_checkpointing and not torch.no_grad()(model.checkpointing)()


@pytest.mark.parametrize("features_only", [False, True], ids=["classifier", "features"])
@pytest.mark.parametrize("name", NAMES)
def test_group_matcher_covers_every_parameter(name: str, features_only: bool) -> None:
    model = tiny(name, features_only=features_only)
    head = () if features_only else classifier_names(model)
    names = [n for n, _ in model.named_parameters() if not n.startswith(head)]
    for coarse in (True, False):
        matcher = model.group_matcher(coarse=coarse)
        patterns = [matcher["stem"]] + [p for p, _ in matcher["blocks"]]
        unmatched = [n for n in names if not any(re.match(p, n) for p in patterns)]
        assert not unmatched, unmatched
        groups = group_parameters(model, matcher)
        assert sum(len(g) for g in groups.values()) == len(list(model.parameters()))
        assert len(groups) >= 3


@pytest.mark.parametrize("name", NAMES)
def test_no_weight_decay_names_are_parameters(name: str) -> None:
    for features_only in (False, True):
        model = tiny(name, features_only=features_only)
        names = model.no_weight_decay()
        assert names <= set(dict(model.named_parameters()))
        if model_family(name) in ("vit", "swin"):
            assert names  # position embedding / bias tables


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")  # timm's test scripts it too
@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_fx_feature_extraction_traces_the_classifier(name: str) -> None:
    """timm's FX feature extraction (its leaf modules and functions) traces the model; same outputs. Where the
    family is scriptable, TorchScript compiles the traced graph (the leaves' scripted paths) to the same
    outputs, in eval and in training mode."""
    model = tiny(name, num_classes=4).eval()
    x = torch.randn(*SIZE)
    _, eval_nodes = get_graph_node_names(model)
    traced = create_feature_extractor(model, [eval_nodes[-1]])
    with torch.no_grad():
        expected = model(x)
        got = next(iter(traced(x).values()))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    if model_family(name) not in SCRIPTABLE:
        return
    scripted = torch.jit.script(traced)
    with torch.inference_mode():
        torch.testing.assert_close(next(iter(scripted(x).values())), expected, rtol=1e-5, atol=1e-5)
    model = tiny(name, num_classes=4, drop_rate=0.1, drop_path_rate=0.1).train()
    scripted = torch.jit.script(create_feature_extractor(model, [get_graph_node_names(model)[0][-1]]))
    torch.manual_seed(2)
    expected = model(x)
    torch.manual_seed(2)
    got = next(iter(scripted(x).values()))
    assert got.requires_grad
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_torch_compile_matches_eager(name: str) -> None:
    """torch.compile (``aot_eager``: dynamo's graph capture and AOT autograd, no code generation) gives the eager
    outputs, at inference and for the gradients of a training step."""
    torch._dynamo.reset()
    model = tiny(name, num_classes=4, drop_path_rate=0.0).eval()  # no random draws in the training step
    compiled = torch.compile(model, backend="aot_eager")
    x = torch.randn(*SIZE)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)
    model.train()
    compiled(x).square().mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model(x).square().mean().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-5, msg=n)
