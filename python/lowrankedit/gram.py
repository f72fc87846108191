"""The pair of Jacobian Grams of an image region and its background (the input of LowRankGAN and ReSeFa)."""
import math
from dataclasses import dataclass, field

import torch

from . import fileformat
from . import validation as V


@dataclass
class Gram:
    """``fg = Jf^T Jf / n_fg`` and ``bg = Jb^T Jb / n_bg``, each ``(D, D)`` symmetric PSD, with ``D`` the number of
    latent entries; ``n_fg`` / ``n_bg`` are the (soft) pixel counts each Gram was divided by, as in the papers.

    Checked on construction (and so on :meth:`load`): both Grams finite, floating point, of one shape ``(D, D)``,
    symmetric to rounding (``max |G - G^T| <= 16 D eps max |G|``), with no diagonal entry below ``-16 D eps max |G|``
    (a Gram is PSD, so a negative diagonal means a wrong input), ``fg`` not all zero (its directions would all
    score 0); ``n_fg``, ``n_bg`` finite and ``> 0``; ``prod(latent_shape) == D``.
    """

    fg: torch.Tensor
    bg: torch.Tensor
    n_fg: float
    n_bg: float
    latent_shape: tuple = ()
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        who = "Gram"
        for name in ("fg", "bg"):
            t = V.tensor(getattr(self, name), name, who, ndim=2)
            if t.shape[0] != t.shape[1]:
                raise ValueError(f"{who}: expected {name} of shape (D, D), got {tuple(t.shape)}")
        if self.fg.shape != self.bg.shape:
            raise ValueError(f"{who}: expected fg and bg of the same shape, got {tuple(self.fg.shape)} and "
                             f"{tuple(self.bg.shape)}")
        for name in ("fg", "bg"):
            _check_gram_matrix(getattr(self, name), name, who)
        if self.dim and not bool(self.fg.any()):
            raise ValueError(f"{who}: fg is all zero (the image inside the region does not depend on the latent), "
                             "so every direction would score 0; check the region and the generator")
        self.n_fg = V.positive(self.n_fg, "n_fg", who)
        self.n_bg = V.positive(self.n_bg, "n_bg", who)
        if not self.latent_shape:
            self.latent_shape = (self.fg.shape[0],)
        self.latent_shape = V.shape(self.latent_shape, "latent_shape", who)
        if math.prod(self.latent_shape) != self.dim:
            raise ValueError(f"{who}: expected latent_shape with prod = D = {self.dim}, got {self.latent_shape}")
        if not isinstance(self.meta, dict):
            raise V.ArgumentError(f"{who}: expected meta to be a dict, got {V._got(self.meta)}")

    @property
    def dim(self):
        return self.fg.shape[0]

    def save(self, path):
        """Write in the safe file format (:mod:`lowrankedit.fileformat`), atomically."""
        fileformat.save(path, "gram", {"fg": self.fg, "bg": self.bg},
                        {"n_fg": float(self.n_fg), "n_bg": float(self.n_bg), "latent_shape": list(self.latent_shape),
                         "meta": self.meta})

    @classmethod
    def load(cls, path):
        """Read a file written by :meth:`save` (no code from the file runs); the Grams are checked as on
        construction. Raises :class:`lowrankedit.FileFormatError` for a broken, foreign or wrong-kind file."""
        tensors, meta = fileformat.load(path, "gram")
        try:
            return cls(tensors["fg"], tensors["bg"], meta["n_fg"], meta["n_bg"], tuple(meta["latent_shape"]),
                       meta["meta"])
        except (KeyError, TypeError, ValueError) as exc:
            raise fileformat.FileFormatError(path, f"not a valid Gram file ({exc})") from None


def _check_gram_matrix(G, name, who):
    """Symmetric to rounding, no negative diagonal beyond rounding (a cheap necessary condition for PSD)."""
    if G.numel() == 0:
        return
    scale = float(G.abs().max())
    tol = 16 * G.shape[0] * torch.finfo(G.dtype).eps * scale
    asym = float((G - G.mT).abs().max())
    if asym > tol:
        raise ValueError(f"{who}: expected {name} to be symmetric (a Gram J^T J), got max |{name} - {name}^T| = "
                         f"{asym:.3g} (max |{name}| = {scale:.3g})")
    dmin = float(G.diagonal().min())
    if dmin < -tol:
        raise ValueError(f"{who}: expected {name} to be positive semi-definite (a Gram J^T J), got a diagonal entry "
                         f"{dmin:.3g} < 0")
