"""HRNetV2p neck: pyramid shapes at odd sizes, equality with mmdetection's HRFPN formulation where sizes divide,
mmdetection key conversion, and gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from densevision import create_model
from densevision.detection.necks import HRNetV2pNeck

W18_CHANNELS = [18, 36, 72, 144]


def branches(h: int, w: int, channels: list[int], batch: int = 1) -> list[torch.Tensor]:
    """Random maps sized as HRNet's branches for an ``h×w`` image."""
    side = (math.ceil(h / 4), math.ceil(w / 4))
    out = []
    for c in channels:
        out.append(torch.randn(batch, c, *side))
        side = (math.ceil(side[0] / 2), math.ceil(side[1] / 2))
    return out


def hrfpn_reference(neck: HRNetV2pNeck, feats: list[torch.Tensor]) -> list[torch.Tensor]:
    """mmdetection ``HRFPN.forward``: upsample by scale factors, concatenate, 1×1 conv, floor average pooling."""
    ups = [feats[0]] + [F.interpolate(f, scale_factor=2**i, mode="bilinear") for i, f in enumerate(feats) if i]
    x = neck.reduction_conv(torch.cat(ups, dim=1))
    levels = [x] + [F.avg_pool2d(x, kernel_size=2**i, stride=2**i) for i in range(1, 5)]
    return [conv(level) for conv, level in zip(neck.fpn_convs, levels, strict=True)]


def test_attributes() -> None:
    neck = HRNetV2pNeck(W18_CHANNELS, 64)
    assert neck.out_channels == 64 and neck.strides == [4, 8, 16, 32, 64]
    assert neck.reduction_conv.in_channels == 270


@pytest.mark.parametrize("size", [(224, 224), (250, 333), (512, 768)])
def test_pyramid_shapes(size: tuple[int, int]) -> None:
    h, w = size
    neck = HRNetV2pNeck(W18_CHANNELS, 256)
    with torch.device("meta"):
        feats = [f.to("meta") for f in branches(h, w, W18_CHANNELS)]
        levels = neck.to("meta")(feats)
    side = (math.ceil(h / 4), math.ceil(w / 4))
    assert len(levels) == 5
    for k, level in enumerate(levels):
        assert level.shape == (1, 256, math.ceil(side[0] / 2**k), math.ceil(side[1] / 2**k))


def test_equals_hrfpn_when_sizes_divide() -> None:
    torch.manual_seed(0)
    neck = HRNetV2pNeck([4, 8, 16, 32], 16)
    feats = branches(256, 192, [4, 8, 16, 32], batch=2)
    with torch.no_grad():
        for got, expected in zip(neck(feats), hrfpn_reference(neck, feats), strict=True):
            assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-5)


def test_ceil_pooling_averages_the_partial_border_cells() -> None:
    neck = HRNetV2pNeck([1, 1, 1, 1], 1)
    with torch.no_grad():
        neck.reduction_conv.weight.fill_(1.0)
        for conv in neck.fpn_convs:
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1] = 1.0
        feats = [torch.ones(1, 1, 5, 5), torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 1)]
        levels = neck(feats)
    assert [tuple(t.shape[-2:]) for t in levels] == [(5, 5), (3, 3), (2, 2), (1, 1), (1, 1)]
    assert all(torch.allclose(t, torch.ones_like(t)) for t in levels)


def test_loads_mmdetection_keys(tmp_path) -> None:
    source = HRNetV2pNeck(W18_CHANNELS, 32)
    mmdet = {f"neck.{k.rsplit('.', 1)[0]}.conv.{k.rsplit('.', 1)[1]}": v for k, v in source.state_dict().items()}
    mmdet["backbone.conv1.weight"] = torch.zeros(1)
    neck = HRNetV2pNeck(W18_CHANNELS, 32)
    neck.load_state_dict(neck.convert_state_dict(mmdet))
    assert torch.equal(neck.fpn_convs[4].weight, source.fpn_convs[4].weight)
    assert neck.convert_state_dict(source.state_dict()).keys() == source.state_dict().keys()


def test_on_hrnet_body_with_gradients() -> None:
    torch.manual_seed(0)
    body = create_model("hrnet_w18_small", features_only=True, width=4, stage1_blocks=1, stage1_planes=8,
                        num_modules=(1, 1, 1), num_blocks=(1, 1, 1))
    neck = HRNetV2pNeck(body.out_channels, 8)
    levels = neck(body(torch.randn(2, 3, 70, 90)))
    assert [tuple(t.shape[-2:]) for t in levels] == [(18, 23), (9, 12), (5, 6), (3, 3), (2, 2)]
    sum(t.square().mean() for t in levels).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in [*neck.parameters(), *body.parameters()])


def test_wrong_number_of_maps_is_refused() -> None:
    with pytest.raises(ValueError, match="expects 4 maps, got 3"):
        HRNetV2pNeck(W18_CHANNELS)(branches(64, 64, W18_CHANNELS)[:3])
