"""BPR training on the engine: loss, patch mIoU, a short run with validation, checkpoints and resume."""

from __future__ import annotations

import json

import pytest
import torch

from densevision.data.jsonio import read_json
from densevision.engine import TrainConfig
from densevision.errors import DenseVisionError
from densevision.refine.config import RefineDataConfig, RefineNetConfig, RefineTrainConfig
from densevision.refine.dataset import PatchDataset, build_patch_dataset
from densevision.refine.network import build_refine_net, load_refine_net
from densevision.refine.train import patch_miou, refine_loss, train_refiner

TINY = {"width": 4, "stage1_blocks": 1, "stage1_planes": 8, "num_modules": [1, 1, 1], "num_blocks": [1, 1, 1],
        "stem_width": 8}


@pytest.fixture(scope="module")
def patch_dir(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("bpr_train") / "patches"
    results = json.loads((synth["root"] / "coarse_train.json").read_text())
    build_patch_dataset(read_json(synth["train"]), synth["root"] / "train", results, out, patch_size=16,
                        progress=False)
    return out


class CopyCoarse(torch.nn.Module):
    def predict(self, image, mask):
        return mask.float()


class CopyTruth(torch.nn.Module):
    def __init__(self, dataset):
        super().__init__()
        self.truth = {tuple(dataset[i][1].flatten().tolist()): dataset[i][2] for i in range(len(dataset))}

    def predict(self, image, mask):
        return torch.stack([self.truth[tuple(m.flatten().tolist())] for m in mask]).float()


def test_patch_miou_of_copies(patch_dir):
    val = PatchDataset(patch_dir)
    coarse = patch_miou(CopyCoarse(), val, batch_size=5)
    assert coarse["miou"] == pytest.approx(coarse["coarse_miou"])
    assert 50 < coarse["coarse_miou"] < 100
    assert coarse["miou"] == pytest.approx((coarse["bg_iou"] + coarse["fg_iou"]) / 2)
    perfect = patch_miou(CopyTruth(val), val, batch_size=7)
    assert perfect["miou"] == pytest.approx(100.0) and perfect["coarse_miou"] == pytest.approx(coarse["coarse_miou"])


def test_loss_is_cross_entropy_at_patch_size(patch_dir):
    torch.manual_seed(0)
    model = build_refine_net(input_size=32, patch_size=16, **TINY)
    image, coarse, gt = (torch.stack(t) for t in zip(*[PatchDataset(patch_dir)[i] for i in range(3)], strict=True))
    loss = refine_loss(model, (image, coarse, gt))["loss_ce"]
    logits = model(image, coarse, size=16)
    assert logits.shape == (3, 2, 16, 16)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, gt).item(), rel=1e-5)
    loss.backward()
    assert model.conv_mask.weight.grad.abs().sum() > 0


def _config(patch_dir, **train) -> RefineTrainConfig:
    options = {"batch_size": 4, "eval_every": 2, "checkpoint_every": 2, "workers": 0, "tensorboard": False, **train}
    return RefineTrainConfig(data=RefineDataConfig(patches=str(patch_dir), val_every_instance=4),
                             model=RefineNetConfig(input_size=32, overrides=dict(TINY)),
                             train=TrainConfig(**{**RefineTrainConfig().train.__dict__, **options}))


def test_short_run_validates_checkpoints_and_resumes(patch_dir, tmp_path):
    run = tmp_path / "run"
    first = train_refiner(_config(patch_dir, iters=4), run, device="cpu", progress=False)
    assert first["iteration"] == 4 and set(first["metrics"]) == {"miou", "bg_iou", "fg_iou", "coarse_miou"}
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file() and (run / "metrics.json").is_file()
    with pytest.raises(DenseVisionError, match="already holds a training checkpoint"):
        train_refiner(_config(patch_dir, iters=4), run, device="cpu", progress=False)
    straight = torch.load(run / "last.pt", weights_only=True)
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    (resumed_dir / "last.pt").write_bytes((run / "iter_0000002.pt").read_bytes())
    second = train_refiner(_config(patch_dir, iters=4, workers=1), resumed_dir, device="cpu", resume=True,
                           progress=False)
    assert second["iteration"] == 4
    state = torch.load(resumed_dir / "last.pt", weights_only=True)
    assert all(torch.equal(state["model"][k], straight["model"][k]) for k in straight["model"])
    assert state["model_spec"]["builder"] == "refine_net"
    assert state["model_spec"]["config"]["overrides"]["width"] == 4
    assert state["config"]["data"]["patches"] == str(patch_dir)
    model = load_refine_net(resumed_dir / "last.pt")
    assert model.patch_size == 16 and model.input_size == 32
    assert torch.equal(model.conv_mask.weight, state["model"]["conv_mask.weight"])
