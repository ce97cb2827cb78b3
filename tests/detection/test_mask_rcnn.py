"""Mask R-CNN builder: wiring from backbone facts, training / inference on odd inputs, freezing, weights, errors."""

from __future__ import annotations

import pytest
import timm
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops.misc import FrozenBatchNorm2d

from densevision.detection import build_mask_rcnn
from densevision.detection.backbone import FPNNeck, build_detection_backbone
from densevision.detection.mask_rcnn import SizeSafeTransform
from densevision.detection.necks import HRNetV2pNeck
from densevision.errors import CheckpointError, DenseVisionError
from densevision.models import create_model
from densevision.models.bodies import split_stages

BACKBONE = "timm:mobilenetv3_small_050"  # a 4-level timm body small enough for unit tests


def _targets(n_images: int, size: int) -> list[dict[str, torch.Tensor]]:
    targets = []
    for _ in range(n_images):
        masks = torch.zeros(2, size, size, dtype=torch.uint8)
        masks[0, 4:30, 6:40] = 1
        masks[1, 30:60, 20:50] = 1
        targets.append({
            "boxes": torch.tensor([[6.0, 4.0, 40.0, 30.0], [20.0, 30.0, 50.0, 60.0]]),
            "labels": torch.tensor([1, 2]),
            "masks": masks,
        })
    return targets


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_mask_rcnn(BACKBONE, 2, min_size=64, max_size=96)


def test_wired_from_backbone_facts(model):
    body = model.backbone.body
    assert model.backbone.strides == [*body.strides, 2 * body.strides[-1]] == [4, 8, 16, 32, 64]
    sizes = [s[0] for s in model.rpn.anchor_generator.sizes]
    assert sizes == [8.0 * s for s in model.backbone.strides]
    assert model.transform.image_mean == list(body.pretrained_cfg["mean"])
    assert model.transform.image_std == list(body.pretrained_cfg["std"])
    assert model.transform.size_divisible == 32
    assert model.backbone.out_channels == 128  # "light" preset
    assert model.roi_heads.box_predictor.cls_score.out_features == 3  # 2 categories + background
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == 64
    assert model.rpn._post_nms_top_n == {"training": 300, "testing": 300}


def test_overrides_and_presets():
    m = build_mask_rcnn(BACKBONE, 1, heads="torchvision", box_head_dim=64, min_size=(48, 64), max_size=80)
    assert m.backbone.out_channels == 256
    assert m.roi_heads.box_head.fc7.out_features == 64
    assert m.roi_heads.fg_bg_sampler.batch_size_per_image == 512
    assert m.transform.min_size == (48, 64)
    assert m.config["min_size"] == [48, 64]
    default = build_mask_rcnn(BACKBONE, 1)
    assert default.transform.min_size == (224,)  # the body's pretraining input size
    assert default.transform.max_size == round(224 * 1333 / 800)


def test_train_step_and_backward(model):
    model.train()
    losses = model([torch.rand(3, 64, 64), torch.rand(3, 64, 64)], _targets(2, 64))
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.roi_heads.mask_predictor.mask_fcn_logits.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_training_accepts_images_without_instances(model):
    model.train()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros(0, 64, 64, dtype=torch.uint8)}
    losses = model([torch.rand(3, 64, 64)], [empty])
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("size", [(23, 97), (90, 13), (64, 64), (500, 4), (1, 1)])
def test_inference_on_odd_sizes(model, size):
    model.eval()
    torch.manual_seed(1)
    with torch.no_grad():
        (out,) = model([torch.rand(3, *size)])
    n = len(out["boxes"])
    assert out["masks"].shape == (n, 1, *size)
    assert out["labels"].shape == out["scores"].shape == (n,)
    if n:
        assert out["boxes"][:, 2].max() <= size[1] and out["boxes"][:, 3].max() <= size[0]
        assert set(out["labels"].tolist()) <= {1, 2}


def test_size_safe_transform_equals_torchvision_on_ordinary_sizes():
    args = ((48, 64), 96, [0.4, 0.5, 0.6], [0.2, 0.3, 0.4])
    ours, theirs = SizeSafeTransform(*args, size_divisible=32), GeneralizedRCNNTransform(*args, size_divisible=32)
    image = torch.rand(3, 37, 53)
    target = _targets(1, 64)[0]
    target["masks"] = target["masks"][:, :37, :53]
    for training in (False, True):
        ours.train(training)
        theirs.train(training)
        torch.manual_seed(0)
        a_images, a_targets = ours([image], [dict(target)])
        torch.manual_seed(0)
        b_images, b_targets = theirs([image], [dict(target)])
        assert a_images.image_sizes == b_images.image_sizes
        assert torch.equal(a_images.tensors, b_images.tensors)
        assert torch.equal(a_targets[0]["boxes"], b_targets[0]["boxes"])
        assert torch.equal(a_targets[0]["masks"], b_targets[0]["masks"])


def test_set_test_size_changes_inference_input_only():
    m = build_mask_rcnn(BACKBONE, 1, min_size=(48, 64), max_size=96).eval()
    m.set_test_size(128)
    assert m.transform.min_size == (128,) and m.transform.max_size == 192  # long-side cap keeps 96 / 64
    images, _ = m.transform([torch.rand(3, 50, 100)])
    assert images.image_sizes == [(96, 192)]
    assert m.config["min_size"] == [48, 64] and m.config["max_size"] == 96  # checkpoints keep the training sizes
    with pytest.raises(DenseVisionError, match="positive number of pixels"):
        m.set_test_size(0)


def test_config_rebuilds_the_same_architecture(model):
    rebuilt = build_mask_rcnn(**model.config)
    assert rebuilt.config == model.config
    ours, theirs = model.state_dict(), rebuilt.state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)
    rebuilt.load_state_dict(ours)


