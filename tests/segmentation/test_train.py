"""The segmentation task's loss, optimizer groups and schedule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from densevision.segmentation.config import SegTrainConfig
from densevision.segmentation.model import build_segmenter
from densevision.segmentation.train import SegTask, masked_cross_entropy, ohem_mask


def test_masked_cross_entropy_ignores_255_and_is_zero_without_labels():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    labels = torch.randint(0, 3, (2, 4, 4))
    labels[0, :2] = 255
    torch.testing.assert_close(masked_cross_entropy(logits, labels, 255),
                               F.cross_entropy(logits, labels, ignore_index=255))
    empty = masked_cross_entropy(logits, torch.full((2, 4, 4), 255), 255)
    assert float(empty.detach()) == 0.0
    empty.backward()


def _true_class_logits(probs: list[list[float]], labels: torch.Tensor) -> torch.Tensor:
    """``1×2×H×W`` logits whose softmax gives each pixel's label the probability in ``probs``."""
    p = torch.tensor(probs)
    true = torch.where(labels[0] == 1, p, 1 - p)
    return torch.stack([(1 - true).log(), true.log()])[None]


def test_ohem_keeps_pixels_below_the_threshold_or_the_min_kept_hardest():
    labels = torch.tensor([[[1, 0, 1], [0, 1, 255]]])
    probs = [[0.1, 0.5, 0.69], [0.71, 0.9, 0.2]]  # the ignored pixel's 0.2 must never count
    logits = _true_class_logits(probs, labels)
    truth = torch.tensor(probs)[None]
    labelled = labels != 255
    true = logits.softmax(1).gather(1, labels.clamp(max=1)[:, None])[:, 0]
    torch.testing.assert_close(true[labelled], truth[labelled])

    def kept(**kwargs) -> list[float]:
        return sorted(truth[ohem_mask(logits, labels, 255, **kwargs)].tolist())

    assert kept(thresh=0.7, min_kept=1) == pytest.approx([0.1, 0.5, 0.69])  # p_1 = 0.5 < 0.7
    assert kept(thresh=0.7, min_kept=4) == pytest.approx([0.1, 0.5, 0.69, 0.71])  # raised to p_4 = 0.9, exclusive
    assert kept(thresh=0.7, min_kept=100_000) == kept(thresh=0.7, min_kept=4)  # k clipped to n - 1
    assert kept(thresh=0.05, min_kept=0) == []
    two = ohem_mask(logits.expand(2, -1, -1, -1), labels.expand(2, -1, -1), 255, thresh=0.7, min_kept=2)
    assert int(two.sum()) == 6  # k = 2 images x 2: p_4 of the 10 labelled is 0.69, the threshold stays 0.7
    assert not ohem_mask(logits, torch.full_like(labels, 255), 255).any()


def test_ohem_loss_sums_the_kept_pixels_over_all_labelled_ones():
    labels = torch.tensor([[[1, 0, 1], [0, 1, 255]]])
    probs = [[0.1, 0.5, 0.69], [0.71, 0.9, 0.2]]
    logits = _true_class_logits(probs, labels).requires_grad_()
    keep = ohem_mask(logits, labels, 255, thresh=0.7, min_kept=1)
    loss = masked_cross_entropy(logits, labels, 255, keep=keep)
    expected = -(torch.log(torch.tensor([0.1, 0.5, 0.69]))).sum() / 5
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad[0, :, 1, 0].abs().sum() == 0 and logits.grad[0, :, 0, 0].abs().sum() > 0

    config = SegTrainConfig()
    config.loss.ohem, config.loss.ohem_min_kept = True, 1
    task = SegTask(config)
    losses = task.loss(lambda images, return_aux: {"seg": logits}, (torch.zeros(1, 3, 2, 3), labels))
    torch.testing.assert_close(losses["loss_seg"], expected)
    config.loss.ohem = False
    plain = SegTask(config).loss(lambda images, return_aux: {"seg": logits}, (torch.zeros(1, 3, 2, 3), labels))
    torch.testing.assert_close(plain["loss_seg"], F.cross_entropy(logits, labels, ignore_index=255))


def test_negative_ohem_min_kept_is_a_one_line_error():
    from densevision.errors import DenseVisionError

    config = SegTrainConfig()
    config.loss.ohem_min_kept = -1
    with pytest.raises(DenseVisionError, match="--ohem-min-kept -1"):
        SegTask(config)


