"""Released segmentation checkpoints (mmsegmentation, HRNet-Semantic-Segmentation) load into segmenters key by key.

The checkpoints are made here from a densevision segmenter by renaming its tensors with a hand-written table of
the upstream names (written from the upstream module definitions, not from the converter under test).
"""

from __future__ import annotations

import re

import pytest
import torch

from densevision.errors import CheckpointError
from densevision.segmentation import build_segmenter

SWIN = {"embed_dim": 12, "depths": (2, 2, 2, 2), "num_heads": (1, 1, 1, 1), "window_size": 4}
HRNET = {"width": 8}

# densevision key prefix -> upstream key prefix ("{i}" / "{j}": module indices; "{i-1}": one less than i).
MMSEG_UPERNET = [
    ("decode_head.psp_modules.convs.{i}.0.", "decode_head.psp_modules.{i}.1.conv."),
    ("decode_head.psp_modules.convs.{i}.1.", "decode_head.psp_modules.{i}.1.bn."),
    ("decode_head.bottleneck.0.", "decode_head.bottleneck.conv."),
    ("decode_head.bottleneck.1.", "decode_head.bottleneck.bn."),
    ("decode_head.lateral_convs.{i}.0.", "decode_head.lateral_convs.{i}.conv."),
    ("decode_head.lateral_convs.{i}.1.", "decode_head.lateral_convs.{i}.bn."),
    ("decode_head.fpn_convs.{i}.0.", "decode_head.fpn_convs.{i}.conv."),
    ("decode_head.fpn_convs.{i}.1.", "decode_head.fpn_convs.{i}.bn."),
    ("decode_head.fpn_bottleneck.0.", "decode_head.fpn_bottleneck.conv."),
    ("decode_head.fpn_bottleneck.1.", "decode_head.fpn_bottleneck.bn."),
    ("decode_head.conv_seg.", "decode_head.conv_seg."),
    ("auxiliary_head.convs.0.", "auxiliary_head.convs.0.conv."),
    ("auxiliary_head.convs.1.", "auxiliary_head.convs.0.bn."),
    ("auxiliary_head.conv_seg.", "auxiliary_head.conv_seg."),
    # Swin-Transformer-Semantic-Segmentation: patch merging at the end of the stage before.
    ("backbone.layers.{i}.downsample.", "backbone.layers.{i-1}.downsample."),
    ("backbone.", "backbone."),
]
MMSEG_FPN = [
    ("decode_head.fpn.inner_blocks.{i}.0.", "neck.lateral_convs.{i}.conv."),
    ("decode_head.fpn.layer_blocks.{i}.0.", "neck.fpn_convs.{i}.conv."),
    ("decode_head.scale_heads.{i}.{j}.0.", "decode_head.scale_heads.{i}.{j}.conv."),
    ("decode_head.scale_heads.{i}.{j}.1.", "decode_head.scale_heads.{i}.{j}.bn."),
    ("decode_head.conv_seg.", "decode_head.conv_seg."),
    ("backbone.", "backbone."),
]
HRNET_SEG = [
    ("decode_head.last_layer.", "model.last_layer."),
    ("backbone.", "model."),
]


def _rename(key: str, table: list[tuple[str, str]]) -> str:
    for ours, theirs in table:
        pattern = re.escape(ours).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)")
        match = re.match(pattern, key)
        if match:
            index = {k: int(v) for k, v in match.groupdict().items()}
            if "i" in index:
                index["i-1"] = index["i"] - 1
            return theirs.format_map(index) + key[match.end():]
    raise AssertionError(f"no upstream name for {key}")


