"""Image regions: boxes and arbitrary (soft) masks, resampled to any resolution by exact area averaging."""
import torch

from . import validation as V


def area_resample_matrix(n_in, n_out, dtype=torch.float64):
    """``(n_out, n_in)`` matrix ``R`` with ``R[i, j]`` = fraction of output cell ``i`` covered by input cell ``j``.

    Cells are unit intervals on a common ``[0, 1]`` axis, so each row sums to 1 and ``R @ x`` is the exact area
    average of ``x`` over each output cell, whether the grid shrinks, grows or changes by a non-integer ratio.
    """
    if n_in <= 0 or n_out <= 0:
        raise ValueError(f"area_resample_matrix: expected positive sizes, got n_in={n_in}, n_out={n_out}")
    # Work on a common integer grid of n_in * n_out units: exact arithmetic, no rounding at the edges.
    i = torch.arange(n_out, dtype=torch.int64)
    j = torch.arange(n_in, dtype=torch.int64)
    out_lo, out_hi = (i * n_in)[:, None], ((i + 1) * n_in)[:, None]
    in_lo, in_hi = (j * n_out)[None, :], ((j + 1) * n_out)[None, :]
    overlap = (torch.minimum(out_hi, in_hi) - torch.maximum(out_lo, in_lo)).clamp(min=0)
    return (overlap.to(dtype) / n_in).to(dtype)


def resample_area(mask, h, w):
    """Area-average a ``(..., H, W)`` tensor to ``(..., h, w)``; soft edges stay soft, the mean is preserved."""
    H, W = mask.shape[-2:]
    if (H, W) == (h, w):
        return mask
    Rh = area_resample_matrix(H, h, dtype=mask.dtype).to(mask.device)
    Rw = area_resample_matrix(W, w, dtype=mask.dtype).to(mask.device)
    return Rh @ mask @ Rw.mT


class Region:
    """A region of the image plane, stored as a float mask in [0, 1] at its native resolution.

    Build one with :meth:`box` or :meth:`from_mask`; ask for it at any resolution with :meth:`mask`.

    Examples
    --------
    >>> r = Region.box(40, 20, 12, 24, size=(64, 64))
    >>> float(r.mask(64, 64).sum())
    288.0
    >>> float(r.mask(32, 32).sum())
    72.0
    """

    def __init__(self, mask, name=None, spec=None):
        self._mask = mask
        self.name = name
        self.spec = spec or {"kind": "mask"}

    @classmethod
    def box(cls, top, left, height, width, size=(64, 64), name=None):
        """Axis-aligned box of ``height x width`` pixels whose top-left pixel is ``(top, left)`` on a ``size`` grid."""
        H, W = V.shape(size, "size", "Region.box", ndim=2)
        top, left = (V.integer(v, arg, "Region.box") for arg, v in (("top", top), ("left", left)))
        height, width = (V.integer(v, arg, "Region.box") for arg, v in (("height", height), ("width", width)))
        if height <= 0 or width <= 0:
            raise ValueError(f"Region.box: expected positive height and width, got height={height}, width={width}")
        if top < 0 or left < 0 or top + height > H or left + width > W:
            raise ValueError(
                f"Region.box: expected the box rows [{top}, {top + height}) and columns [{left}, {left + width}) "
                f"to lie inside the {H}x{W} grid"
            )
        m = torch.zeros(H, W, dtype=torch.float64)
        m[top:top + height, left:left + width] = 1
        spec = {"kind": "box", "top": top, "left": left, "height": height, "width": width, "size": [H, W]}
        return cls(m, name=name, spec=spec)

    @classmethod
    def from_mask(cls, mask, name=None):
        """A region from a ``(H, W)`` mask with values in [0, 1] (bool, integer 0/1 or float; soft edges allowed)."""
        if not isinstance(mask, torch.Tensor):
            try:
                mask = torch.as_tensor(mask)
            except Exception as exc:
                raise TypeError(f"Region.from_mask: expected mask to be a tensor or array, got {type(mask).__name__}") from exc
        if mask.dim() != 2:
            raise ValueError(f"Region.from_mask: expected mask of shape (H, W), got {tuple(mask.shape)}")
        if mask.numel() == 0:
            raise ValueError(f"Region.from_mask: expected a non-empty mask, got shape {tuple(mask.shape)}")
        m = mask.detach().to("cpu", torch.float64)
        V.finite_values(m, "mask", "Region.from_mask")
        lo, hi = float(m.min()), float(m.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"Region.from_mask: expected mask values in [0, 1], got range [{lo}, {hi}]")
        return cls(m, name=name, spec={"kind": "mask", "size": list(m.shape)})

    @property
    def size(self):
        """Native resolution ``(H, W)``."""
        return tuple(self._mask.shape)

    def mask(self, h=None, w=None, *, dtype=torch.float32, device="cpu"):
        """Float mask ``(h, w)`` in [0, 1], area-averaged from the native mask (native size when omitted)."""
        h = self.size[0] if h is None else V.integer(h, "h", "Region.mask", min=1)
        w = self.size[1] if w is None else V.integer(w, "w", "Region.mask", min=1)
        return resample_area(self._mask, h, w).to(device=device, dtype=dtype)

    def complement(self):
        """The rest of the image, ``1 - mask``."""
        return Region(1 - self._mask, name=f"not {self.name}" if self.name else None,
                      spec={"kind": "complement", "of": self.spec})

    def to_dict(self):
        """A JSON-friendly description (used in the metadata of saved results)."""
        return {"name": self.name, **self.spec}

    def __repr__(self):
        return f"Region({self.to_dict()}, area={float(self._mask.sum()):g})"
