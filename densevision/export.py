"""ONNX export of zoo models, trained segmenters and pose networks, checked against PyTorch with ONNX Runtime
before the file is written.

Classifiers and pose networks (at their crop size) are exported with a dynamic batch axis; feature extractors
(``features=True``) and segmenters with dynamic batch, height and width, and are checked at a size other than the
one traced. The TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) is used; model code whose
fast eager form does not trace into a dynamic-size graph (in-place writes into slices, size-dependent branches)
switches on ``torch.onnx.is_in_onnx_export()``.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from densevision.errors import DenseVisionError
from densevision.extras import require
from densevision.io import atomic_open
from densevision.models import create_model

DEFAULT_OPSET = 17
OPSET_RANGE = (7, 20)  # opsets the TorchScript-based exporter writes
INPUT_NAME = "image"
POSE_METADATA = "densevision.pose"  # ONNX metadata key of an exported pose network's decoding information


@dataclass
class ExportReport:
    """What was exported and how closely ONNX Runtime reproduced PyTorch (max abs difference per output)."""

    model: str
    path: str
    opset: int
    features: bool
    input_size: tuple[int, int]
    output_names: list[str]
    checked: list[dict] = field(default_factory=list)

    @property
    def max_abs_diff(self) -> float:
        return max(d for check in self.checked for d in check["max_abs_diff"].values())


def require_onnx() -> None:
    """Stop before any work when onnx (the exporter's serialiser) or onnxruntime (the check) is missing, with
    one line naming the ``densevision[onnx]`` extra."""
    require("onnx", "ONNX export")
    require("onnxruntime", "ONNX export (checked with ONNX Runtime)")


def _outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(x)
    return list(out) if isinstance(out, list | tuple) else [out]


def export_model_bytes(
    model: nn.Module, *, features: bool, size: tuple[int, int], opset: int = DEFAULT_OPSET,
    output_names: list[str] | None = None,
) -> tuple[bytes, list[str]]:
    """Trace ``model`` (eval mode) on a ``1×3×H×W`` input and return the ONNX bytes and its output names
    (default ``feature0..`` with ``features``, else ``logits``).

    Axis 0 of the input and outputs is dynamic; with ``features`` the spatial axes are dynamic too.
    """
    model.eval()
    example = torch.randn(1, 3, *size)
    n_out = len(_outputs(model, example))
    names = output_names or ([f"feature{i}" for i in range(n_out)] if features else ["logits"])
    spatial = {2: "height", 3: "width"}
    axes = {INPUT_NAME: {0: "batch", **(spatial if features else {})}}
    for i, name in enumerate(names):
        axes[name] = {0: "batch", **({2: f"height{i}", 3: f"width{i}"} if features else {})}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), buffer, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
            output_names=names, dynamic_axes=axes, do_constant_folding=True,
        )
    return buffer.getvalue(), names


def _export_or_error(model: nn.Module, label: str, **kwargs) -> tuple[bytes, list[str]]:
    """:func:`export_model_bytes` with the exporter's failure as a one-line ``DenseVisionError`` naming ``label``."""
    try:
        return export_model_bytes(model, **kwargs)
    except torch.onnx.errors.OnnxExporterError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DenseVisionError(f"{label}: ONNX export at opset {kwargs['opset']} failed: {first}") from None


def check_with_onnxruntime(
    onnx_bytes: bytes, model: nn.Module, inputs: list[torch.Tensor], *, atol: float = 1e-4, label: str = "model"
) -> list[dict]:
    """Run the ONNX graph with ONNX Runtime (CPU) and ``model`` on each input; raise ``DenseVisionError`` when
    any output differs by more than ``atol × max(1, max |PyTorch output|)`` (absolute for outputs within ±1,
    relative for larger ones, whose fp32 rounding grows with their scale). Returns the per-input, per-output
    max abs differences."""
    onnxruntime = require("onnxruntime", "the ONNX Runtime check")
    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    checks = []
    for x in inputs:
        try:
            got = session.run(None, {INPUT_NAME: x.numpy()})
        except Exception as exc:  # onnxruntime raises its own exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DenseVisionError(f"{label}: ONNX Runtime failed on input {tuple(x.shape)}: {first}") from None
        want = _outputs(model, x)
        if len(got) != len(want):
            raise DenseVisionError(f"{label}: ONNX graph has {len(got)} outputs, PyTorch {len(want)}")
        diffs, limits = {}, {}
        for name, g, w in zip(names, got, want, strict=True):
            if tuple(g.shape) != tuple(w.shape):
                raise DenseVisionError(
                    f"{label}: ONNX output {name} has shape {tuple(g.shape)} for input {tuple(x.shape)}, "
                    f"PyTorch {tuple(w.shape)}"
                )
            diffs[name] = float((torch.from_numpy(g) - w).abs().max()) if w.numel() else 0.0
            limits[name] = atol * max(1.0, float(w.abs().max()) if w.numel() else 0.0)
        worst = max(diffs, key=lambda n: diffs[n] / limits[n])
        if not diffs[worst] <= limits[worst]:
            raise DenseVisionError(
                f"{label}: ONNX Runtime output {worst} differs from PyTorch by {diffs[worst]:.3g} "
                f"(> {limits[worst]:.3g} = {atol:g} × output scale) on input {tuple(x.shape)}"
            )
        checks.append({"input_shape": list(x.shape), "max_abs_diff": diffs})
    return checks


def export_onnx(
    name: str,
    path: str | os.PathLike,
    *,
    features: bool = False,
    size: tuple[int, int] | None = None,
    opset: int = DEFAULT_OPSET,
    checkpoint: str | os.PathLike | None = None,
    trust_checkpoint: bool = False,
    num_classes: int = 1000,
    atol: float = 1e-4,
    seed: int = 0,
    **overrides,
) -> ExportReport:
    """Export zoo model ``name`` to ``path`` as ONNX and verify it with ONNX Runtime.

    ``size`` (H, W) defaults to the classifier's native input size (``pretrained_cfg``), else 224×224. The graph
    is traced at batch 1 and checked on a random batch of 2 at ``size`` and, for ``features``, also at
    ``(H + 29, W + 48)``, a size not seen while tracing. The file is written (atomically) only when every output
    agrees within ``atol``; ``overrides`` go to the model constructor.
    """
    if not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        raise DenseVisionError(f"{name}: opset {opset} is not supported (use {OPSET_RANGE[0]}..{OPSET_RANGE[1]})")
    require_onnx()
    model = create_model(
        name, pretrained=checkpoint, num_classes=num_classes, features_only=features,
        trust_checkpoint=trust_checkpoint, **overrides,
    ).eval()
    if size is None:
        size = tuple(getattr(model, "pretrained_cfg", {}).get("input_size", (3, 224, 224))[1:])
    h, w = size
    if h < 32 or w < 32:
        raise DenseVisionError(f"{name}: export size {h}x{w} is too small (at least 32x32)")
    torch.manual_seed(seed)
    onnx_bytes, names = _export_or_error(model, name, features=features, size=(h, w), opset=opset)
    inputs = [torch.randn(2, 3, h, w)]
    if features:
        inputs.append(torch.randn(1, 3, h + 29, w + 48))
    checks = check_with_onnxruntime(onnx_bytes, model, inputs, atol=atol, label=name)
    with atomic_open(path, "wb") as f:
        f.write(onnx_bytes)
    return ExportReport(
        model=name, path=str(path), opset=opset, features=features, input_size=(h, w), output_names=names,
        checked=checks,
    )


def export_segmenter(
    checkpoint: str | os.PathLike,
    path: str | os.PathLike,
    *,
    size: tuple[int, int] = (512, 512),
    opset: int = DEFAULT_OPSET,
    trust_checkpoint: bool = False,
    atol: float = 1e-4,
    seed: int = 0,
) -> ExportReport:
    """Export a trained segmenter (``seg train`` run or checkpoint) to ``path``: input ``image`` B×3×H×W in
    [0, 1], output ``logits`` B×K×H×W, batch, height and width dynamic (UperNet's pyramid pooling included).
    Traced at ``size``, checked with ONNX Runtime at two other sizes; written only when both agree."""
    from densevision.segmentation.model import load_segmenter

    require_onnx()
    model = load_segmenter(checkpoint, trust_checkpoint=trust_checkpoint)
    h, w = size
    if h < 32 or w < 32:
        raise DenseVisionError(f"{checkpoint}: export size {h}x{w} is too small (at least 32x32)")
    torch.manual_seed(seed)
    label = str(checkpoint)
    onnx_bytes, names = _export_or_error(model, label, features=True, size=size, opset=opset,
                                         output_names=["logits"])
    inputs = [torch.rand(2, 3, h + 29, w + 48), torch.rand(1, 3, max(32, h // 2 + 7), w + 13)]
    checks = check_with_onnxruntime(onnx_bytes, model, inputs, atol=atol, label=label)
    with atomic_open(path, "wb") as f:
        f.write(onnx_bytes)
    return ExportReport(model=f"segmenter:{model.arch.get('backbone')}+{model.arch.get('head')}", path=str(path),
                        opset=opset, features=False, input_size=(h, w), output_names=names, checked=checks)


def export_pose(
    checkpoint: str | os.PathLike,
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    trust_checkpoint: bool = False,
    atol: float = 1e-4,
    seed: int = 0,
) -> ExportReport:
    """Export a trained top-down pose network (``pose train`` run or checkpoint) to ``path``: input ``image``
    B×3×H×W crops in [0, 1] at the network's crop size (normalisation inside the graph), output ``heatmaps``
    B×K×h×w, the batch axis dynamic. Traced at batch 1, checked with ONNX Runtime on batches of 2 and 3; written
    only when both agree, with the metadata entry ``densevision.pose`` (JSON: the categories with keypoint names,
    flip pairs, sigmas and skeleton, ``input_size``, ``heatmap_stride``, ``decode``, ``unbiased``) that decoding
    the heatmaps needs."""
    from densevision.pose.model import load_pose_model

    require_onnx()
    model, meta = load_pose_model(checkpoint, trust_checkpoint=trust_checkpoint)
    label = str(checkpoint)
    onnx_bytes, names = _export_or_error(model, label, features=False, size=model.input_size, opset=opset,
                                         output_names=["heatmaps"])
    torch.manual_seed(seed)
    inputs = [torch.rand(2, 3, *model.input_size), torch.rand(3, 3, *model.input_size)]
    checks = check_with_onnxruntime(onnx_bytes, model, inputs, atol=atol, label=label)
    graph = require("onnx", "ONNX export").load_from_string(onnx_bytes)
    graph.metadata_props.add(key=POSE_METADATA, value=json.dumps({
        "categories": meta["categories"], "input_size": list(model.input_size),
        "heatmap_stride": model.heatmap_stride, "decode": meta.get("decode", "quarter"),
        "unbiased": meta.get("unbiased", False)}))
    with atomic_open(path, "wb") as f:
        f.write(graph.SerializeToString())
    return ExportReport(model=f"pose network ({model.num_joints} joints)", path=str(path), opset=opset, features=False,
                        input_size=model.input_size, output_names=names, checked=checks)
