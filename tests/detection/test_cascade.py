"""Cascade Mask R-CNN: stage targets, stage weights, score averaging, last-stage boxes, mask-head styles,
box-head and box-loss options, the builder, and a few iterations that reduce the loss."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import MultiScaleRoIAlign

from densevision.detection import build_mask_rcnn
from densevision.detection.cascade import CascadeRoIHeads, average_scores, build_cascade_roi_heads
from densevision.errors import DenseVisionError

BACKBONE = "timm:mobilenetv3_small_050"
TINY = {"fpn_channels": 16, "mask_head_channels": 8, "box_head_dim": 16, "rois_per_image": 16,
        "rpn_pre_nms_top_n_train": 50, "rpn_post_nms_top_n_train": 20, "rpn_pre_nms_top_n_test": 50,
        "rpn_post_nms_top_n_test": 20}
STAGE_KEYS = {f"loss_{name}_stage{t}" for name in ("classifier", "box_reg") for t in (1, 2, 3)}
RPN_KEYS = {"loss_objectness", "loss_rpn_box_reg"}


def _target(size: int = 64) -> dict[str, torch.Tensor]:
    masks = torch.zeros(2, size, size, dtype=torch.uint8)
    masks[0, 4:30, 6:40] = 1
    masks[1, 30:60, 20:50] = 1
    return {"boxes": torch.tensor([[6.0, 4.0, 40.0, 30.0], [20.0, 30.0, 50.0, 60.0]]),
            "labels": torch.tensor([1, 2]), "masks": masks}


def _heads(**options) -> CascadeRoIHeads:
    torch.manual_seed(0)
    return build_cascade_roi_heads(featmap_names=["0"], in_channels=4, num_classes=2, box_head_dim=8,
                                   mask_head_channels=4, batch_size_per_image=64, **options)


def _features() -> OrderedDict[str, torch.Tensor]:
    torch.manual_seed(1)
    return OrderedDict([("0", torch.randn(2, 4, 16, 16))])


def _train_losses(heads: CascadeRoIHeads) -> dict[str, torch.Tensor]:
    heads.train()
    proposals = [torch.tensor([[5.0, 5.0, 40.0, 30.0], [0.0, 0.0, 20.0, 20.0], [22.0, 28.0, 52.0, 58.0]])] * 2
    torch.manual_seed(2)
    return heads(_features(), proposals, [(64, 64)] * 2, [_target(), _target()])[1]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_mask_rcnn(BACKBONE, 2, min_size=64, max_size=96, detector="cascade_mask_rcnn", **TINY)


def test_stage_targets_follow_each_stage_iou():
    heads = _heads()
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    # IoU 0.55 with the ground truth: 10x10 against 10x5.5.
    proposal = torch.tensor([[0.0, 0.0, 10.0, 5.5]])
    target = {"boxes": gt, "labels": torch.tensor([2])}
    labels = [heads.sample(stage, [proposal], [target])[1][0].tolist() for stage in range(3)]
    rois, _, matched, is_gt = heads.sample(0, [proposal], [target])
    assert torch.equal(rois[0], torch.cat([proposal, gt]))  # the proposal, then the added ground truth
    assert is_gt[0].tolist() == [False, True] and matched[0].tolist() == [0, 0]
    assert labels == [[2, 2], [0, 2], [0, 2]]  # positive at IoU 0.5, negative at 0.6 and 0.7


def test_training_losses_with_stage_weights_applied():
    weighted = _train_losses(_heads())
    assert set(weighted) == STAGE_KEYS | {f"loss_mask_stage{t}" for t in (1, 2, 3)}
    plain = _train_losses(_heads(stage_loss_weights=(1.0, 1.0, 1.0)))
    for key, value in weighted.items():
        factor = {"1": 1.0, "2": 0.5, "3": 0.25}[key[-1]]
        assert torch.isfinite(value) and value > 0, key
        assert torch.allclose(value, factor * plain[key]), key


def test_later_stages_train_on_refined_boxes_without_the_added_ground_truth():
    heads = _heads()
    seen = []
    original = heads.sample
    heads.sample = lambda stage, rois, targets: seen.append([len(r) for r in rois]) or original(stage, rois, targets)
    _train_losses(heads)
    # Stage 1 gets the 3 proposals; later stages the sampled RoIs of the stage before, minus the 2 ground truths.
    assert seen == [[3, 3], [3, 3], [3, 3]]


class _Fixed(nn.Module):
    """A predictor returning the same logits and deltas for every RoI."""

    def __init__(self, logits: list[float], deltas: list[float]) -> None:
        super().__init__()
        self.logits, self.deltas = torch.tensor([logits]), torch.tensor([deltas])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.logits.expand(len(x), -1), self.deltas.expand(len(x), -1)


def test_scores_average_over_stages_and_boxes_come_from_the_last_stage():
    logits = [[0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [1.0, 3.0, 0.0]]
    deltas = [[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]
    stds = [(0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067)]
    pool = MultiScaleRoIAlign(["0"], 1, 1)
    predictors = [_Fixed(c, d) for c, d in zip(logits, deltas, strict=True)]
    heads = CascadeRoIHeads(
        box_roi_pool=pool, box_heads=[nn.Flatten()] * 3, box_predictors=predictors, mask_roi_pool=pool,
        mask_heads=[nn.Identity()], mask_predictors=[nn.Conv2d(4, 3, 1)], box_coder_stds=stds,
        score_thresh=0.0, detections_per_img=1,
    ).eval()
    proposal = torch.tensor([[10.0, 10.0, 30.0, 50.0]])
    with torch.no_grad():
        out = heads(_features(), [proposal, proposal], [(64, 64)] * 2)[0][0]
    expected_box = proposal
    for d, s in zip(deltas, stds, strict=True):
        expected_box = BoxCoder(tuple(1 / v for v in s)).decode_single(torch.tensor([d]), expected_box)
    mean_logits = torch.tensor(logits).mean(0)
    probs = mean_logits.softmax(0)
    assert out["labels"].tolist() == [1]
    assert torch.allclose(out["scores"], probs[1:2])
    assert torch.allclose(out["boxes"], expected_box)
    assert not torch.allclose(probs, torch.tensor(logits).softmax(1).mean(0))  # the two averages differ here
    assert torch.allclose(average_scores([torch.tensor([row]) for row in logits], "probabilities")[0],
                          torch.tensor(logits).softmax(1).mean(0))
    assert out["masks"].shape == (1, 1, 1, 1)  # the 1×1 pool of this constructed case


def test_per_stage_masks_are_averaged():
    per_stage, final = _heads().eval(), _heads(mask_heads="final").eval()
    assert len(per_stage.mask_heads) == 3 and len(final.mask_heads) == 1
    assert "loss_mask" in _train_losses(_heads(mask_heads="final"))
    final.load_state_dict({k: v for k, v in per_stage.state_dict().items() if not k.startswith("mask_")},
                          strict=False)
    proposals = [torch.tensor([[5.0, 5.0, 40.0, 30.0], [20.0, 30.0, 50.0, 60.0]])] * 2
    singles = []
    with torch.no_grad():
        for i in range(3):  # each stage's head alone, as the single head of `final`
            final.mask_heads[0].load_state_dict(per_stage.mask_heads[i].state_dict())
            final.mask_predictors[0].load_state_dict(per_stage.mask_predictors[i].state_dict())
            singles.append(final(_features(), proposals, [(64, 64)] * 2)[0][0])
        averaged = per_stage(_features(), proposals, [(64, 64)] * 2)[0]
    assert torch.equal(averaged[0]["boxes"], singles[0]["boxes"])
    assert not torch.allclose(singles[0]["masks"], singles[1]["masks"])
    assert torch.allclose(averaged[0]["masks"], sum(s["masks"] for s in singles) / 3, atol=1e-6)


def test_four_conv_head_and_class_specific_giou_loss():
    heads = _heads(box_head="4conv1fc", class_agnostic=False, box_loss="giou")
    assert isinstance(heads.box_heads[0][0][1], nn.BatchNorm2d)
    assert heads.box_predictors[0].bbox_pred.out_features == 4 * 3
    losses = _train_losses(heads)
    assert set(losses) >= STAGE_KEYS and all(torch.isfinite(v) for v in losses.values())
    # GIoU is zero for a perfect box: zero deltas on a RoI equal to its ground truth.
    box = torch.tensor([[6.0, 4.0, 40.0, 30.0]])
    loss_cls, loss_box = heads.box_losses(0, torch.zeros(1, 3), torch.zeros(1, 12), box, torch.tensor([1]), box)
    assert loss_box.item() == pytest.approx(0.0, abs=1e-6)
    shifted = box + 4.0
    assert heads.box_losses(0, torch.zeros(1, 3), torch.zeros(1, 12), shifted, torch.tensor([1]), box)[1] > 0
    assert loss_cls.item() == pytest.approx(math.log(3))


@pytest.mark.parametrize("class_agnostic", [True, False])
def test_images_without_proposals(class_agnostic):
    heads = _heads(class_agnostic=class_agnostic).eval()
    with torch.no_grad():
        out = heads(_features(), [torch.zeros(0, 4), torch.tensor([[5.0, 5.0, 40.0, 30.0]])], [(64, 64)] * 2)[0]
    assert out[0]["boxes"].shape == (0, 4) and out[0]["masks"].shape == (0, 1, 28, 28)
    assert len(out[1]["boxes"]) == len(out[1]["masks"])
    with torch.no_grad():
        none = heads(_features(), [torch.zeros(0, 4)] * 2, [(64, 64)] * 2)[0]
    assert [len(d["boxes"]) for d in none] == [0, 0]


def test_builder_wires_the_cascade(model):
    heads = model.roi_heads
    assert isinstance(heads, CascadeRoIHeads)
    assert heads.iou_thresholds == [0.5, 0.6, 0.7] and heads.stage_loss_weights == [1.0, 0.5, 0.25]
    assert [c.weights for c in heads.box_coders] == [(10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0),
                                                     pytest.approx((1 / 0.033, 1 / 0.033, 1 / 0.067, 1 / 0.067))]
    assert all(p.bbox_pred.out_features == 4 for p in heads.box_predictors)
    assert heads.fg_bg_sampler.batch_size_per_image == 16
    assert model.config["detector"] == "cascade_mask_rcnn"
    rebuilt = build_mask_rcnn(**model.config)
    assert isinstance(rebuilt.roi_heads, CascadeRoIHeads)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    plain = build_mask_rcnn(BACKBONE, 2, min_size=64, max_size=96, **TINY)
    assert plain.config["detector"] == "mask_rcnn" and not isinstance(plain.roi_heads, CascadeRoIHeads)


def test_model_trains_and_predicts(model):
    model.train()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros(0, 64, 64, dtype=torch.uint8)}
    losses = model([torch.rand(3, 64, 64), torch.rand(3, 64, 64)], [_target(), empty])
    assert set(losses) == STAGE_KEYS | RPN_KEYS | {f"loss_mask_stage{t}" for t in (1, 2, 3)}
    sum(losses.values()).backward()
    for i in range(3):
        assert model.roi_heads.mask_predictors[i].mask_fcn_logits.weight.grad.abs().sum() > 0
        assert model.roi_heads.box_predictors[i].cls_score.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model.eval()
    model.roi_heads.score_thresh = 0.0
    with torch.no_grad():
        out = model([torch.rand(3, 50, 70)])[0]
    model.roi_heads.score_thresh = 0.05
    n = len(out["boxes"])
    assert n > 0 and out["boxes"].shape == (n, 4) and out["masks"].shape == (n, 1, 50, 70)
    assert out["labels"].min() >= 1 and out["labels"].max() <= 2
    assert ((out["scores"] >= 0) & (out["scores"] <= 1)).all()
    assert (out["boxes"][:, 0] >= 0).all() and (out["boxes"][:, 2] <= 70).all() and (out["boxes"][:, 3] <= 50).all()
    assert ((out["masks"] >= 0) & (out["masks"] <= 1)).all()


def test_a_few_iterations_reduce_the_loss():
    torch.manual_seed(0)
    model = build_mask_rcnn(BACKBONE, 2, min_size=64, max_size=64, detector="cascade_mask_rcnn", **TINY)
    model.train()
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    images[0][:, 4:30, 6:40] += 1.0
    images[1][:, 30:60, 20:50] -= 1.0
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    totals = []
    for _ in range(8):
        loss = sum(model(images, [_target(), _target()]).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    assert sum(totals[-2:]) < 0.8 * sum(totals[:2]), totals


@pytest.mark.parametrize(("options", "message"), [
    ({"cascade_stage_weights": [1.0, 0.5]}, "one entry per stage"),
    ({"cascade_box_stds": [[0.1, 0.1, 0.2], [0.1] * 4, [0.1] * 4]}, "4 positive values"),
    ({"cascade_mask_heads": "all"}, "cascade_mask_heads must be one of per_stage, final"),
])
def test_bad_cascade_options(options, message):
    with pytest.raises(DenseVisionError, match=message):
        build_mask_rcnn(BACKBONE, 2, detector="cascade_mask_rcnn", **options)
