"""Edit-quality metrics over a region: how much of an edit's change stays inside the mask.

All work on images ``(n, C, H, W)`` before and after an edit and a mask ``(H, W)`` or ``(n, H, W)`` in [0, 1], from
the per-pixel change ``d = mean over channels of (original - edited)^2``:

- :func:`masked_mse`: ``(inside, outside)`` mean of ``d`` per pixel inside and outside the mask;
- :func:`roir`: ``outside / inside`` (PandA's ratio; lower is better);
- :func:`localization_score`: ``sum(d * m) / sum(d)``, the share of the change inside (LELSD's score; higher is
  better);
- :func:`rms_inside`: ``sqrt(inside)``, the edit's strength in the region (what :func:`lowrankedit.evaluate`
  calibrates).
"""
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


def localization_score(original, edited, mask, *, reduction="mean"):
    """Image-level localization score: the share of an edit's change that falls inside a mask (higher is better).

    Parameters
    ----------
    original, edited : torch.Tensor
        ``(n, C, H, W)`` images (or feature maps) before and after the edit.
    mask : torch.Tensor
        ``(H, W)`` (the same for every sample) or ``(n, H, W)``, values in [0, 1].
    reduction : {"mean", "none"}
        ``"mean"`` averages the per-sample scores to a 0-d tensor; ``"none"`` returns them, ``(n,)``.

    Returns
    -------
    torch.Tensor
        0-d (``"mean"``) or ``(n,)`` (``"none"``), each value in [0, 1].

    Notes
    -----
    With ``d[i, y, x] = mean_c (original[i, c, y, x] - edited[i, c, y, x])^2`` the per-pixel change and ``m`` the
    mask, the score of sample ``i`` is

        ``s_i = sum_{y,x} d[i, y, x] * m[i, y, x] / sum_{y,x} d[i, y, x]``,

    and ``s_i = 0`` when the sample did not change at all (``sum d[i] == 0``). The result is ``mean_i s_i``.
    A change only inside a binary mask scores 1, only outside scores 0; a change spread uniformly over the image
    scores the mask's area fraction. This is paper Eq. 2 evaluated on the image instead of a feature map.

    Examples
    --------
    >>> x = torch.zeros(1, 3, 4, 4); y = x.clone(); y[..., :2, :] = 1.0
    >>> m = torch.zeros(4, 4); m[:2] = 1
    >>> float(localization_score(x, y, m)), float(localization_score(x, y, 1 - m))
    (1.0, 0.0)
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"localization_score: expected reduction 'mean' or 'none', got {reduction!r}")
    d, m = _prepare(original, edited, mask, "localization_score")
    total = d.sum((1, 2))
    inside = (d * m).sum((1, 2))
    per_sample = torch.where(total > 0, inside / total.clamp_min(torch.finfo(total.dtype).tiny),
                             torch.zeros_like(total))
    return per_sample.mean() if reduction == "mean" else per_sample


def rms_inside(original, edited, mask):
    """Root-mean-square change per pixel inside the mask, per image: ``sqrt(masked_mse(...)[0])``, ``(n,)``.

    Images in [-1, 1]: an RMS of 0.1 is a change of 5% of the value range, on average over the region.
    """
    d, m = _prepare(original, edited, mask, "rms_inside")
    area = m.sum((1, 2))
    if (area == 0).any():
        raise ValueError("rms_inside: the mask has no pixels inside for some image")
    return ((d * m).sum((1, 2)) / area).sqrt()
