"""Heatmap decoding (quarter-pixel rule), the flip test, keypoints mapped back from crops to images, drawings."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from densevision.data.images import ImageRecord, read_image
from densevision.data.keypoints import (
    KeypointLayout,
    PoseInstance,
    TopDownDataset,
    gaussian_targets,
    load_keypoint_instances,
)
from densevision.data.synthetic import generate
from densevision.evaluation.coco import evaluate
from densevision.pose.predict import (
    decode_dark,
    decode_heatmaps,
    flip_test_heatmaps,
    predict_keypoints,
    write_keypoint_overlays,
)
from densevision.viz import color_for


def test_quarter_pixel_rule() -> None:
    hm = torch.zeros(1, 3, 8, 10)
    hm[0, 0, 4, 5], hm[0, 0, 4, 6], hm[0, 0, 3, 5] = 1.0, 0.5, 0.2  # right and up neighbours are higher
    hm[0, 1, 0, 3], hm[0, 1, 0, 4] = 1.0, 0.9  # on the border: no shift
    hm[0, 2, 5, 2] = 0.7  # equal neighbours: no shift
    coords, maxvals = decode_heatmaps(hm)
    assert coords[0].tolist() == [[5.25, 3.75], [3.0, 0.0], [2.0, 5.0]]
    assert maxvals[0].tolist() == [1.0, 1.0, 0.699999988079071]


def test_decoding_gaussian_targets_recovers_the_joint() -> None:
    joints = np.array([[5.3, 7.8], [9.6, 3.1]])
    target, _ = gaussian_targets(joints, np.array([True, True]), (16, 12))
    coords, _ = decode_heatmaps(torch.from_numpy(target)[None])
    assert np.abs(coords[0].numpy() - joints).max() <= 0.5


def test_dark_recovers_unbiased_targets_to_a_hundredth_of_a_pixel_inside_the_map() -> None:
    joints = np.array([[5.3, 7.8], [7.6, 3.1], [0.4, 6.0]])  # the last one is too close to the border
    target, _ = gaussian_targets(joints, np.array([True, True, True]), (16, 12), unbiased=True)
    assert target[0].max() < 1.0 and target[0, 8, 5] == target[0].max()  # peak between pixels, at the rounded one
    coords, maxvals = decode_dark(torch.from_numpy(target)[None])
    assert np.abs(coords[0, 0].numpy() - joints[0]).max() < 0.01
    assert np.abs(coords[0, 1].numpy() - joints[1]).max() < 0.1  # its Gaussian is cut by the top border
    assert coords[0, 2].tolist() == [0.0, 6.0]  # no Taylor step without the ±2 neighbours: the argmax
    assert torch.equal(maxvals, torch.from_numpy(target).amax((-2, -1))[None])
    rounded, _ = gaussian_targets(joints, np.array([True, True, True]), (16, 12))
    assert np.abs(decode_heatmaps(torch.from_numpy(rounded)[None])[0][0, :2].numpy() - joints[:2]).max() > 0.05


class PixelModel(nn.Module):
    """A flip-equivariant network (a 1×1 conv), with the attributes of a ``TopDownPose``."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 1)
        self.num_joints, self.heatmap_stride, self.input_size = channels, 1, (8, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_flip_test_swaps_channels_and_shifts_one_pixel() -> None:
    torch.manual_seed(0)
    model, x = PixelModel(), torch.rand(2, 3, 8, 6)
    plain = model(x)
    mirror = plain[:, [0, 2, 1]].clone()
    mirror[..., 1:] = mirror[..., :-1].clone()
    assert torch.allclose(flip_test_heatmaps(model, x, [0, 2, 1]), (plain + mirror) / 2)
    fraction = plain[:, [0, 2, 1]].clone()
    fraction[..., 1:] = 0.25 * fraction[..., 1:] + 0.75 * fraction[..., :-1]
    assert torch.allclose(flip_test_heatmaps(model, x, [0, 2, 1], shift=0.75), (plain + fraction) / 2)


class OracleModel(nn.Module):
    """Returns the training targets of the crops it is given, batch after batch (the loader keeps the order)."""

    def __init__(self, dataset: TopDownDataset) -> None:
        super().__init__()
        self.targets = iter([dataset[i][1] for i in range(len(dataset))])
        self.num_joints, self.heatmap_stride, self.input_size = (dataset.layout.num_joints, dataset.heatmap_stride,
                                                                 dataset.input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([next(self.targets) for _ in range(len(x))])


def test_oracle_heatmaps_give_the_ground_truth_keypoints(tmp_path) -> None:
    paths = generate(tmp_path, train=0, val=3, size=160, seed=2, progress=False)
    instances, layout = load_keypoint_instances(paths["val"], tmp_path / "val")
    dataset = TopDownDataset(instances, layout, input_size=(128, 96))
    results = predict_keypoints(OracleModel(dataset), instances, layout, batch_size=4, flip_test=False)
    for inst, res in zip(instances, results, strict=True):
        got = np.asarray(res["keypoints"]).reshape(-1, 3)
        labelled = inst.keypoints[:, 2] > 0
        inside = got[:, 2] > 0.5
        scale = max(inst.box[2], inst.box[3]) * 1.25 / 96 * 4  # image pixels per heatmap pixel (upper bound)
        assert np.abs(got[labelled & inside, :2] - inst.keypoints[labelled & inside, :2]).max() <= 0.6 * scale
    # sigma 0.025 is strict: the 1/4-pixel heatmap quantisation alone costs AP on small shapes
    official = evaluate(paths["val"], results, "keypoints")["keypoints"]["AP"]
    assert official > 50
    unbiased = TopDownDataset(instances, layout, input_size=(128, 96), unbiased=True)
    dark = predict_keypoints(OracleModel(unbiased), instances, layout, batch_size=4, flip_test=False, decode="dark")
    assert evaluate(paths["val"], dark, "keypoints")["keypoints"]["AP"] > official


def test_instances_keep_their_category_channels() -> None:
    layout = KeypointLayout([{"id": 1, "keypoints": ["a"]}, {"id": 2, "keypoints": ["b", "c"]}])
    assert [c.channels for c in layout.categories.values()] == [slice(0, 1), slice(1, 3)]
    assert PoseInstance.__dataclass_fields__["score"].default == 1.0


def test_drawings_are_named_after_the_images(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("x.png", "x.jpg", "sub/y.png"):
        Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / name)
    records = [ImageRecord(i + 1, tmp_path / name, name) for i, name in enumerate(("x.png", "x.jpg", "sub/y.png"))]
    layout = KeypointLayout([{"id": 1, "keypoints": ["a", "b"]}])
    results = [{"image_id": 3, "category_id": 1, "keypoints": [4, 4, 0.9, 12, 12, 0.9], "score": 0.9}]
    written = write_keypoint_overlays(records, results, layout, tmp_path / "viz")
    assert [p.name for p in written] == ["x_1.png", "x_2.png", "sub__y.png"]
    assert tuple(read_image(written[2])[8, 8]) == color_for(1)  # the line between the two keypoints
    assert (read_image(written[0]) == 90).all()


def test_progress_bar_over_the_batches(tmp_path, capsys) -> None:
    paths = generate(tmp_path, train=0, val=1, size=128, seed=2, progress=False)
    instances, layout = load_keypoint_instances(paths["val"], tmp_path / "val")
    for progress in (True, False):
        dataset = TopDownDataset(instances, layout, input_size=(64, 48))
        predict_keypoints(OracleModel(dataset), instances, layout, batch_size=2, flip_test=False, progress=progress)
        assert ("pose predict" in capsys.readouterr().err) == progress
