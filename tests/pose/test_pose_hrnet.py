"""Pose HRNet: the official deep-high-resolution-net state-dict layout (keys and shapes generated here from the
official structure, independently of the model code), parameter counts, heatmap shapes and checkpoint loading."""

from __future__ import annotations

import pytest
import torch

from densevision import create_model, list_models
from densevision.errors import CheckpointError, DenseVisionError


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def _conv_bn(prefix: str, cin: int, cout: int, k: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.0.weight": (cout, cin, k, k), **_bn(f"{prefix}.1", cout)}


def official_layout(width: int, joints: int) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the official pose_hrnet.py network (stage 2/3/4: 1/4/3 modules, 4 BASIC blocks per
    branch, the last module fusing into branch 0 only)."""
    keys = {"conv1.weight": (64, 3, 3, 3), **_bn("bn1", 64), "conv2.weight": (64, 64, 3, 3), **_bn("bn2", 64)}
    for b in range(4):
        p, cin = f"layer1.{b}", 64 if b == 0 else 256
        keys |= {f"{p}.conv1.weight": (64, cin, 1, 1), **_bn(f"{p}.bn1", 64), f"{p}.conv2.weight": (64, 64, 3, 3),
                 **_bn(f"{p}.bn2", 64), f"{p}.conv3.weight": (256, 64, 1, 1), **_bn(f"{p}.bn3", 256)}
    keys |= _conv_bn("layer1.0.downsample", 64, 256, 1)
    pre = [256]
    for stage, modules in ((2, 1), (3, 4), (4, 3)):
        cur = [width * 2**i for i in range(stage)]
        for i, c in enumerate(cur):
            if i < len(pre) and pre[i] != c:
                keys |= _conv_bn(f"transition{stage - 1}.{i}", pre[i], c, 3)
            elif i >= len(pre):
                keys |= _conv_bn(f"transition{stage - 1}.{i}.0", pre[-1], c, 3)
        for m in range(modules):
            p = f"stage{stage}.{m}"
            for br, c in enumerate(cur):
                for blk in range(4):
                    q = f"{p}.branches.{br}.{blk}"
                    keys |= {f"{q}.conv1.weight": (c, c, 3, 3), **_bn(f"{q}.bn1", c), f"{q}.conv2.weight": (c, c, 3, 3),
                             **_bn(f"{q}.bn2", c)}
            targets = 1 if (stage == 4 and m == modules - 1) else len(cur)
            for i in range(targets):
                for j in range(len(cur)):
                    if j > i:
                        keys |= _conv_bn(f"{p}.fuse_layers.{i}.{j}", cur[j], cur[i], 1)
                    for k in range(i - j if j < i else 0):
                        out = cur[i] if k == i - j - 1 else cur[j]
                        keys |= _conv_bn(f"{p}.fuse_layers.{i}.{j}.{k}", cur[j], out, 3)
        pre = cur
    return keys | {"final_layer.weight": (joints, width, 1, 1), "final_layer.bias": (joints,)}


def official_state_dict(width: int, joints: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in official_layout(width, joints).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * (0.1 if len(shape) > 1 else 0.3)
    return state


@pytest.mark.parametrize(("name", "width", "params"), [("pose_hrnet_w32", 32, 28_536_113),
                                                        ("pose_hrnet_w48", 48, 63_595_745)])
def test_official_layout_and_param_count(name: str, width: int, params: int) -> None:
    with torch.device("meta"):
        model = create_model(name)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert own == official_layout(width, 17)
    assert len(own) == 1754
    assert sum(p.numel() for p in model.parameters()) == params


def test_heatmaps_at_stride_4() -> None:
    with torch.device("meta"):
        model = create_model("pose_hrnet_w32", num_joints=5).eval()
        assert model(torch.zeros(2, 3, 256, 192)).shape == (2, 5, 64, 48)
    assert model.pretrained_cfg["input_size"] == (3, 256, 192)


def test_official_state_dict_loads_strictly_and_predicts(tmp_path) -> None:
    state = official_state_dict(8, 3)
    path = tmp_path / "pose_hrnet_w8.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = create_model("pose_hrnet_w32", width=8, num_joints=3, pretrained=path).eval()
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    with torch.no_grad():
        heatmaps = model(torch.randn(1, 3, 64, 48))
    assert heatmaps.shape == (1, 3, 16, 12) and torch.isfinite(heatmaps).all()


def test_mismatched_checkpoint_names_the_keys(tmp_path) -> None:
    state = official_state_dict(8, 3)
    del state["final_layer.bias"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="missing keys: final_layer.bias"):
        create_model("pose_hrnet_w32", width=8, num_joints=3, pretrained=tmp_path / "bad.pth")


def test_body_from_classification_hrnet(tmp_path) -> None:
    torch.manual_seed(0)
    classifier = create_model("hrnet_w32", width=8)
    torch.save(classifier.state_dict(), tmp_path / "cls.pth")
    model = create_model("pose_hrnet_w32", width=8, num_joints=4)
    head = model.final_layer.weight.clone()
    model.load_body_weights(tmp_path / "cls.pth")
    assert torch.equal(model.stage4[0].branches[3][0].conv1.weight, classifier.stage4[0].branches[3][0].conv1.weight)
    assert torch.equal(model.final_layer.weight, head)


def test_registered_as_pose_models() -> None:
    assert list_models("pose*", kind=None) == ["pose_hrnet_w32", "pose_hrnet_w48"]
    assert "pose_hrnet_w32" not in list_models()
    with pytest.raises(DenseVisionError, match="hrnet_w32"):
        create_model("pose_hrnet_w32", features_only=True)
