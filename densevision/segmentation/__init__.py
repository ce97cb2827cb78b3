"""Semantic segmentation: UperNet, Semantic FPN and HRNetV2 heads over any zoo or ``timm:`` backbone, label-map
training on the shared engine, whole-image and sliding-window prediction.

Names are imported lazily, so ``densevision.segmentation.config`` loads without torch.
"""

from __future__ import annotations

from densevision.lazy import lazy_exports

_EXPORTS = {
    "config": ("SegmenterConfig", "SegTrainConfig"),
    "heads": ("FCNHead", "HRNetV2Head", "SemanticFPNHead", "UperNetHead", "adaptive_avg_pool2d", "build_head"),
    "model": ("Segmenter", "build_segmenter", "init_backbone_from", "load_segmenter", "segmenter_spec"),
    "predict": ("predict_folder", "predict_image", "slide_inference"),
    "train": ("SegTask", "train_segmenter"),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
