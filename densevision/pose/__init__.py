"""Top-down keypoint estimation: heatmap networks (pose HRNet; SimpleBaseline, HRNetV2 and ViTPose heads on
backbones), their training task, prediction from boxes and OKS-NMS.

Names are imported lazily from their modules, so ``densevision.pose.config`` loads without torch.
"""

from __future__ import annotations

from densevision.lazy import lazy_exports

_EXPORTS = {
    "model": ("build_pose_model", "load_pose_model"),
    "nms": ("oks_nms",),
    "predict": ("predict_keypoints",),
    "train": ("train_pose",),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
