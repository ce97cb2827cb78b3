"""``densevision export-onnx``: export a zoo model to ONNX, verified with ONNX Runtime."""

from __future__ import annotations

import argparse

from densevision.export import DEFAULT_OPSET, export_onnx


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export-onnx`` subcommand."""
    parser = subparsers.add_parser(
        "export-onnx",
        help="export a zoo model to ONNX (checked with ONNX Runtime)",
        description="Export a zoo model to ONNX with a dynamic batch axis (and dynamic height and width with "
        "--features), then run the graph with ONNX Runtime on random inputs and fail unless every output "
        "matches PyTorch within --atol. The file is written only when the check passes.",
    )
    parser.add_argument("name", help="model name (see `densevision models`)")
    parser.add_argument("out", help="output .onnx file")
    parser.add_argument("--features", action="store_true", help="export the multi-scale feature extractor")
    parser.add_argument(
        "--size", nargs=2, type=int, metavar=("H", "W"), help="input size (default: the model's, else 224 224)"
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--checkpoint", help="weights to load (official, timm or densevision format)")
    parser.add_argument(
        "--trust-checkpoint", action="store_true", help="allow checkpoints that need full unpickling"
    )
    parser.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (default 1000)")
    parser.add_argument("--atol", type=float, default=1e-4,
                        help="max difference allowed, times max(1, |output|) (default 1e-4)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export, check, print one line per checked input."""
    report = export_onnx(
        args.name, args.out, features=args.features, size=tuple(args.size) if args.size else None, opset=args.opset,
        checkpoint=args.checkpoint, trust_checkpoint=args.trust_checkpoint, num_classes=args.num_classes,
        atol=args.atol,
    )
    kind = "features" if report.features else "classifier"
    print(f"{report.model} ({kind}) -> {report.path} (opset {report.opset}, outputs {', '.join(report.output_names)})")
    for check in report.checked:
        diff = max(check["max_abs_diff"].values())
        print(f"  onnxruntime vs PyTorch, input {check['input_shape']}: max abs diff {diff:.2e}")
    return 0
