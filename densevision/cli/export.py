"""``densevision export-onnx``: export a zoo model, a trained segmenter or a trained pose network to ONNX, verified
with ONNX Runtime."""

from __future__ import annotations

import argparse

from densevision.cli._types import add_trust_argument, int_at_least, positive_float, positive_int

DEFAULT_OPSET = 17  # densevision.export.DEFAULT_OPSET, without importing torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``export-onnx``."""
    parser.description = (
        "Export a zoo model to ONNX with a dynamic batch axis (and dynamic height and width with --features), then "
        "run the graph with ONNX Runtime on random inputs and fail unless every output matches PyTorch within "
        "--atol. The file is written only when the check passes. With --segmenter, NAME is a trained segmenter "
        "(a `seg train` run directory or checkpoint), exported with dynamic batch, height and width and checked at "
        "two sizes not seen during export. With --pose, NAME is a trained pose network (a `pose train` run "
        "directory or checkpoint), exported at its crop size with a dynamic batch axis (crops -> heatmaps) and the "
        "metadata entry 'densevision.pose' (categories, keypoint names, input size, heatmap stride, decoding)."
    )
    parser.add_argument("name", help="model name (see `densevision models`), or with --segmenter / --pose a "
                                     "`seg train` / `pose train` run directory or checkpoint")
    parser.add_argument("out_file", nargs="?", metavar="OUT", help="output .onnx file (or --out)")
    parser.add_argument("--out", dest="out_flag", metavar="OUT.onnx", help="output .onnx file")
    parser.add_argument("--features", action="store_true", help="export the multi-scale feature extractor")
    parser.add_argument("--segmenter", action="store_true",
                        help="NAME is a trained segmenter: export image -> logits (default --size 512 512)")
    parser.add_argument("--pose", action="store_true",
                        help="NAME is a trained pose network: export crops -> heatmaps at its crop size")
    parser.add_argument("--size", nargs=2, type=int_at_least(32), metavar=("H", "W"),
                        help="input size, at least 32 (default: the model's, else 224 224)")
    parser.add_argument("--opset", type=positive_int, default=DEFAULT_OPSET,
                        help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--checkpoint", metavar="FILE", help="weights to load (official, timm or densevision format)")
    add_trust_argument(parser)
    parser.add_argument("--num-classes", type=positive_int, default=1000, help="classifier outputs (default 1000)")
    parser.add_argument("--atol", type=positive_float, default=1e-4,
                        help="max difference allowed, times max(1, |output|) (default 1e-4)")


def run(args: argparse.Namespace) -> int:
    """Check the output path, export, check the graph, print one line per checked input."""
    from densevision.errors import DenseVisionError
    from densevision.io import check_outputs

    if (args.out_file is None) == (args.out_flag is None):
        raise DenseVisionError("give the output file once: `export-onnx NAME OUT` or `export-onnx NAME --out OUT`")
    out = args.out_file if args.out_flag is None else args.out_flag
    if args.pose:
        return _export_pose(args, out)
    if args.segmenter:
        given = [flag for flag, value in (("--features", args.features), ("--checkpoint", args.checkpoint),
                                          ("--num-classes", args.num_classes != 1000)) if value]
        if given:
            raise DenseVisionError(f"--segmenter takes its weights and classes from NAME; drop {', '.join(given)}")
        check_outputs({"--out": out}, {"NAME": args.name})
        return _export_segmenter(args, out)
    check_outputs({"--out": out}, {"--checkpoint": args.checkpoint})

    from densevision.export import export_onnx

    report = export_onnx(
        args.name, out, features=args.features, size=tuple(args.size) if args.size else None, opset=args.opset,
        checkpoint=args.checkpoint, trust_checkpoint=args.trust_checkpoint, num_classes=args.num_classes,
        atol=args.atol,
    )
    kind = "features" if report.features else "classifier"
    print(f"{report.model} ({kind}) -> {report.path} (opset {report.opset}, outputs {', '.join(report.output_names)})")
    _print_checks(report.checked)
    return 0


def _print_checks(checked: list[dict]) -> None:
    """One line per input checked with ONNX Runtime."""
    for check in checked:
        diff = max(check["max_abs_diff"].values())
        print(f"  onnxruntime vs PyTorch, input {check['input_shape']}: max abs diff {diff:.2e}")


def _export_segmenter(args: argparse.Namespace, out: str) -> int:
    """``export-onnx RUN OUT --segmenter``: the segmenter's graph, checked at two unseen sizes."""
    from densevision.export import export_segmenter

    report = export_segmenter(args.name, out, size=tuple(args.size) if args.size else (512, 512), opset=args.opset,
                              trust_checkpoint=args.trust_checkpoint, atol=args.atol)
    print(f"{report.model} -> {report.path} (opset {report.opset}, dynamic batch, height and width)")
    _print_checks(report.checked)
    return 0


def _export_pose(args: argparse.Namespace, out: str) -> int:
    """``export-onnx RUN OUT --pose``: the pose network's crops -> heatmaps graph, checked on two batch sizes."""
    from densevision.errors import DenseVisionError
    from densevision.export import export_pose
    from densevision.io import check_outputs

    given = [flag for flag, value in (("--segmenter", args.segmenter), ("--features", args.features),
                                      ("--checkpoint", args.checkpoint), ("--size", args.size),
                                      ("--num-classes", args.num_classes != 1000)) if value]
    if given:
        raise DenseVisionError(f"--pose takes its weights, joints and crop size from NAME; drop {', '.join(given)}")
    check_outputs({"--out": out}, {"NAME": args.name})
    report = export_pose(args.name, out, opset=args.opset, trust_checkpoint=args.trust_checkpoint, atol=args.atol)
    h, w = report.input_size
    print(f"{report.model} -> {report.path} (opset {report.opset}, {h}x{w} crops, dynamic batch, outputs "
          f"{', '.join(report.output_names)})")
    _print_checks(report.checked)
    return 0
