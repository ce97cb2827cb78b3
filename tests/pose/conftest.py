"""Tiny architectures shared by the pose tests."""

from __future__ import annotations

TINY_POSE_HRNET = {"width": 4, "stage1_blocks": 1, "stage1_planes": 8, "num_modules": [1, 1, 1],
                   "num_blocks": [1, 1, 1]}
TINY_BACKBONE = {"width": 4, "stage1_planes": 8}
