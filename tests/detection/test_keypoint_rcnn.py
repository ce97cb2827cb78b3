"""Keypoint R-CNN: the builder's keypoint branch (with and without masks), stacked keypoint targets of categories
with different keypoint counts, the per-category channel slices in the loss, keypoints through the resize."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from densevision.data.keypoints import KeypointLayout
from densevision.detection import build_mask_rcnn
from densevision.detection.keypoint_rcnn import KeypointCocoDetection, keypoint_channels, stacked_keypoints
from densevision.detection.mask_rcnn import HEAD_PRESETS, SizeSafeTransform
from densevision.errors import DataError, DenseVisionError

BACKBONE = "timm:mobilenetv3_small_050"
TINY = {"fpn_channels": 16, "mask_head_channels": 8, "box_head_dim": 16, "rois_per_image": 16,
        "rpn_pre_nms_top_n_train": 50, "rpn_post_nms_top_n_train": 20, "rpn_pre_nms_top_n_test": 50,
        "rpn_post_nms_top_n_test": 20, "keypoint_head_channels": 8, "keypoint_head_layers": 2}
# Category 1 (3 keypoints) owns channels 0-2, category 2 (4 keypoints) channels 3-6.
CATEGORIES = [
    {"id": 1, "name": "triangle", "keypoints": ["a", "b", "c"], "flip_pairs": [[1, 2]], "kpt_sigmas": [0.025] * 3},
    {"id": 2, "name": "square", "keypoints": ["left_top", "right_top", "right_bottom", "left_bottom"],
     "kpt_sigmas": [0.025] * 4},
]
TRIANGLE = [[10.0, 8.0, 2], [30.0, 8.0, 2], [20.0, 25.0, 1]]
SQUARE = [[22.0, 32.0, 2], [48.0, 32.0, 2], [48.0, 58.0, 2], [22.0, 58.0, 0]]
TRIANGLE_BOX = [6.0, 4.0, 40.0, 30.0]
SQUARE_BOX = [20.0, 30.0, 50.0, 60.0]


def _target(labels: list[int]) -> dict[str, torch.Tensor]:
    """Instances of the given labels (1: triangle, 2: square) in the stacked 7-channel layout."""
    keypoints = torch.zeros(len(labels), 7, 3)
    boxes = []
    for i, label in enumerate(labels):
        if label == 1:
            keypoints[i, 0:3] = torch.tensor(TRIANGLE)
        else:
            keypoints[i, 3:7] = torch.tensor(SQUARE)
        boxes.append(TRIANGLE_BOX if label == 1 else SQUARE_BOX)
    masks = torch.zeros(len(labels), 64, 64, dtype=torch.uint8)
    for m, (x0, y0, x1, y1) in zip(masks, boxes, strict=True):
        m[int(y0):int(y1), int(x0):int(x1)] = 1
    return {"boxes": torch.tensor(boxes).reshape(-1, 4), "labels": torch.tensor(labels, dtype=torch.int64),
            "keypoints": keypoints, "masks": masks}


def _model(**options) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_mask_rcnn(BACKBONE, 2, num_keypoints=7, detector="keypoint_rcnn", min_size=64, max_size=96,
                           **{**TINY, **options})


@pytest.fixture(scope="module")
def model():
    return _model()


def test_keypoint_branch_without_masks(model):
    heads = model.roi_heads
    assert heads.has_keypoint() and not heads.has_mask()
    assert heads.keypoint_roi_pool.output_size == (14, 14)
    assert heads.keypoint_predictor.out_channels == 7
    assert not any(k.startswith("roi_heads.mask") for k in model.state_dict())
    heatmaps = heads.keypoint_predictor(heads.keypoint_head(torch.rand(3, 16, 14, 14)))
    assert heatmaps.shape == (3, 7, 56, 56)
    assert model.config["detector"] == "keypoint_rcnn" and model.config["num_keypoints"] == 7
    rebuilt = build_mask_rcnn(**model.config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_head_presets_size_the_keypoint_head():
    assert HEAD_PRESETS["torchvision"]["keypoint_head_channels"] == 512
    assert HEAD_PRESETS["torchvision"]["keypoint_head_layers"] == 8  # torchvision's / the paper's 8 x 512 convs
    m = build_mask_rcnn(BACKBONE, 1, num_keypoints=3, detector="keypoint_rcnn",
                        **{k: v for k, v in TINY.items() if not k.startswith("keypoint")})
    convs = [c for c in m.roi_heads.keypoint_head if isinstance(c, torch.nn.Conv2d)]
    assert len(convs) == HEAD_PRESETS["light"]["keypoint_head_layers"]
    assert convs[-1].out_channels == HEAD_PRESETS["light"]["keypoint_head_channels"]


def test_builder_errors():
    with pytest.raises(DenseVisionError, match="needs num_keypoints"):
        build_mask_rcnn(BACKBONE, 2, detector="keypoint_rcnn", **TINY)
    with pytest.raises(DenseVisionError, match="num_keypoints is for detector keypoint_rcnn"):
        build_mask_rcnn(BACKBONE, 2, num_keypoints=3, **TINY)
    with pytest.raises(DenseVisionError, match="keypoint_head_layers must be positive"):
        _model(keypoint_head_layers=0)


def test_loss_trains_only_the_channels_of_the_instance_category(model):
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    losses = model([torch.rand(3, 64, 64)], [_target([1])])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_keypoint", "loss_objectness", "loss_rpn_box_reg"}
    losses["loss_keypoint"].backward()
    grad = model.roi_heads.keypoint_predictor.kps_score_lowres.weight.grad  # in × out (keypoints) × 4 × 4
    per_channel = grad.abs().sum(dim=(0, 2, 3))
    assert (per_channel[0:3] > 0).all()  # the triangle's channels learn ...
    assert (per_channel[3:7] == 0).all()  # ... the square's get nothing from a triangle
    model.zero_grad(set_to_none=True)


def test_categories_with_3_and_4_keypoints_in_one_batch(model):
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    losses = model([torch.rand(3, 64, 64), torch.rand(3, 64, 64), torch.rand(3, 64, 64)],
                   [_target([1]), _target([2]), _target([])])  # the third image has no instance
    assert torch.isfinite(losses["loss_keypoint"]) and losses["loss_keypoint"] > 0
    sum(losses.values()).backward()
    per_channel = model.roi_heads.keypoint_predictor.kps_score_lowres.weight.grad.abs().sum(dim=(0, 2, 3))
    assert (per_channel[:6] > 0).all()  # both categories' labelled keypoints train their channels
    assert per_channel[6] == 0  # the square's last keypoint is not labelled (v = 0)
    model.zero_grad(set_to_none=True)


def test_with_masks_predicts_boxes_masks_and_keypoints():
    m = _model(keypoint_masks=True)
    assert m.roi_heads.has_mask() and m.roi_heads.has_keypoint()
    m.train()
    losses = m([torch.rand(3, 64, 64)] * 2, [_target([1, 2]), _target([2])])
    assert {"loss_mask", "loss_keypoint"} <= set(losses)
    m.eval()
    m.roi_heads.score_thresh = 0.0
    with torch.no_grad():
        out = m([torch.rand(3, 64, 64)])[0]
    n = len(out["boxes"])
    assert n > 0
    assert out["masks"].shape == (n, 1, 64, 64) and out["keypoints"].shape == (n, 7, 3)


def test_inference_keypoints_in_image_pixels(model):
    model.eval()
    model.roi_heads.score_thresh = 0.0
    torch.manual_seed(2)
    with torch.no_grad():
        out = model([torch.rand(3, 128, 160)])[0]  # resized to 64 x 80 inside, keypoints mapped back
    boxes, keypoints = out["boxes"], out["keypoints"]
    assert len(boxes) > 0 and keypoints.shape == (len(boxes), 7, 3) and out["keypoints_scores"].shape == (len(boxes), 7)
    # torchvision decodes each keypoint inside its detection's box.
    assert (keypoints[..., 0] >= boxes[:, None, 0] - 1).all() and (keypoints[..., 0] <= boxes[:, None, 2] + 1).all()
    assert (keypoints[..., 1] >= boxes[:, None, 1] - 1).all() and (keypoints[..., 1] <= boxes[:, None, 3] + 1).all()
    assert boxes[:, 2].max() > 80  # in the 160-wide original, not the 80-wide network input


def test_size_safe_transform_resizes_keypoints():
    transform = SizeSafeTransform(32, 64, [0.0] * 3, [1.0] * 3)
    target = _target([1, 2])
    del target["masks"]
    _, resized = transform.resize(torch.rand(3, 64, 64), target)
    assert torch.allclose(resized["keypoints"][..., :2], target["keypoints"][..., :2] / 2)
    assert torch.equal(resized["keypoints"][..., 2], target["keypoints"][..., 2])


# ------------------------------------------------------------------------------------------- data
def _write_data(root, annotations) -> tuple:
    (root / "images").mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(root / "images" / "a.png")
    data = {"images": [{"id": 7, "file_name": "a.png", "height": 64, "width": 64}],
            "annotations": annotations, "categories": CATEGORIES}
    (root / "ann.json").write_text(json.dumps(data))
    return root / "ann.json", root / "images"


def _ann(ann_id: int, category_id: int, bbox: list[float], keypoints: list | None, **extra) -> dict:
    ann = {"id": ann_id, "image_id": 7, "category_id": category_id, "bbox": bbox, "area": bbox[2] * bbox[3],
           "iscrowd": 0, "segmentation": [[bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1], bbox[0] + bbox[2],
                                          bbox[1] + bbox[3]]], **extra}
    if keypoints is not None:
        ann["keypoints"] = [v for p in keypoints for v in p]
    return ann


def test_targets_put_each_keypoint_in_its_category_channels(tmp_path):
    ann, images = _write_data(tmp_path, [
        _ann(1, 2, [20, 30, 30, 30], SQUARE),
        _ann(2, 1, [6, 4, 34, 26], TRIANGLE),
        _ann(3, 1, [0, 0, 10, 10], None),  # a box without keypoints
        _ann(4, 2, [0, 0, 20, 20], SQUARE, iscrowd=1),
    ])
    dataset = KeypointCocoDetection(ann, images, include_crowd=False)
    assert dataset.layout.num_joints == 7
    assert keypoint_channels(dataset.layout) == {1: slice(0, 3), 2: slice(3, 7)}
    _, target = dataset[0]
    keypoints = target["keypoints"]
    assert keypoints.dtype == torch.float32 and keypoints.shape == (3, 7, 3)  # the crowd square is left out
    assert target["labels"].tolist() == [2, 1, 1]
    assert keypoints[0, 3:7].tolist() == SQUARE and not keypoints[0, 0:3].any()
    assert keypoints[1, 0:3].tolist() == TRIANGLE and not keypoints[1, 3:7].any()
    assert not keypoints[2].any()


def test_stacked_keypoints_of_no_annotation():
    layout = KeypointLayout(CATEGORIES)
    assert stacked_keypoints([], layout).shape == (0, 7, 3)


def test_wrong_keypoint_count_names_the_annotation(tmp_path):
    ann, images = _write_data(tmp_path, [_ann(5, 2, [20, 30, 30, 30], TRIANGLE)])
    with pytest.raises(DataError, match="annotation id 5 needs 'keypoints' of 3 x 4 numbers"):
        KeypointCocoDetection(ann, images)


def test_data_without_keypoint_categories_is_refused(tmp_path):
    ann, images = _write_data(tmp_path, [])
    data = json.loads(ann.read_text())
    data["categories"] = [{"id": 1, "name": "thing"}]
    ann.write_text(json.dumps(data))
    with pytest.raises(DataError, match="no category has 'keypoints' names"):
        KeypointCocoDetection(ann, images)
