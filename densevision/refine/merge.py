"""Reassembling refined patches into instance masks.

Per pixel, the foreground probabilities of all patches covering it are averaged and the pixel is
foreground where the average exceeds 0.5; pixels that no patch covers keep the coarse mask. The sums and
counts live in one flat buffer holding, for each instance, only the rectangle its patches cover, so memory
follows the patches, not N × H × W, and all instances are merged with one scatter-add.
"""

from __future__ import annotations

import torch


def merge_patches(
    coarse: torch.Tensor,
    probs: torch.Tensor,
    boxes: torch.Tensor,
    instance: torch.Tensor,
    *,
    threshold: float = 0.5,
) -> torch.Tensor:
    """Refined masks from the coarse masks and the patch predictions.

    Args:
        coarse: N×H×W binary coarse masks.
        probs: K×P×P foreground probabilities of the patches.
        boxes: K×4 int64 patch boxes ``(x0, y0, x1, y1)`` as
            :func:`~densevision.refine.patches.propose_patches` gives them (parts beyond the bottom/right
            image edge are ignored).
        instance: K indices into ``coarse``.
        threshold: a covered pixel is foreground where the mean probability exceeds it.

    Returns:
        N×H×W bool refined masks.
    """
    n, h, w = coarse.shape
    refined = coarse.bool().clone()
    if instance.numel() == 0:
        return refined
    device = coarse.device
    # the rectangle each instance's patches cover, clipped to the image (empty for instances without patches)
    x0 = torch.full((n,), w, device=device).scatter_reduce(0, instance, boxes[:, 0], "amin")
    y0 = torch.full((n,), h, device=device).scatter_reduce(0, instance, boxes[:, 1], "amin")
    zeros = torch.zeros(n, dtype=torch.long, device=device)
    x1 = zeros.scatter_reduce(0, instance, boxes[:, 2].clamp(max=w), "amax")
    y1 = zeros.scatter_reduce(0, instance, boxes[:, 3].clamp(max=h), "amax")
    rw = (x1 - x0).clamp(min=0)
    area = rw * (y1 - y0).clamp(min=0)
    offset = torch.cumsum(area, 0) - area

    # every patch pixel's place in its instance's rectangle; pixels beyond the image edge are clamped onto
    # the edge with weight 0, so they add nothing and later read back the edge pixel's own decision
    ar = torch.arange(probs.shape[-1], device=device)
    ys, xs = boxes[:, 1, None] + ar, boxes[:, 0, None] + ar
    weight = ((ys < h)[:, :, None] & (xs < w)[:, None, :]).float()
    ys, xs = ys.clamp(max=h - 1), xs.clamp(max=w - 1)
    base = (offset[instance] - y0[instance] * rw[instance] - x0[instance])[:, None, None]
    pos = base + ys[:, :, None] * rw[instance, None, None] + xs[:, None, :]
    total = int(area.sum())
    sums = torch.zeros(total, device=device).index_add_(0, pos.flatten(), (probs.float() * weight).flatten())
    counts = torch.zeros(total, device=device).index_add_(0, pos.flatten(), weight.flatten())
    foreground = sums > threshold * counts
    refined[instance[:, None, None], ys[:, :, None], xs[:, None, :]] = foreground[pos]
    return refined
