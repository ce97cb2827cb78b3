"""Joint transforms of an image and its detection target; each is ``(image, target) -> (image, target)``.

``image`` is float32 3×H×W in [0, 1]; the target holds ``boxes`` (N×4 XYXY), ``masks`` (N×H×W uint8) and
possibly ``keypoints`` (N×J×3 ``[x, y, v]``), kept consistent with the image. Randomness comes from torch's
global generator, so seeding the run makes it repeatable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

Target = dict[str, torch.Tensor]


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        for t in self.transforms:
            image, target = t(image, target)
        return image, target


def resized_shape(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """Output size keeping aspect: the short side becomes ``min_size`` unless the long side would exceed
    ``max_size``, in which case the long side becomes ``max_size``."""
    scale = min(min_size / min(height, width), max_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


class ResizeShortest:
    """Resize keeping the aspect ratio (bilinear image, nearest masks, scaled boxes).

    ``min_size`` may be a sequence, one of which is drawn per sample (multi-scale training).
    """

    def __init__(self, min_size: int | Sequence[int], max_size: int) -> None:
        self.min_sizes = [min_size] if isinstance(min_size, int) else list(min_size)
        self.max_size = max_size

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        h, w = image.shape[-2:]
        pick = int(torch.randint(len(self.min_sizes), ())) if len(self.min_sizes) > 1 else 0
        nh, nw = resized_shape(h, w, self.min_sizes[pick], self.max_size)
        if (nh, nw) == (h, w):
            return image, target
        image = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False,
                              antialias=True)[0].clamp_(0, 1)
        target = dict(target)
        if "masks" in target:
            masks = target["masks"]
            target["masks"] = F.interpolate(masks[None].float(), size=(nh, nw), mode="nearest")[0].to(masks.dtype)
        if "boxes" in target:
            scale = torch.tensor([nw / w, nh / h, nw / w, nh / h], dtype=target["boxes"].dtype)
            target["boxes"] = target["boxes"] * scale
        if "area" in target:
            target["area"] = target["area"] * (nw * nh) / (w * h)
        return image, target


class RandomHorizontalFlip:
    """Mirror image, masks, boxes and keypoints with probability ``p``.

    Labelled keypoints (v > 0) get ``x -> W - x``; channel ``j`` then takes the keypoint of channel
    ``flip_index[j]`` (its left/right mirror, e.g. :attr:`~densevision.data.keypoints.KeypointLayout.flip_index`;
    default: every channel keeps its keypoint).
    """

    def __init__(self, p: float = 0.5, flip_index: Sequence[int] | None = None) -> None:
        self.p = p
        self.flip_index = None if flip_index is None else list(flip_index)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        if float(torch.rand(())) >= self.p:
            return image, target
        w = image.shape[-1]
        target = dict(target)
        if "masks" in target:
            target["masks"] = target["masks"].flip(-1)
        if "boxes" in target:
            boxes = target["boxes"].clone()
            boxes[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
            target["boxes"] = boxes
        if "keypoints" in target:
            keypoints = target["keypoints"].clone()
            keypoints[..., 0] = torch.where(keypoints[..., 2] > 0, w - keypoints[..., 0], keypoints[..., 0])
            target["keypoints"] = keypoints if self.flip_index is None else keypoints[:, self.flip_index]
        return image.flip(-1), target


class PhotometricJitter:
    """Random brightness, contrast, saturation (factors in [1 − a, 1 + a]) and hue (shift in [−h, h]),
    applied in random order; geometry is untouched."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2,
                 hue: float = 0.02) -> None:
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {hue}")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        ops = [
            (TF.adjust_brightness, self.brightness, 1.0),
            (TF.adjust_contrast, self.contrast, 1.0),
            (TF.adjust_saturation, self.saturation, 1.0),
            (TF.adjust_hue, self.hue, 0.0),
        ]
        draws = torch.rand(len(ops) * 2)
        for k in torch.randperm(len(ops)).tolist():
            fn, amount, centre = ops[k]
            if amount > 0 and draws[k] < 0.5:
                image = fn(image, centre + amount * (2 * float(draws[len(ops) + k]) - 1))
        return image.clamp_(0, 1), target


def detection_collate(batch: Sequence[tuple[torch.Tensor, Target]]) -> tuple[list[torch.Tensor], list[Target]]:
    """Collate to lists (images differ in size), as torchvision detection models expect."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)

