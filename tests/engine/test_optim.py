"""Optimizers and per-iteration LR schedules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from densevision.engine import build_optimizer, build_scheduler, lr_multiplier
from densevision.errors import DenseVisionError


def test_step_schedule_with_linear_warmup():
    f = lambda t: lr_multiplier(t, max_iters=100, schedule="step", warmup_iters=10, warmup_factor=0.1,
                                milestones=[50, 80], gamma=0.1)
    assert f(0) == pytest.approx(0.1)
    assert f(5) == pytest.approx(0.1 * 0.5 + 0.5)
    assert f(10) == f(49) == 1.0
    assert f(50) == pytest.approx(0.1) and f(80) == pytest.approx(0.01)


def test_cosine_poly_constant():
    assert lr_multiplier(50, max_iters=100, schedule="cosine") == pytest.approx(0.5)
    assert lr_multiplier(100, max_iters=100, schedule="cosine", min_lr_ratio=0.1) == pytest.approx(0.1)
    assert lr_multiplier(50, max_iters=100, schedule="poly", power=0.9) == pytest.approx(0.5**0.9)
    assert lr_multiplier(100, max_iters=100, schedule="poly") == 0.0
    assert lr_multiplier(3, max_iters=10, schedule="constant", warmup_iters=5, warmup_method="constant",
                         warmup_factor=0.2) == pytest.approx(0.2)


def test_scheduler_steps_per_iteration_and_resumes_from_its_state_dict():
    def make():
        p = nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=0.5)
        return opt, build_scheduler(opt, max_iters=20, schedule="poly", warmup_iters=4)

    opt, sched = make()
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5 * 0.001)
    assert lrs[7] == pytest.approx(0.5 * (1 - 7 / 20) ** 0.9)

    opt, sched = make()
    for _ in range(9):
        opt.step()
        sched.step()
    opt2, sched2 = make()
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    assert sched.state_dict()["lr_lambdas"] == [None]  # the schedule comes from the flags, not the file
    assert opt2.param_groups[0]["lr"] == pytest.approx(lrs[9])
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(lrs[10])


def test_schedule_errors():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(DenseVisionError, match="unknown LR schedule 'exp'"):
        build_scheduler(opt, max_iters=10, schedule="exp")
    with pytest.raises(DenseVisionError, match=r"milestones \[10\] lie outside"):
        build_scheduler(opt, max_iters=10, milestones=[5, 10])
    with pytest.raises(DenseVisionError, match="unknown warm-up method"):
        build_scheduler(opt, max_iters=10, warmup_method="exp")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 2, 2))
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"}


def test_optimizers_and_weight_decay_groups():
    net = Net()
    sgd = build_optimizer(net, name="sgd", lr=0.02, weight_decay=1e-4, momentum=0.9, nesterov=True)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"]
    assert len(sgd.param_groups) == 1 and len(sgd.param_groups[0]["params"]) == 5  # frozen layer left out
    adamw = build_optimizer(net, name="adamw", lr=1e-3, weight_decay=0.05, betas=(0.9, 0.95),
                            filter_bias_and_bn=True)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.9, 0.95)
    no_decay, decay = adamw.param_groups
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.05
    assert [tuple(p.shape) for p in decay["params"]] == [(4, 3, 3, 3)]
    assert len(no_decay["params"]) == 4  # conv bias, norm weight and bias, pos_embed


def test_optimizer_errors():
    with pytest.raises(DenseVisionError, match="unknown optimizer 'lamb'"):
        build_optimizer(Net(), name="lamb", lr=0.1)
    with pytest.raises(DenseVisionError, match="no trainable parameters"):
        build_optimizer(nn.Linear(2, 2).requires_grad_(False), lr=0.1)


def tiny_vit() -> nn.Module:
    from densevision.models import create_model

    return create_model("vit_small_patch16_224", embed_dim=16, depth=3, num_heads=2, num_classes=5)


def test_default_groups_keep_every_parameter_in_order():
    net = Net()
    sgd = build_optimizer(net, lr=0.02, weight_decay=1e-4)
    (group,) = sgd.param_groups
    assert group["lr"] == 0.02 and group["weight_decay"] == 1e-4 and "lr_scale" not in group
    assert group["params"] == [p for p in net.parameters() if p.requires_grad]


def test_zoo_model_position_tables_and_norms_get_no_weight_decay():
    model = tiny_vit()
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay, decay = build_optimizer(model, name="adamw", lr=1e-3, weight_decay=0.05,
                                      filter_bias_and_bn=True).param_groups
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.05
    assert model.no_weight_decay() <= exempt and {"pos_embed", "norm.weight", "blocks.0.norm1.weight"} <= exempt
    assert all(names[id(p)].endswith(".weight") and p.ndim > 1 for p in decay["params"])
    assert len(no_decay["params"]) + len(decay["params"]) == len(list(model.parameters()))


def test_no_weight_decay_names_match_inside_a_wrapper():
    wrapper = nn.Module()
    wrapper.backbone = Net()
    wrapper.no_weight_decay = lambda: {"pos_embed"}
    no_decay, _ = build_optimizer(wrapper, name="adamw", lr=1e-3, weight_decay=0.05,
                                  filter_bias_and_bn=True).param_groups
    assert any(p is wrapper.backbone.pos_embed for p in no_decay["params"])


def test_layer_decay_lowers_the_lr_of_earlier_blocks():
    model = tiny_vit()
    opt = build_optimizer(model, name="adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    lr_of = {n: group_of[id(p)]["lr"] for n, p in model.named_parameters()}
    wd_of = {n: group_of[id(p)]["weight_decay"] for n, p in model.named_parameters()}
    chain = ["patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.1.attn.qkv.weight",
             "blocks.2.attn.qkv.weight", "head.weight"]
    lrs = [lr_of[n] for n in chain]
    assert lrs == sorted(lrs) and len(set(lrs)) == len(lrs) and lrs[-1] == pytest.approx(1e-3)
    assert lrs[1] / lrs[2] == pytest.approx(0.5)
    assert wd_of["pos_embed"] == wd_of["blocks.0.norm1.weight"] == 0.0 and wd_of["head.weight"] == 0.05
    scheduler = build_scheduler(opt, max_iters=10, schedule="constant", warmup_iters=2, warmup_factor=0.5)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5 * g["initial_lr"] for g in opt.param_groups])
    assert scheduler.base_lrs == [g["lr_scale"] * 1e-3 for g in opt.param_groups]
