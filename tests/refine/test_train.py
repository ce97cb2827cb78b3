"""BPR training on the engine: loss, patch mIoU, a short run with validation, checkpoints and resume."""

from __future__ import annotations

import json

import pytest
import torch

from densevision.data.coco import read_json
from densevision.errors import DenseVisionError
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


def test_short_run_validates_checkpoints_and_resumes(patch_dir, tmp_path):
    run = tmp_path / "run"
    options = dict(model_args=TINY, input_size=32, batch_size=4, eval_every=2, checkpoint_every=2, num_workers=0,
                   device="cpu", progress=False, tensorboard=False, val_every_instance=4)
    first = train_refiner(patch_dir, run, iters=2, **options)
    assert first["iteration"] == 2 and set(first["metrics"]) == {"miou", "bg_iou", "fg_iou", "coarse_miou"}
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file() and (run / "metrics.json").is_file()
    with pytest.raises(DenseVisionError, match="already holds a training checkpoint"):
        train_refiner(patch_dir, run, iters=4, **options)
    second = train_refiner(patch_dir, run, iters=4, resume=True, **options)
    assert second["iteration"] == 4
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["config"]["bpr_model"]["overrides"]["width"] == 4 and state["config"]["patches"] == str(patch_dir)
    model = load_refine_net(run / "last.pt")
    assert model.patch_size == 16 and model.input_size == 32
    assert torch.equal(model.conv_mask.weight, state["model"]["conv_mask.weight"])
