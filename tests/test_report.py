"""The demo report's tables and boundary close-ups (where the crop goes, what is drawn on it)."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_rgb
from PIL import Image
from pycocotools import mask as mask_utils

from densevision.report import Closeup, boundary_closeups, closeup_window, draw_closeup, gain_table


def test_gain_table_shows_differences_to_the_base_row_and_undefined_values():
    rows = {"coarse": {"segm": {"AP": 30.0, "APs": None}, "boundary": {"AP": 20.0, "APs": 10.0}},
            "refined": {"segm": {"AP": 31.5, "APs": None}, "boundary": {"AP": 19.75, "APs": 10.0}}}
    lines = gain_table(rows, ("segm", "boundary"), ("AP", "APs")).splitlines()
    assert lines[0] == "| | segm AP | segm APs | Boundary AP | Boundary APs |"
    assert lines[1] == "|---|---:|---:|---:|---:|"
    assert lines[2] == "| coarse | 30.00 | - | 20.00 | 10.00 |"
    assert lines[3] == "| refined | 31.50 (+1.50) | - | 19.75 (-0.25) | 10.00 (+0.00) |"


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {**rle, "counts": rle["counts"].decode()}


def _square(size: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_closeup_window_holds_the_largest_change_not_the_median_of_the_changes():
    coarse = _square(100, 20, 80, 20, 80)
    refined = coarse.copy()
    refined[20:80, 20:22] = False  # the left and right edges move: their median lies inside the square,
    refined[20:80, 80:83] = True  # where a crop shows no contour at all
    y0, x0, changed = closeup_window(coarse, refined, 30)
    assert changed == 90 and x0 <= 80 and x0 + 30 >= 83  # 30 rows of the 3-pixel strip on the right
    window = (slice(y0, y0 + 30), slice(x0, x0 + 30))
    assert (coarse[window] != refined[window]).sum() == changed
    assert closeup_window(coarse[:10, :10], refined[:10, :10], 30) == (0, 0, 0)  # the crop is clipped


def test_boundary_closeups_show_true_detections_where_refinement_changed_most(tmp_path):
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / "a.png")
    gt_mask = _square(100, 20, 80, 20, 80)
    gt = {"images": [{"id": 1, "file_name": "a.png", "height": 100, "width": 100}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": _rle(gt_mask),
                           "iscrowd": 0}],
          "categories": [{"id": 1, "name": "square"}]}
    better = gt_mask.copy()
    better[20:80, 76:80] = False  # coarse misses a strip that refinement restores
    false_positive = _square(100, 85, 100, 0, 100)  # IoU 0 with the ground truth: not shown
    coarse = [{"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": _rle(m)}
              for m in (better, false_positive)]
    refined = [{**coarse[0], "segmentation": _rle(gt_mask)}, {**coarse[1], "segmentation": _rle(~false_positive)}]
    [closeup] = boundary_closeups(gt, tmp_path, coarse, refined, crop=40)
    assert closeup.title == "image 1: 160 px changed, +160 px correct"  # 40 rows of the 4-pixel strip
    assert closeup.image.shape == (40, 40, 3)
    assert (closeup.masks["refined"] == closeup.masks["ground truth"]).all()
    assert (closeup.masks["coarse"] != closeup.masks["refined"]).sum() == 160


def test_closeup_draws_the_ground_truth_last_dashed_with_a_legend():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    masks = {"coarse": _square(20, 4, 12, 4, 12), "refined": _square(20, 4, 14, 4, 14),
             "ground truth": _square(20, 4, 14, 4, 14)}
    draw_closeup(ax, Closeup(image_id=3, image=np.zeros((20, 20, 3), np.uint8), masks=masks, changed=36, gain=36))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["coarse", "refined", "ground truth"]
    contours = ax.collections
    assert len(contours) == 3
    last = contours[-1]
    assert tuple(np.round(last.get_edgecolor()[0][:3], 3)) == tuple(np.round(to_rgb("#00e640"), 3))
    assert last.get_linestyle()[0][1] is not None  # dashed: the refined line under it shows between dashes
    assert contours[1].get_linestyle()[0][1] is None
