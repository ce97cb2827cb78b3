"""End-to-end refinement of results lists with stub networks: merge semantics, batching, degenerate inputs,
errors."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from densevision.data.jsonio import read_json
from densevision.data.masks import annotation_to_mask
from densevision.errors import DataError, DenseVisionError
from densevision.refine.config import RefineRuleConfig
from densevision.refine.patches import propose_patches
from densevision.refine.pipeline import STAGES, refine_results

PLAIN = RefineRuleConfig(boxes="from-mask", min_area=0, margin=0.0)  # every instance, plain merge, boxes of masks


def identity(image, mask):
    return mask


def bright(image, mask):
    return image.mean(1) > 0.5


def mixed(image, mask):
    return torch.sigmoid(8 * image[:, 0] - 4 + mask.float())


@pytest.fixture
def square_scene(tmp_path, rle_of):
    """A 64×80 black image with a white 20×24 rectangle; the coarse mask is the rectangle shifted by 2 px."""
    image = np.zeros((64, 80, 3), np.uint8)
    image[20:40, 30:54] = 255
    Image.fromarray(image).save(tmp_path / "scene.png")
    truth = image[..., 0] > 0
    coarse = np.zeros_like(truth)
    coarse[22:42, 28:52] = True
    info = {"id": 5, "file_name": "scene.png", "height": 64, "width": 80}
    result = {"image_id": 5, "category_id": 3, "score": 0.7, "segmentation": rle_of(coarse),
              "bbox": [0, 0, 1, 1]}
    return tmp_path, info, result, truth


def test_identity_network_keeps_masks_scores_and_categories(synth, stub_net):
    data = read_json(synth["val"])
    coarse = json.loads((synth["root"] / "coarse_val.json").read_text())
    coarse[0]["segmentation"] = [[10, 10, 40, 12, 30, 40]]  # polygons are accepted too
    out = refine_results(data["images"], synth["root"] / "val", coarse, stub_net(identity), rule=PLAIN,
                         progress=False)
    assert len(out) == len(coarse)
    for r, c in zip(out, coarse, strict=True):
        assert (r["image_id"], r["category_id"], r["score"]) == (c["image_id"], c["category_id"], c["score"])
        h, w = r["segmentation"]["size"]
        expected = annotation_to_mask(c["segmentation"], h, w)
        assert np.array_equal(mask_utils.decode(r["segmentation"]), expected)
        assert r["bbox"] == mask_utils.toBbox(r["segmentation"]).tolist()


def test_refined_mask_follows_the_network_inside_patches(square_scene, stub_net):
    root, info, result, truth = square_scene
    stub = stub_net(bright, patch_size=32)
    out = refine_results([info], root, [result], stub, nms_iou=0.25, rule=PLAIN, progress=False)
    refined = mask_utils.decode(out[0]["segmentation"]).astype(bool)
    assert np.array_equal(refined, truth)
    assert out[0]["bbox"] == [30.0, 20.0, 24.0, 20.0]  # recomputed from the refined mask


def test_pixels_no_patch_covers_keep_the_coarse_mask(tmp_path, stub_net, rle_of):
    Image.fromarray(np.zeros((200, 200, 3), np.uint8)).save(tmp_path / "big.png")
    coarse = np.zeros((200, 200), bool)
    coarse[20:180, 20:180] = True
    info = {"id": 1, "file_name": "big.png", "height": 200, "width": 200}
    result = {"image_id": 1, "category_id": 1, "score": 1.0, "segmentation": rle_of(coarse)}
    stub = stub_net(lambda image, mask: torch.zeros_like(mask))
    out = refine_results([info], tmp_path, [result], stub, progress=False)
    refined = mask_utils.decode(out[0]["segmentation"]).astype(bool)
    boxes, _ = propose_patches(torch.from_numpy(coarse)[None], patch_size=16, nms_iou=0.25)
    covered = np.zeros_like(coarse)
    for x0, y0, x1, y1 in boxes.tolist():
        covered[y0:y1, x0:x1] = True
    assert covered.any() and not covered[40:160, 40:160].any()
    assert not refined[covered].any()  # every covered pixel takes the network's 0
    assert np.array_equal(refined[~covered], coarse[~covered])  # the rest keeps the coarse mask


def test_batch_size_and_chunking_do_not_change_the_result(synth, stub_net):
    data = read_json(synth["train"])
    coarse = json.loads((synth["root"] / "coarse_train.json").read_text())
    reference = refine_results(data["images"], synth["root"] / "train", coarse, stub_net(mixed), batch_size=1,
                               chunk=1, rule=PLAIN, progress=False)
    for batch_size, chunk in ((7, 2), (64, 16)):
        stub = stub_net(mixed)
        out = refine_results(data["images"], synth["root"] / "train", coarse, stub, batch_size=batch_size,
                             chunk=chunk, rule=PLAIN, progress=False)
        assert out == reference
        assert all(n == batch_size for n in stub.calls[:-1]) and 0 < stub.calls[-1] <= batch_size


def test_empty_results_and_stats(synth, stub_net):
    data = read_json(synth["val"])
    stats: dict[str, float] = {}
    stub = stub_net(identity)
    assert refine_results(data["images"], synth["root"] / "val", [], stub, progress=False, stats=stats) == []
    assert stub.calls == [] and set(stats) == set(STAGES)


def test_image_smaller_than_a_patch(tiny_coco, stub_net, rle_of):
    ann, root, data = tiny_coco  # 40×60 images
    mask = np.zeros((40, 60), np.uint8)
    mask[5:30, 10:50] = 1
    results = [{"image_id": 11, "category_id": 7, "score": 0.9, "segmentation": rle_of(mask)},
               {"image_id": 12, "category_id": 0, "score": 0.3, "segmentation": rle_of(mask[:, ::-1])}]
    stub = stub_net(lambda image, m: torch.ones_like(m), patch_size=64)
    out = refine_results(data["images"], root, results, stub, rule=PLAIN, progress=False)
    for r in out:
        assert r["segmentation"]["size"] == [40, 60]
        assert mask_utils.decode(r["segmentation"]).all()  # the one patch covers the whole image
    assert stub.calls == [2]  # one patch per instance


def test_instance_smaller_than_a_patch(square_scene, stub_net, rle_of):
    root, info, result, _ = square_scene
    tiny = np.zeros((64, 80), bool)
    tiny[30:32, 40:42] = True
    result = {**result, "segmentation": rle_of(tiny)}
    stub = stub_net(bright, patch_size=32)
    out = refine_results([info], root, [result], stub, rule=PLAIN, progress=False)
    refined = mask_utils.decode(out[0]["segmentation"]).astype(bool)
    assert stub.calls == [1]
    assert refined[30:32, 40:42].all() and refined.sum() > 4  # the patch saw part of the white rectangle


def test_boxes_and_scores_are_the_detectors_by_default(square_scene, stub_net):
    root, info, result, truth = square_scene
    rule = RefineRuleConfig(min_area=0)  # the 20×24 square is below the default minimum
    out = refine_results([info], root, [result], stub_net(bright, patch_size=32), rule=rule, progress=False)
    assert np.array_equal(mask_utils.decode(out[0]["segmentation"]).astype(bool), truth)
    assert (out[0]["bbox"], out[0]["score"]) == ([0.0, 0.0, 1.0, 1.0], 0.7)


def test_by_default_instances_under_the_minimum_area_keep_their_mask_unseen(square_scene, stub_net, rle_of):
    root, info, result, _ = square_scene
    small = np.zeros((64, 80), bool)
    small[20:30, 30:40] = True  # 100 px < 48²
    stub = stub_net(bright, patch_size=32)
    out = refine_results([info], root, [{**result, "segmentation": rle_of(small)}], stub, progress=False)
    assert stub.calls == []
    assert np.array_equal(mask_utils.decode(out[0]["segmentation"]).astype(bool), small)


def test_low_scores_and_those_beyond_top_k_keep_their_coarse_mask_unseen(square_scene, stub_net):
    root, info, result, truth = square_scene
    coarse = mask_utils.decode(result["segmentation"]).astype(bool)
    polygon = [[28, 22, 52, 22, 52, 42, 28, 42]]  # the coarse rectangle as a polygon
    results = [{**result, "score": 0.7}, {**result, "score": 0.9}, {**result, "score": 0.3},
               {**result, "score": 0.8, "segmentation": polygon}]
    stub = stub_net(bright, patch_size=32)
    counts: Counter[str] = Counter()
    out = refine_results([info], root, results, stub, rule=RefineRuleConfig(score_thr=0.5, top_k=1, min_area=0),
                         progress=False, counts=counts)
    masks = [mask_utils.decode(r["segmentation"]).astype(bool) for r in out]
    assert np.array_equal(masks[1], truth)  # the only one refined
    assert all(np.array_equal(m, coarse) for m in (masks[0], masks[2]))
    assert masks[3].sum() > 0 and not np.array_equal(masks[3], truth)
    assert [(r["score"], r["bbox"]) for r in out] == [(r["score"], [0.0, 0.0, 1.0, 1.0]) for r in results]
    assert counts == Counter(refined=1, top_k=2, score=1)
    assert len(stub.calls) == 1
    json.dumps(out)  # the passed-through polygon is a JSON RLE like the others


def test_an_image_with_nothing_to_refine_is_not_read(square_scene, stub_net):
    root, info, result, _ = square_scene
    absent = {**info, "id": 6, "file_name": "absent.png"}
    out = refine_results([info, absent], root, [{**result, "image_id": 6, "score": 0.1}], stub_net(identity),
                         rule=RefineRuleConfig(score_thr=0.5), progress=False)
    assert out[0]["segmentation"] == result["segmentation"]


def test_pixels_within_the_margin_keep_their_coarse_value(square_scene, stub_net):
    root, info, result, _ = square_scene
    coarse = mask_utils.decode(result["segmentation"]).astype(bool)
    unsure = stub_net(lambda image, mask: torch.full(mask.shape, 0.55), patch_size=32)
    kept = refine_results([info], root, [result], unsure, rule=RefineRuleConfig(min_area=0), progress=False)
    assert np.array_equal(mask_utils.decode(kept[0]["segmentation"]).astype(bool), coarse)
    taken = refine_results([info], root, [result], unsure, rule=RefineRuleConfig(min_area=0, margin=0.0),
                           progress=False)
    assert mask_utils.decode(taken[0]["segmentation"]).sum() > coarse.sum()  # 0.55 > 0.5: covered pixels join


@pytest.mark.parametrize("rule", [RefineRuleConfig(boxes="mask"), RefineRuleConfig(min_area=-1),
                                  RefineRuleConfig(margin=0.7), RefineRuleConfig(top_k=0)])
def test_a_bad_rule_is_refused(square_scene, stub_net, rule):
    root, info, result, _ = square_scene
    with pytest.raises(DenseVisionError):
        refine_results([info], root, [result], stub_net(identity), rule=rule, progress=False)


@pytest.mark.parametrize("change,message", [
    (lambda r: r.update(image_id=99), "image_id 99"),
    (lambda r: r["segmentation"].update(size=[10, 10]), "does not match"),
    (lambda r: r.pop("segmentation"), "no result has a 'segmentation'.*without a mask head"),
    (lambda r: r.update(score=float("nan")), "score"),
])
def test_bad_results_name_the_problem(square_scene, stub_net, change, message):
    root, info, result, _ = square_scene
    change(result)
    with pytest.raises(DataError, match=message):
        refine_results([info], root, [result], stub_net(identity), progress=False)


def test_one_result_without_a_mask_is_named(square_scene, stub_net):
    root, info, result, _ = square_scene
    boxes_only = {k: v for k, v in result.items() if k != "segmentation"}
    with pytest.raises(DataError, match=r"result 1: missing key 'segmentation'$"):
        refine_results([info], root, [result, boxes_only], stub_net(identity), progress=False)


def test_bad_images_name_the_problem(square_scene, stub_net, rle_of):
    root, info, result, _ = square_scene
    with pytest.raises(DataError, match=rf"^ann.json: image id {info['id']}: image file .*nope.png not found$"):
        refine_results([{**info, "file_name": "nope.png"}], root, [result], stub_net(identity), rule=PLAIN,
                       progress=False, source="ann.json")
    with pytest.raises(DataError, match="the json says 70x64"):
        refine_results([{**info, "width": 70}], root, [{**result, "segmentation": rle_of(np.ones((64, 70)))}],
                       stub_net(identity), progress=False)
    with pytest.raises(DataError, match="height"):
        refine_results([{"id": 1, "file_name": "x.png"}], root, [], stub_net(identity), progress=False)


@pytest.mark.parametrize("name", ["../outside.png", "ABS", "link.png"])
def test_image_paths_must_stay_inside_the_root(square_scene, stub_net, name):
    scene, info, result, _ = square_scene
    root = scene / "root"
    root.mkdir()
    outside = scene / "outside.png"
    outside.write_bytes((scene / info["file_name"]).read_bytes())
    (root / "link.png").symlink_to(outside)
    name = str(outside) if name == "ABS" else name
    with pytest.raises(DataError, match=rf"^images: image id {info['id']}: file_name .* (escapes|is an absolute)"):
        refine_results([{**info, "file_name": name}], root, [result], stub_net(identity), progress=False)
