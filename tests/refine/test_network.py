"""The refinement network: wiring of the mask input and the head, inputs, checkpoints (own, official BPR
names, ImageNet backbone weights)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from densevision.errors import CheckpointError, DenseVisionError
from densevision.models import create_model
from densevision.refine.network import RefineNet, build_refine_net, load_refine_net, refine_net_spec

TINY = {"width": 4, "stage1_blocks": 1, "stage1_planes": 8, "num_modules": (1, 1, 1), "num_blocks": (1, 1, 1),
        "stem_width": 8}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_refine_net(input_size=32, patch_size=16, **TINY).eval()


def _inputs(b: int = 2, p: int = 16):
    gen = torch.Generator().manual_seed(0)
    return torch.rand(b, 3, p, p, generator=gen), torch.rand(b, p, p, generator=gen) > 0.5


def test_default_network_is_hrnetv2_w18_small():
    model = build_refine_net()
    assert model.input_size == 128 and model.patch_size == 64
    assert tuple(model.conv_mask.weight.shape) == (64, 1, 3, 3) and model.conv_mask.bias is None
    assert tuple(model.head[0].weight.shape) == (270, 270, 1, 1)  # 18 + 36 + 72 + 144 channels
    assert tuple(model.head[3].weight.shape) == (2, 270, 1, 1)
    assert sum(p.numel() for p in model.parameters()) == 3_935_278
    logits = model.eval()(torch.rand(1, 3, 64, 64), torch.ones(1, 64, 64, dtype=torch.bool))
    assert logits.shape == (1, 2, 32, 32)  # stride 4 of the 128 input


def test_shapes_and_probabilities(tiny):
    image, mask = _inputs()
    assert tiny(image, mask).shape == (2, 2, 8, 8)
    assert tiny(image, mask, size=16).shape == (2, 2, 16, 16)
    prob = tiny.predict(image, mask)
    assert prob.shape == (2, 16, 16) and prob.dtype == torch.float32
    assert (prob >= 0).all() and (prob <= 1).all()


def test_inputs_are_resized_and_normalised(tiny):
    image, mask = _inputs(1)
    x, m = tiny.prepare(image, mask)
    assert x.shape == (1, 3, 32, 32) and m.shape == (1, 1, 32, 32)
    assert set(m.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(m[0, 0, ::2, ::2], mask[0].float() * 2 - 1)  # nearest, ×2
    white = tiny.prepare(torch.ones(1, 3, 16, 16), mask)[0][0, :, 0, 0]
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(white, (1 - mean) / std)


def test_mask_enters_through_its_conv_before_bn1(tiny):
    image, mask = _inputs(1)
    seen = {}
    handle = tiny.backbone.bn1.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    tiny(image, mask)
    handle.remove()
    x, m = tiny.prepare(image, mask)
    assert torch.allclose(seen["x"], tiny.backbone.conv1(x) + tiny.conv_mask(m), atol=1e-6)
    assert not torch.allclose(tiny.predict(image, mask), tiny.predict(image, ~mask))


def test_non_hrnet_backbone_is_refused():
    with pytest.raises(DenseVisionError, match="HRNet"):
        RefineNet(nn.Conv2d(3, 8, 3))


def test_backbone_weights_from_an_imagenet_classifier(tmp_path):
    classifier = create_model("hrnet_w18_small_v2", **TINY)
    path = tmp_path / "hrnet.pth"
    torch.save(classifier.state_dict(), path)
    model = build_refine_net(input_size=32, patch_size=16, backbone_weights=path, **TINY)
    assert torch.equal(model.backbone.conv1.weight, classifier.conv1.weight)
    assert torch.equal(model.backbone.stage4[0].fuse_layers[0][1][0].weight,
                       classifier.stage4[0].fuse_layers[0][1][0].weight)


def test_training_checkpoint_rebuilds_the_network(tiny, tmp_path):
    path = tmp_path / "run" / "last.pt"
    path.parent.mkdir()
    torch.save({"model": tiny.state_dict(), "iteration": 3, "config": {"bpr_model": tiny.arch}}, path)
    loaded = load_refine_net(path.parent)
    assert loaded.patch_size == 16 and loaded.input_size == 32 and not loaded.training
    image, mask = _inputs()
    assert torch.equal(loaded.predict(image, mask), tiny.predict(image, mask))


def test_model_spec_checkpoint_rebuilds_the_network_and_best_wins(tiny, tmp_path):
    torch.save({"model": tiny.state_dict(), "model_spec": refine_net_spec(tiny)}, tmp_path / "best.pt")
    torch.save({"model": {}, "model_spec": refine_net_spec(tiny)}, tmp_path / "last.pt")
    loaded = load_refine_net(tmp_path)  # a run directory gives its best.pt
    image, mask = _inputs()
    assert torch.equal(loaded.predict(image, mask), tiny.predict(image, mask))
    spec = {"builder": "mask_rcnn", "config": {}, "meta": {}}
    torch.save({"model": tiny.state_dict(), "model_spec": spec}, tmp_path / "det.pt")
    with pytest.raises(CheckpointError, match="holds a mask_rcnn model, not a BPR refinement network"):
        load_refine_net(tmp_path / "det.pt")


def test_official_bpr_key_names_are_converted(tiny):
    renames = {"conv_mask.": "backbone.conv_mask.", "head.0.": "decode_head.convs.0.conv.",
               "head.1.": "decode_head.convs.0.bn.", "head.3.": "decode_head.conv_seg."}
    official = {}
    for key, value in tiny.state_dict().items():
        for new, old in renames.items():
            if key.startswith(new):
                key = old + key[len(new):]
        official[key] = value
    assert "decode_head.conv_seg.weight" in official and "backbone.conv_mask.weight" in official
    assert tiny.convert_state_dict(official).keys() == tiny.state_dict().keys()


def test_checkpoint_errors(tmp_path, tiny):
    with pytest.raises(CheckpointError, match="not found"):
        load_refine_net(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="no best.pt or last.pt"):
        load_refine_net(tmp_path)
    path = tmp_path / "other.pt"
    torch.save({"model": {"conv.weight": torch.zeros(1)}, "config": {"bpr_model": tiny.arch}}, path)
    with pytest.raises(CheckpointError, match="does not match"):
        load_refine_net(path)