def _randomise_norm_statistics(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.num_batches_tracked.fill_(7)


def _upstream(model: torch.nn.Module, table: list[tuple[str, str]], buffers: bool = False) -> dict:
    """``model``'s state dict under upstream names; with ``buffers`` also the persistent index buffers upstream
    Swin keeps (densevision rebuilds them)."""
    state = {_rename(k, table): v.clone() for k, v in model.state_dict().items()}
    if buffers:
        state.update({_rename(k, table): v.clone() for k, v in model.named_buffers()
                      if k.endswith("relative_position_index")})
    return state


def _source(head: str, backbone: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_segmenter(backbone, head, 5, **kwargs)
    _randomise_norm_statistics(model)
    return model.eval()


def _check_loads(tmp_path, source: torch.nn.Module, checkpoint: dict, backbone: str, head: str, **kwargs) -> None:
    path = tmp_path / "upstream.pth"
    torch.save(checkpoint, path)
    torch.manual_seed(1)
    loaded = build_segmenter(backbone, head, 5, weights=path, **kwargs).eval()
    image = torch.rand(1, 3, 64, 80)
    torch.testing.assert_close(loaded(image), source(image), rtol=0, atol=0)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


UPERNET = {"channels": 16, "aux_channels": 8, "backbone_kwargs": SWIN}


def test_mmseg_upernet_on_swin_loads_with_equal_outputs(tmp_path):
    source = _source("upernet", "swin_tiny_patch4_window7_224", **UPERNET)
    state = _upstream(source, MMSEG_UPERNET, buffers=True)
    assert "backbone.layers.0.downsample.reduction.weight" in state
    assert "decode_head.psp_modules.3.1.bn.running_var" in state
    checkpoint = {"meta": {"CLASSES": ["a", "b", "c", "d", "e"], "iter": 160000}, "state_dict": state,
                  "optimizer": {"state": {}, "param_groups": []}}
    _check_loads(tmp_path, source, checkpoint, "swin_tiny_patch4_window7_224", "upernet", **UPERNET)


def test_mmseg_semantic_fpn_loads_with_equal_outputs(tmp_path):
    kwargs = {"channels": 8, "fpn_channels": 8, "backbone_kwargs": HRNET}
    source = _source("fpn", "hrnet_w18_small", **kwargs)
    _check_loads(tmp_path, source, {"state_dict": _upstream(source, MMSEG_FPN)}, "hrnet_w18_small", "fpn", **kwargs)


@pytest.mark.parametrize("full_model", [True, False])
def test_hrnet_semantic_segmentation_loads_with_equal_outputs(tmp_path, full_model):
    """``FullModel`` (``model.*`` plus the criterion's class weights ``loss.*``) or the bare network."""
    source = _source("hrnetv2", "hrnet_w18_small", backbone_kwargs=HRNET)
    state = _upstream(source, HRNET_SEG)
    assert "model.last_layer.3.weight" in state and "model.stage4.0.fuse_layers.3.2.0.1.weight" in state
    if full_model:
        state["loss.criterion.weight"] = torch.rand(5)
    else:
        state = {k.removeprefix("model."): v for k, v in state.items()}
    _check_loads(tmp_path, source, state, "hrnet_w18_small", "hrnetv2", backbone_kwargs=HRNET)


def test_what_does_not_fit_is_listed_in_one_error(tmp_path):
    source = _source("upernet", "swin_tiny_patch4_window7_224", **UPERNET)
    state = _upstream(source, MMSEG_UPERNET, buffers=True)
    del state["decode_head.fpn_bottleneck.bn.running_var"]
    del state["backbone.norm0.weight"]  # an ImageNet checkpoint may lack the output norms; a segmenter may not
    state["auxiliary_head.convs.1.conv.weight"] = torch.zeros(8, 8, 3, 3)  # FCNHead with two convs
    state["decode_head.extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "upstream.pth")
    with pytest.raises(CheckpointError) as info:
        build_segmenter("swin_tiny_patch4_window7_224", "upernet", 5, weights=tmp_path / "upstream.pth", **UPERNET)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "upstream.pth") in message
    assert "missing keys: backbone.norm0.weight, decode_head.fpn_bottleneck.1.running_var;" in message
    assert "unexpected keys: auxiliary_head.convs.1.conv.weight, decode_head.extra.weight" in message

    with pytest.raises(CheckpointError, match=r"shape mismatch: auxiliary_head.conv_seg.bias: checkpoint \(5,\) "
                                              r"vs model \(6,\)"):
        build_segmenter("swin_tiny_patch4_window7_224", "upernet", 6, weights=tmp_path / "upstream.pth", **UPERNET)


def test_a_backbone_checkpoint_still_initialises_the_backbone_only(tmp_path):
    donor = _source("fpn", "hrnet_w18_small", channels=8, fpn_channels=8, backbone_kwargs=HRNET)
    torch.save(donor.backbone.state_dict(), tmp_path / "hrnet.pth")
    model = build_segmenter("hrnet_w18_small", "fpn", 3, weights=tmp_path / "hrnet.pth", channels=8,
                            fpn_channels=8, backbone_kwargs=HRNET)
    for key, value in donor.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
