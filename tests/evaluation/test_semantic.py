"""mIoU / aAcc / mAcc with mmsegmentation's definitions: hand-made cases, a plain-loop reference, torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from densevision.evaluation.semantic import SemanticEvaluator, format_table


def _mmseg_reference(pairs, k, ignore=255):
    """mmsegmentation's intersect_and_union summed over images, with nan-means (a plain loop)."""
    inter, area_pred, area_label = np.zeros(k), np.zeros(k), np.zeros(k)
    for pred, label in pairs:
        keep = label != ignore
        p, lab = pred[keep], label[keep]
        for c in range(k):
            inter[c] += np.sum((p == c) & (lab == c))
            area_pred[c] += np.sum(p == c)
            area_label[c] += np.sum(lab == c)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / (area_pred + area_label - inter)
        acc = inter / area_label
    return 100 * inter.sum() / area_label.sum(), 100 * iou, 100 * acc


def test_hand_made_case_with_ignore_and_absent_classes():
    ev = SemanticEvaluator(["a", "b", "c", "d"])
    label = torch.tensor([[0, 0, 1, 255], [0, 1, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 3], [0, 1, 2, 2]])
    ev.update(pred, label)
    out = ev.results()
    # a: I 2, L 3, P 2 -> IoU 2/3; b: I 2, L 3, P 3 -> IoU 2/4; c: predicted once on a b pixel, no label -> 0;
    # d: predicted only on an ignored pixel -> absent from both -> None
    assert out["per_class"]["a"] == {"IoU": pytest.approx(200 / 3), "Acc": pytest.approx(200 / 3)}
    assert out["per_class"]["b"] == {"IoU": pytest.approx(50.0), "Acc": pytest.approx(200 / 3)}
    assert out["per_class"]["c"] == {"IoU": 0.0, "Acc": None}
    assert out["per_class"]["d"] == {"IoU": None, "Acc": None}
    assert out["mIoU"] == pytest.approx((200 / 3 + 50 + 0) / 3)
    assert out["mAcc"] == pytest.approx(200 / 3)
    assert out["aAcc"] == pytest.approx(400 / 6)
    assert set(ev.evaluate()) == {"mIoU", "aAcc", "mAcc"}
    assert "n/a" in format_table(out)


def test_accumulates_over_the_data_set_not_per_image():
    ev = SemanticEvaluator(["a", "b"])
    ev.update(torch.tensor([[0, 0]]), torch.tensor([[0, 0]]))
    ev.update(torch.tensor([[0, 0, 0, 0]]), torch.tensor([[1, 1, 1, 1]]))
    out = ev.results()
    assert out["per_class"]["a"]["IoU"] == pytest.approx(100 * 2 / 6)  # per-image mean would give 50
    assert out["per_class"]["b"]["IoU"] == 0.0


def test_out_of_range_predictions_count_in_no_class_and_bad_labels_are_refused():
    ev = SemanticEvaluator(["a", "b"])
    ev.update(torch.tensor([[7, 0]]), torch.tensor([[0, 0]]))
    assert ev.results()["per_class"]["a"] == {"IoU": 50.0, "Acc": 50.0}
    with pytest.raises(ValueError, match="outside the 2 classes"):
        ev.update(torch.tensor([[0]]), torch.tensor([[5]]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_the_plain_loop_and_torchmetrics(seed):
    g = torch.Generator().manual_seed(seed)
    k = 6
    pairs = []
    for _ in range(4):
        h, w = torch.randint(5, 20, (2,), generator=g).tolist()
        label = torch.randint(0, k - 1, (h, w), generator=g)  # class k-1 never labelled
        label[torch.rand(h, w, generator=g) < 0.2] = 255
        pred = torch.randint(0, k, (h, w), generator=g)
        pairs.append((pred, label))
    ev = SemanticEvaluator([str(c) for c in range(k)])
    jaccard = MulticlassJaccardIndex(k, average="none", ignore_index=255)
    for pred, label in pairs:
        ev.process((None, label[None]), torch.nn.functional.one_hot(pred, k).permute(2, 0, 1)[None].float())
        jaccard.update(pred, label)
    out = ev.results()
    a_acc, iou, acc = _mmseg_reference([(p.numpy(), lab.numpy()) for p, lab in pairs], k)
    got_iou = np.array([np.nan if m["IoU"] is None else m["IoU"] for m in out["per_class"].values()])
    got_acc = np.array([np.nan if m["Acc"] is None else m["Acc"] for m in out["per_class"].values()])
    np.testing.assert_allclose(got_iou, iou, equal_nan=True)
    np.testing.assert_allclose(got_acc, acc, equal_nan=True)
    assert out["aAcc"] == pytest.approx(a_acc)
    assert out["mIoU"] == pytest.approx(np.nanmean(iou))
    np.testing.assert_allclose(got_iou / 100, jaccard.compute().numpy(), rtol=1e-6)


def test_boundary_iou_per_class_sums_bands_over_the_data_set_and_skips_ignored_pixels():
    from densevision.evaluation.boundary import mask_to_boundary

    label = np.zeros((40, 40), np.int64)
    label[10:30, 10:30] = 1
    shifted = np.roll(label, 3, axis=1)
    ev = SemanticEvaluator(["bg", "square", "absent"], boundary_ratio=0.02)
    ev.update(torch.from_numpy(label), torch.from_numpy(label))
    ev.update(torch.from_numpy(shifted), torch.from_numpy(label))
    out = ev.results()
    expected = {}
    for c in (0, 1):
        gt, dt = mask_to_boundary(label == c, 0.02).astype(bool), mask_to_boundary(shifted == c, 0.02).astype(bool)
        inter = gt.sum() + (gt & dt).sum()  # the first pair matches exactly
        union = gt.sum() + (gt | dt).sum()
        expected[c] = 100 * inter / union
    assert out["per_class"]["square"]["BoundaryIoU"] == pytest.approx(expected[1])
    assert out["per_class"]["bg"]["BoundaryIoU"] == pytest.approx(expected[0])
    assert out["per_class"]["absent"]["BoundaryIoU"] is None
    assert out["boundary_mIoU"] == pytest.approx((expected[0] + expected[1]) / 2)
    assert 0 < expected[1] < 100
    ignored = label.copy()
    ignored[:, :20] = 255  # the left half of the ground truth is not labelled: its disagreements do not count
    ev = SemanticEvaluator(["bg", "square"], boundary_ratio=0.02)
    left_wrong = label.copy()
    left_wrong[:, :20] = 0
    ev.update(torch.from_numpy(left_wrong), torch.from_numpy(ignored))
    assert ev.results()["per_class"]["square"]["BoundaryIoU"] == 100.0
    assert "BIoU" in format_table(ev.results())