def test_loss_has_the_weighted_auxiliary_term_and_adamw_skips_norms_and_position_tables():
    config = SegTrainConfig()
    config.train.iters, config.train.warmup_iters = 10, 4
    task = SegTask(config)
    torch.manual_seed(0)
    model = build_segmenter("swin_tiny_patch4_window7_224", "upernet", 3, channels=8, aux_channels=8,
                            backbone_kwargs={"embed_dim": 12, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)})
    losses = task.loss(model, (torch.rand(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))))
    assert set(losses) == {"loss_seg", "loss_aux"}
    assert float(losses["loss_aux"].detach()) == pytest.approx(0.4 * 1.0986, rel=0.2)  # 0.4 x about ln 3 at init
    optimizer, scheduler = task.build_optimizer(model)
    assert isinstance(optimizer, torch.optim.AdamW)
    no_decay = {id(p) for g in optimizer.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    tables = [p for n, p in model.named_parameters() if n.endswith("relative_position_bias_table")]
    assert tables and all(id(p) in no_decay for p in tables)
    assert all(id(p) in no_decay for n, p in model.named_parameters() if ".norm" in n or n.endswith(".bias"))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(6e-5 * 1e-6)  # warm-up starts at 1e-6x
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(6e-5 * (1 - 4 / 10))  # then poly, power 1
    assert task.sync_bn


def test_upernet_at_batch_size_one_is_a_one_line_error_before_any_data_is_read(tmp_path):
    from densevision.errors import DenseVisionError

    config = SegTrainConfig()
    config.data.train_images, config.data.train_labels = str(tmp_path / "missing"), str(tmp_path / "missing")
    config.data.classes = str(tmp_path / "missing.json")
    config.train.batch_size = 1
    with pytest.raises(DenseVisionError, match="--batch-size 1 with --head upernet") as info:
        SegTask(config).build_train_data()
    assert "\n" not in str(info.value)
    config.model.head = "fpn"
    with pytest.raises(Exception) as other:  # any other head gets as far as reading the data
        SegTask(config).build_train_data()
    assert "--batch-size" not in str(other.value)


def test_train_data_of_a_format_brings_its_classes_and_validation_split(tiny_coco):
    from densevision.errors import DenseVisionError

    ann, root, _ = tiny_coco
    config = SegTrainConfig()
    config.model.head = "fpn"
    config.data.format = "coco"
    config.data.train_json = config.data.val_json = str(ann)
    config.data.train_images = config.data.val_images = str(root)
    task = SegTask(config)
    train_set = task.build_train_data()
    assert task.classes == ["background", "zero", "seven"] and len(train_set) == len(task.val_set) == 3
    image, label = task.val_set[1]
    assert image.shape == (3, 40, 60) and label[10, 40] == 2 and label[30, 5] == 255
    config.data.train_json = config.data.train_images = None
    with pytest.raises(DenseVisionError, match="training data needed: --format coco --train-json FILE"):
        SegTask(config).build_train_data()


def test_validation_runs_at_val_size_and_scores_at_the_label_size(monkeypatch):
    from densevision.data.labelmaps import LabelMapDataset

    torch.manual_seed(0)
    model = build_segmenter("hrnet_w18_small", "fpn", 3, channels=8, fpn_channels=8,
                            backbone_kwargs={"width": 8}).eval()
    seen = []
    monkeypatch.setattr(model, "forward", lambda images: seen.append(images.shape[-2:]) or
                        torch.zeros(1, 3, *images.shape[-2:]))
    config = SegTrainConfig()
    config.data.val_size = 32
    task = SegTask(config)
    task.classes = ["a", "b", "c"]
    task.val_set = LabelMapDataset([], 3)
    monkeypatch.setattr(LabelMapDataset, "__len__", lambda self: 1)
    monkeypatch.setattr(LabelMapDataset, "__getitem__", lambda self, i: (torch.rand(3, 48, 64),
                                                                      torch.zeros(48, 64, dtype=torch.int64)))
    metrics = task.build_evaluator(None, torch.device("cpu"))(model)
    assert seen == [(24, 32)]
    assert metrics["aAcc"] == 100.0
