"""Segmenters for LELSD: callables ``segmenter(images, features) -> masks`` that say where an edit should stay.

The protocol: ``images`` is ``(N, 3, H, W)`` in [-1, 1]; ``features`` is a dict ``layer -> (N, C, h, w)`` of the
generator's feature maps for the same samples (LELSD passes its localization layers plus the layers named in the
segmenter's optional ``layers`` attribute); the result is ``(N, h', w')`` with values in [0, 1] at any resolution.
A pretrained face-parsing network fits by ignoring ``features`` and returning its part probabilities (or 0/1 masks).

Built in: :class:`StaticRegion` (one fixed region for every sample) and :class:`PandaParts` (per-sample masks from
the saliency of parts found by :func:`lowrankedit.panda`, without any labels).
"""
import torch
import torch.nn.functional as F

from . import validation as V
from .region import Region


class StaticRegion:
    """The same mask for every sample: a fixed region of the image plane (e.g. a mouth box).

    Parameters
    ----------
    region : Region or torch.Tensor
        A :class:`lowrankedit.Region`, or a ``(H, W)`` mask in [0, 1] (made into one with ``Region.from_mask``).

    Examples
    --------
    >>> import lowrankedit
    >>> seg = StaticRegion(lowrankedit.Region.box(2, 2, 4, 4, size=(8, 8)))
    >>> seg(torch.zeros(3, 3, 8, 8), {}).shape
    torch.Size([3, 8, 8])
    """

    layers = ()

    def __init__(self, region):
        if isinstance(region, Region):
            self.region = region
        elif isinstance(region, torch.Tensor):
            self.region = Region.from_mask(region)
        else:
            raise TypeError(f"StaticRegion: expected a lowrankedit.Region or a (H, W) mask tensor, "
                            f"got {type(region).__name__}")

    def __call__(self, images, features=None):
        """``(N, H, W)``: the region's mask at the images' resolution, repeated for each of the ``N`` images."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"StaticRegion: expected images of shape (N, 3, H, W), got {got}")
        n, _, H, W = images.shape
        dtype = images.dtype if images.is_floating_point() else torch.float32
        m = self.region.mask(H, W, dtype=dtype, device=images.device)
        return m.expand(n, H, W)

    def describe(self):
        """What goes into ``Directions.meta['region']``."""
        return {"segmenter": "StaticRegion", **self.region.to_dict()}

    def __repr__(self):
        return f"StaticRegion({self.region!r})"


class PandaParts:
    """Per-sample masks from PandA parts: the saliency of chosen parts in each sample's own features.

    Parameters
    ----------
    parts : object
        The result of :func:`lowrankedit.panda` (anything with ``.layer``, the layer name, and
        ``.saliency(features (N, C, h, w), k) -> (N, h, w)`` in [0, 1], the saliency of part ``k``).
    part_index : int or sequence of int
        The part(s) making up the region; several parts are joined by their pointwise maximum.
    threshold : float, optional
        When given, the mask is binary: ``saliency >= threshold``. When omitted, the soft saliency is the mask.
    size : (int, int), optional
        Resolution of the returned masks; default the images' ``(H, W)``. The saliency (at the layer's ``(h, w)``)
        is resized bilinearly with ``align_corners=True`` and clamped to [0, 1].

    Notes
    -----
    The segmenter reads ``features[parts.layer]``, so it lists that layer in its ``layers`` attribute and LELSD
    computes it (for the original and the edited samples alike: the masks follow the edit).
    """

    def __init__(self, parts, part_index, threshold=None, size=None):
        for attr in ("layer", "saliency"):
            if not hasattr(parts, attr):
                raise TypeError(f"PandaParts: expected the result of lowrankedit.panda (with .layer and .saliency), "
                                f"got {type(parts).__name__} without .{attr}")
        if not callable(parts.saliency):
            raise TypeError("PandaParts: expected parts.saliency to be callable as saliency(features, k)")
        idx = [part_index] if isinstance(part_index, int) and not isinstance(part_index, bool) else part_index
        if not isinstance(idx, (list, tuple)):
            raise V.ArgumentError(f"PandaParts: expected part_index to be an int or a sequence of ints, "
                                  f"got {V._got(part_index)}")
        idx = [V.integer(k, "part_index", "PandaParts") for k in idx]
        if not idx or any(k < 0 for k in idx):
            raise ValueError(f"PandaParts: expected one or more non-negative part indices, got {part_index!r}")
        n_parts = _num_parts(parts)
        if n_parts is not None and any(k >= n_parts for k in idx):
            raise ValueError(f"PandaParts: part index out of range: got {idx}, the parts object has {n_parts} parts")
        self.parts = parts
        self.part_index = idx
        self.threshold = None if threshold is None else V.probability(threshold, "threshold", "PandaParts")
        self.size = None if size is None else V.shape(size, "size", "PandaParts", ndim=2)
        self.layers = (parts.layer,)

    def saliency(self, features):
        """Soft mask at the layer's resolution, ``(N, h, w)``: max over the chosen parts of their saliency."""
        if not isinstance(features, torch.Tensor) or features.dim() != 4:
            got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"PandaParts: expected features of shape (N, C, h, w) at layer {self.parts.layer!r}, "
                             f"got {got}")
        s = None
        for k in self.part_index:
            sk = self.parts.saliency(features, k)
            if not isinstance(sk, torch.Tensor) or sk.shape != (features.shape[0], *features.shape[-2:]):
                got = tuple(sk.shape) if isinstance(sk, torch.Tensor) else type(sk).__name__
                raise ValueError(f"PandaParts: expected parts.saliency(features, {k}) of shape "
                                 f"{(features.shape[0], *features.shape[-2:])}, got {got}")
            s = sk if s is None else torch.maximum(s, sk)
        return s

    def __call__(self, images, features):
        """``(N, H, W)`` masks in [0, 1] from ``features[parts.layer]``, at the images' resolution (or ``size``)."""
        if not isinstance(features, dict) or self.parts.layer not in features:
            have = sorted(features) if isinstance(features, dict) else type(features).__name__
            raise ValueError(f"PandaParts: expected features to hold layer {self.parts.layer!r} (the PandA layer), "
                             f"got {have}")
        f = features[self.parts.layer]
        s = self.saliency(f).to(f.dtype if f.is_floating_point() else torch.float32)
        if self.threshold is not None:
            s = (s >= self.threshold).to(s.dtype)
        size = self.size or (tuple(images.shape[-2:]) if isinstance(images, torch.Tensor) else None)
        if size is None:
            raise ValueError("PandaParts: expected images of shape (N, 3, H, W) or an explicit size")
        if tuple(s.shape[-2:]) != tuple(size):
            s = F.interpolate(s[:, None], size=size, mode="bilinear", align_corners=True)[:, 0]
        return s.clamp(0, 1)

    def describe(self):
        """What goes into ``Directions.meta['region']``."""
        return {"segmenter": "PandaParts", "layer": self.parts.layer, "parts": list(self.part_index),
                "threshold": self.threshold}

    def __repr__(self):
        return f"PandaParts(layer={self.parts.layer!r}, parts={self.part_index}, threshold={self.threshold})"


