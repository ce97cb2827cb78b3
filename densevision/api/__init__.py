"""One-image Python entries: a trained model as a function of one image held in memory, giving what the matching
command writes to files for that image.

- :class:`Detector` (``detect predict``): image -> :class:`Detections` (boxes, scores, category ids and names,
  instance masks);
- :class:`Refiner` (``bpr refine``): image + instance masks (+ boxes, scores) -> :class:`Refinement`;
- :class:`Segmenter` (``seg predict``): image -> H×W label map (the network itself is
  ``densevision.segmentation.Segmenter``);
- :class:`PoseEstimator` (``pose predict``): image + boxes -> :class:`Poses` (N×K×3 keypoints).

Each has ``from_checkpoint(path, ...)``; images are paths, PIL images, H×W×3 uint8 RGB arrays or 3×H×W float
tensors in [0, 1] (:func:`as_image_array`). The package composes the task packages; names are imported lazily.
"""

from __future__ import annotations

from densevision.lazy import lazy_exports

_EXPORTS = {
    "detector": ("Detections", "Detector"),
    "inputs": ("ImageInput", "as_image_array"),
    "pose": ("PoseEstimator", "Poses"),
    "refiner": ("Refinement", "Refiner"),
    "segmenter": ("Segmenter",),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
