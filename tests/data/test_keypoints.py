"""COCO keypoint layouts, top-down crop geometry, half-body crops and Gaussian heatmap targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from densevision.data.keypoints import (
    COCO_PERSON_KEYPOINTS,
    COCO_PERSON_SIGMAS,
    COCO_PERSON_SKELETON,
    Augment,
    KeypointLayout,
    TopDownDataset,
    apply_affine,
    box_to_center_size,
    crop_transform,
    flip_pairs_from_names,
    gaussian_targets,
    load_keypoint_instances,
)
from densevision.data.synthetic import generate
from densevision.errors import DataError
from tests.pose.conftest import STANDING, write_person_fixture


def test_flip_pairs_of_coco_person_names() -> None:
    pairs = flip_pairs_from_names(COCO_PERSON_KEYPOINTS)
    assert pairs == [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]


def test_layout_stacks_categories_and_mirrors_channels() -> None:
    layout = KeypointLayout([
        {"id": 7, "name": "tri", "keypoints": ["a", "b", "c"], "flip_pairs": [[1, 3]], "kpt_sigmas": [.1] * 3,
         "skeleton": [[1, 3], [3, 2]]},
        {"id": 2, "name": "hand", "keypoints": ["left_x", "right_x"]},
        {"id": 3, "name": "box"},
    ])
    assert list(layout.categories) == [2, 7]
    assert layout.num_joints == 5 and layout.categories[7].channels == slice(2, 5)
    assert layout.flip_index == [1, 0, 4, 3, 2]
    assert layout.categories[2].sigmas is None and layout.categories[7].sigmas == (.1, .1, .1)
    assert KeypointLayout(layout.to_meta()).flip_index == layout.flip_index
    assert layout.categories[7].edges == ((0, 2), (2, 1)) and layout.categories[2].edges == ((0, 1),)
    assert KeypointLayout(layout.to_meta()).categories == layout.categories
    with pytest.raises(DataError, match="category 1 has skeleton outside 1..2"):
        KeypointLayout([{"id": 1, "keypoints": ["a", "b"], "skeleton": [[1, 3]]}])
    with pytest.raises(DataError, match="category 1 has a flip_pairs that is not a list of pairs"):
        KeypointLayout([{"id": 1, "keypoints": ["a", "b"], "flip_pairs": [1, 2]}])
    with pytest.raises(DataError, match="2 kpt_sigmas for 3 keypoints"):
        KeypointLayout([{"id": 1, "keypoints": ["a", "b", "c"], "kpt_sigmas": [1, 2]}])
    with pytest.raises(DataError, match="no category has 'keypoints'"):
        KeypointLayout([{"id": 1, "name": "x"}])


def test_box_padded_to_aspect_and_enlarged() -> None:
    center, size = box_to_center_size([10, 20, 30, 20], aspect=0.75)
    assert np.allclose(center, [25, 30]) and np.allclose(size, [30 * 1.25, 40 * 1.25])
    center, size = box_to_center_size([0, 0, 6, 40], aspect=0.75)
    assert np.allclose(size, [30 * 1.25, 40 * 1.25])


def test_crop_transform_maps_the_box_onto_the_crop_and_back() -> None:
    center, size = np.array([50.0, 40.0]), np.array([30.0, 40.0])
    for rotation in (0.0, 30.0):
        m = crop_transform(center, size, (64, 48), rotation)
        assert np.allclose(apply_affine(center[None], m), [[24, 32]])
        inv = crop_transform(center, size, (64, 48), rotation, inverse=True)
        pts = np.array([[3.0, 7.0], [40.0, 60.0]])
        assert np.allclose(apply_affine(apply_affine(pts, m), inv), pts, atol=1e-4)
    m = crop_transform(center, size, (64, 48))
    assert np.allclose(apply_affine(np.array([[35.0, 20.0], [65.0, 60.0]]), m), [[0, 0], [48, 64]])


def test_gaussian_targets() -> None:
    joints = np.array([[5.4, 7.6], [-10.0, 3.0], [11.0, 2.0]])
    target, weight = gaussian_targets(joints, np.array([True, True, False]), (16, 12), sigma=2)
    assert target.shape == (3, 16, 12)
    assert target[0, 8, 5] == 1.0 and np.unravel_index(target[0].argmax(), (16, 12)) == (8, 5)
    assert np.isclose(target[0, 8, 7], np.exp(-4 / 8))
    assert weight.tolist() == [1.0, 0.0, 0.0] and not target[1:].any()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, train=2, val=0, size=128, seed=3, progress=False)
    return root


def test_dataset_targets_follow_keypoints_and_flip_swaps_pairs(synth) -> None:
    instances, layout = load_keypoint_instances(synth / "annotations/instances_train.json", synth / "train")
    assert layout.num_joints == 3 + 4 + 5 + 4 + 4 and instances
    plain = TopDownDataset(instances, layout, input_size=(64, 48))
    flipped = TopDownDataset(instances, layout, input_size=(64, 48), augment=Augment(scale=0, rotation_prob=0,
                                                                                       flip=1.0))
    for i in range(min(len(instances), 6)):
        image, target, weight, index = plain[i]
        assert image.shape == (3, 64, 48) and target.shape == (20, 16, 12) and index == i
        cat = layout.categories[instances[i].category_id]
        outside = np.ones(20, bool)
        outside[cat.channels] = False
        assert not weight[outside].any() and not target[outside].any()
        _, target_f, weight_f, _ = flipped[i]
        assert weight_f.tolist() == weight[layout.flip_index].tolist()
        for j in np.flatnonzero(weight.numpy()):
            y, x = np.unravel_index(int(target[j].argmax()), (16, 12))
            yf, xf = np.unravel_index(int(target_f[layout.flip_index[j]].argmax()), (16, 12))
            assert yf == y and abs((11 - xf) - x) <= 1


@pytest.fixture(scope="module")
def person(tmp_path_factory):
    return write_person_fixture(tmp_path_factory.mktemp("person"))


def test_coco_person_file_gets_flip_pairs_sigmas_and_skeleton_built_in(person) -> None:
    instances, layout = load_keypoint_instances(*person)
    cat = layout.categories[1]
    assert len(instances) == 2 and layout.num_joints == 17
    assert cat.flip_pairs == ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
    assert layout.flip_index == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    assert cat.sigmas == COCO_PERSON_SIGMAS and cat.sigmas[0] == pytest.approx(0.026)
    assert cat.edges == tuple((a - 1, b - 1) for a, b in COCO_PERSON_SKELETON) and (15, 13) in cat.edges
    meta = layout.to_meta()[0]
    assert meta["kpt_sigmas"] == list(COCO_PERSON_SIGMAS) and [16, 14] in meta["skeleton"]


def _half_body(joints: np.ndarray, aspect: float) -> tuple[np.ndarray, np.ndarray]:
    """The official half-body crop of these joints: their extent padded to the aspect ratio, ×1.5, centred at
    their mean."""
    w, h = np.ptp(joints, axis=0)
    w, h = (w, w / aspect) if w > aspect * h else (h * aspect, h)
    return joints.mean(0), np.array([w, h]) * 1.5


def test_half_body_crops_the_upper_or_the_lower_body_of_persons_with_more_than_8_joints(person) -> None:
    instances, layout = load_keypoint_instances(*person)
    no_other_change = {"scale": 0.0, "rotation_prob": 0.0, "flip": 0.0}
    always = TopDownDataset(instances, layout, input_size=(64, 48), augment=Augment(half_body=1.0, **no_other_change))
    joints = np.array(STANDING, float)
    crops = {"upper": _half_body(joints[:11], 0.75), "lower": _half_body(joints[11:], 0.75)}
    partial_box = box_to_center_size(instances[1].box, 0.75)
    seen = []
    for seed in range(30):
        center, size, rotation, flip = always.crop_geometry(0, np.random.default_rng(seed))
        seen += [n for n, (c, s) in crops.items() if np.allclose(center, c) and np.allclose(size, s)]
        assert len(seen) == seed + 1 and (rotation, flip) == (0.0, False)
        center, size, _, _ = always.crop_geometry(1, np.random.default_rng(seed))  # 5 labelled joints: its box
        assert np.allclose(center, partial_box[0]) and np.allclose(size, partial_box[1])
    assert 10 < seen.count("upper") < 30 and seen.count("lower") > 0  # upper when a normal draw is below 0.5
    never = TopDownDataset(instances, layout, input_size=(64, 48), augment=Augment(half_body=0.0, **no_other_change))
    center, size, _, _ = never.crop_geometry(0, np.random.default_rng(0))
    assert np.allclose(center, box_to_center_size(instances[0].box, 0.75)[0])

    def upper_body_drawn(seed: int) -> bool:  # the training sample of this torch seed gets an upper-body crop
        torch.manual_seed(seed)
        rng = np.random.default_rng(torch.randint(0, 2**31, ()).item())
        return np.allclose(always.crop_geometry(0, rng)[0], crops["upper"][0])

    torch.manual_seed(next(seed for seed in range(30) if upper_body_drawn(seed)))
    _, target, weight, _ = always[0]
    assert weight[:15].all() and not weight[15:].any()  # the ankles' Gaussians fall outside the crop
    assert target[:15].amax((1, 2)).min() > 0 and not target[15:].any()