def _num_parts(parts):
    """Number of parts ``Rs`` when the object exposes ``.parts (S, Rs)``; ``None`` when it cannot be told."""
    p = getattr(parts, "parts", None)
    if isinstance(p, torch.Tensor) and p.dim() == 2:
        return int(p.shape[1])
    return None


def check_masks(masks, images, who="lelsd"):
    """Validate what a segmenter returned for ``images (N, 3, H, W)``: ``(N, h, w)`` floats in [0, 1], no NaN.

    Returns the masks as a float tensor on the images' device (bool and integer masks are converted).
    """
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"{who}: expected the segmenter to return a torch.Tensor, got {type(masks).__name__}")
    n = images.shape[0]
    if masks.dim() != 3 or masks.shape[0] != n or masks.shape[1] <= 0 or masks.shape[2] <= 0:
        raise ValueError(f"{who}: expected the segmenter to return masks of shape ({n}, h, w) for {n} images, "
                         f"got {tuple(masks.shape)}")
    if not masks.is_floating_point():
        masks = masks.to(images.dtype if images.is_floating_point() else torch.float32)
    masks = masks.to(images.device)
    if torch.isnan(masks).any():
        raise ValueError(f"{who}: the segmenter returned masks containing NaN")
    lo, hi = float(masks.min()), float(masks.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"{who}: expected the segmenter's mask values in [0, 1], got range [{lo:.4g}, {hi:.4g}]")
    return masks
