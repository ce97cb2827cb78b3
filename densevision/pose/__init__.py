"""Top-down keypoint estimation: heatmap networks (pose HRNet, SimpleBaseline heads on any backbone),
their training task and prediction from boxes."""

from __future__ import annotations

from densevision.pose.model import build_pose_model, load_pose_model

__all__ = ["build_pose_model", "load_pose_model"]
