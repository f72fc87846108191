"""Edit-quality metrics over a region: how much of an edit's change stays inside the mask."""
import torch

from . import validation as V


def _prepare(original, edited, mask, who):
    V.tensor(original, "original", who)
    V.tensor(edited, "edited", who)
    if original.shape != edited.shape:
        raise ValueError(f"{who}: expected original and edited of the same shape, got {tuple(original.shape)} "
                         f"and {tuple(edited.shape)}")
    if original.dim() != 4:
        raise ValueError(f"{who}: expected images of shape (n, C, H, W), got {tuple(original.shape)}")
    H, W = original.shape[-2:]
    m = torch.as_tensor(mask, dtype=original.dtype, device=original.device)
    if m.shape[-2:] != (H, W):
        raise ValueError(f"{who}: expected mask of spatial size ({H}, {W}), got {tuple(m.shape)}")
    if m.dim() == 2:
        m = m.expand(original.shape[0], H, W)
    if m.dim() != 3 or m.shape[0] != original.shape[0]:
        raise ValueError(f"{who}: expected mask of shape (H, W) or (n, H, W), got {tuple(m.shape)}")
    V.finite_values(m, "mask", who)
    if m.numel() and (m.min() < 0 or m.max() > 1):
        raise ValueError(f"{who}: expected mask values in [0, 1], got range "
                         f"[{float(m.min()):.4g}, {float(m.max()):.4g}]")
    return (original - edited).pow(2).mean(1), m  # per-pixel squared change (channel mean): (n, H, W)


def masked_mse(original, edited, mask):
    """Mean squared change inside and outside a mask, per image.

    Returns ``(inside, outside)``, each ``(n,)``: ``sum(m * d) / sum(m)`` and ``sum((1-m) * d) / sum(1-m)`` with
    ``d`` the per-pixel squared difference averaged over channels.
    """
    return _masked_mse(original, edited, mask, "masked_mse")


def _masked_mse(original, edited, mask, who):
    d, m = _prepare(original, edited, mask, who)
    inside_area, outside_area = m.sum((1, 2)), (1 - m).sum((1, 2))
    if (inside_area == 0).any() or (outside_area == 0).any():
        raise ValueError(f"{who}: the mask has no pixels inside or none outside for some image")
    return (d * m).sum((1, 2)) / inside_area, (d * (1 - m)).sum((1, 2)) / outside_area


def roir(original, edited, mask):
    """PandA's ratio of change outside to change inside the region of interest, per image (lower is better).

    ``ROIR = masked_mse_outside / masked_mse_inside``: mean squared change per pixel outside the mask over the same
    inside it, ``(n,)``.
    """
    inside, outside = _masked_mse(original, edited, mask, "roir")
    return outside / inside.clamp_min(torch.finfo(inside.dtype).tiny)