def test_freeze_at_and_frozen_bn():
    m = build_mask_rcnn(BACKBONE, 1, freeze_at=2, frozen_bn=True)
    body = m.backbone.body
    groups = body.stage_parameters()
    assert len(groups) == 5 and all(groups)
    assert sum(len(g) for g in groups) == len(list(body.parameters()))
    frozen = {id(p) for g in groups[:2] for p in g}
    for p in body.parameters():
        assert p.requires_grad == (id(p) not in frozen)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in body.modules())
    assert any(isinstance(x, FrozenBatchNorm2d) for x in body.modules())
    assert m.config["frozen_bn"] is True
    with pytest.raises(DenseVisionError, match="freeze_at=9"):
        build_mask_rcnn(BACKBONE, 1, freeze_at=9)


def test_split_stages_follows_level_modules():
    names = ["conv_stem.w", "blocks.0.0.w", "blocks.1.0.w", "blocks.2.0.w", "blocks.3.0.w", "blocks.3.1.w",
             "blocks.4.0.w", "blocks.5.0.w", "head.w"]
    params = [(n, torch.nn.Parameter(torch.tensor(float(i)))) for i, n in enumerate(names)]
    groups = split_stages(params, ["blocks.1", "blocks.3", "blocks.4", "blocks.5"])
    assert [[int(p) for p in g] for g in groups] == [[0, 1], [2], [3, 4, 5], [6], [7, 8]]
    flat = [("stem_0.w", params[0][1]), ("stages_0.x", params[1][1]), ("stages_1.x", params[2][1])]
    assert [[int(p) for p in g] for g in split_stages(flat, ["stages.0", "stages.1"])] == [[0], [1], [2]]


def test_backbone_weights_load_and_freeze_bn_by_default(tmp_path):
    torch.manual_seed(3)
    classifier = timm.create_model(BACKBONE.removeprefix("timm:"), pretrained=False)
    path = tmp_path / "cls.pt"
    torch.save({"state_dict": classifier.state_dict()}, path)
    m = build_mask_rcnn(BACKBONE, 1, backbone_weights=str(path))
    assert m.config["frozen_bn"] is True
    assert "backbone_weights" not in m.config
    own = m.backbone.body.model.state_dict()
    src = classifier.state_dict()
    assert torch.equal(own["conv_stem.weight"], src["conv_stem.weight"])
    assert torch.equal(own["bn1.running_var"], src["bn1.running_var"])


def test_weights_of_another_architecture_are_refused(tmp_path):
    other = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(CheckpointError, match="resnet18.pt: checkpoint does not match"):
        build_mask_rcnn(BACKBONE, 1, backbone_weights=str(path))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backbone": "no_such_model"}, "unknown model 'no_such_model'"),
        ({"backbone": "timm:no_such_model"}, "unknown timm model 'no_such_model'"),
        ({"backbone": "timm:vit_tiny_patch16_224"}, "cannot run on a"),
        ({"backbone": BACKBONE, "heads": "huge"}, "heads must be one of light, torchvision, got 'huge'"),
        ({"backbone": BACKBONE, "fpn_channel": 8}, "unknown key fpn_channel \\(did you mean fpn_channels\\?\\)"),
        ({"backbone": "swin_tiny_patch4_window7_224", "backbone_kwargs": {"bogus": 1}}, "does not accept"),
        ({"backbone": BACKBONE, "num_classes": 0}, "num_classes"),
        ({"backbone": BACKBONE, "min_size": 200, "max_size": 100}, "max_size 100 is smaller"),
    ],
)
def test_bad_configuration_errors(kwargs, message):
    kwargs = {"num_classes": 2, **kwargs}
    with pytest.raises(DenseVisionError, match=message):
        build_mask_rcnn(kwargs.pop("backbone"), kwargs.pop("num_classes"), **kwargs)


def test_hrnet_gets_the_hrnetv2p_neck_and_zoo_weights(tmp_path):
    tiny = {"width": 8, "stage1_planes": 8, "num_blocks": (1, 1, 1)}
    classifier = create_model("hrnet_w18_small", **tiny)
    torch.save({"state_dict": classifier.state_dict()}, tmp_path / "hrnet.pth")
    m = build_mask_rcnn("hrnet_w18_small", 3, backbone_kwargs=tiny, backbone_weights=str(tmp_path / "hrnet.pth"),
                        fpn_channels=16)
    assert isinstance(m.backbone.neck, HRNetV2pNeck)
    assert m.backbone.strides == [4, 8, 16, 32, 64]
    assert [s[0] for s in m.rpn.anchor_generator.sizes] == [32.0, 64.0, 128.0, 256.0, 512.0]
    body = dict(m.backbone.body.named_buffers())
    assert torch.equal(body["bn1.running_var"], classifier.bn1.running_var)  # loaded, then frozen
    assert torch.equal(m.backbone.body.conv1.weight, classifier.conv1.weight)
    assert isinstance(m.backbone.body.bn1, FrozenBatchNorm2d)


def test_fpn_neck_levels():
    neck = FPNNeck([8, 16], [4, 8], 12)
    out = neck([torch.rand(1, 8, 15, 17), torch.rand(1, 16, 8, 9)])
    assert [tuple(o.shape) for o in out] == [(1, 12, 15, 17), (1, 12, 8, 9), (1, 12, 4, 5)]
    assert neck.strides == [4, 8, 16]


def test_detection_backbone_outputs_named_levels():
    net = build_detection_backbone(BACKBONE, neck_channels=16)
    out = net(torch.rand(1, 3, 70, 50))
    assert list(out) == ["0", "1", "2", "3", "4"]
    assert all(v.shape[1] == 16 for v in out.values())
    assert net.featmap_names() == ["0", "1", "2", "3"]
