"""The pose loss and the ability of a tiny network to fit a batch of synthetic crops."""

from __future__ import annotations

import torch

from densevision.data.keypoints import TopDownDataset, load_keypoint_instances
from densevision.data.synthetic import generate
from densevision.pose.model import build_pose_model
from densevision.pose.predict import decode_heatmaps
from densevision.pose.train import heatmap_loss
from tests.pose.conftest import TINY_POSE_HRNET


def test_heatmap_loss_is_half_the_weighted_mse() -> None:
    pred, target = torch.rand(2, 3, 4, 5), torch.rand(2, 3, 4, 5)
    weight = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    expected = 0.5 * sum(((pred[b, k] - target[b, k]) ** 2).mean() * weight[b, k] for b in range(2)
                         for k in range(3)) / 6
    assert torch.isclose(heatmap_loss(pred, target, weight), expected)
    assert heatmap_loss(pred, target, torch.zeros(2, 3)) == 0


def test_tiny_network_fits_a_batch(tmp_path) -> None:
    torch.manual_seed(0)
    paths = generate(tmp_path, train=2, val=0, size=128, seed=1, progress=False)
    instances, layout = load_keypoint_instances(paths["train"], tmp_path / "train")
    dataset = TopDownDataset(instances[:8], layout, input_size=(64, 48))
    images, target, weight = (torch.stack([dataset[i][k] for i in range(len(dataset))]) for k in range(3))
    model = build_pose_model(num_joints=layout.num_joints, input_size=(64, 48), model="pose_hrnet_w32",
                             overrides=TINY_POSE_HRNET)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(60):
        loss = heatmap_loss(model(images), target, weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        coords, _ = decode_heatmaps(model.eval()(images))
    expected, _ = decode_heatmaps(target)
    error = (coords - expected).norm(dim=-1)[weight > 0]
    assert error.median() < 1.5  # heatmap pixels; an untrained network is several pixels off
