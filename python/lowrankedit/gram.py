"""The pair of Jacobian Grams of an image region and its background (the input of LowRankGAN and ReSeFa)."""
import os
from dataclasses import dataclass, field

import torch


@dataclass
class Gram:
    """``fg = Jf^T Jf / n_fg`` and ``bg = Jb^T Jb / n_bg``, each ``(D, D)`` symmetric PSD, with ``D`` the number of
    latent entries; ``n_fg`` / ``n_bg`` are the (soft) pixel counts each Gram was divided by, as in the papers."""

    fg: torch.Tensor
    bg: torch.Tensor
    n_fg: float
    n_bg: float
    latent_shape: tuple = ()
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("fg", "bg"):
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.shape[0] != t.shape[1]:
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"Gram: expected {name} of shape (D, D), got {got}")
        if self.fg.shape != self.bg.shape:
            raise ValueError(f"Gram: expected fg and bg of the same shape, got {tuple(self.fg.shape)} and {tuple(self.bg.shape)}")
        if not self.latent_shape:
            self.latent_shape = (self.fg.shape[0],)
        self.latent_shape = tuple(int(s) for s in self.latent_shape)

    @property
    def dim(self):
        return self.fg.shape[0]

    def save(self, path):
        """Write atomically (a failed write leaves no partial file)."""
        _atomic_save({"fg": self.fg.cpu(), "bg": self.bg.cpu(), "n_fg": float(self.n_fg), "n_bg": float(self.n_bg),
                      "latent_shape": list(self.latent_shape), "meta": self.meta}, path)

    @classmethod
    def load(cls, path):
        d = torch.load(path, map_location="cpu", weights_only=False)
        return cls(d["fg"], d["bg"], d["n_fg"], d["n_bg"], tuple(d["latent_shape"]), d["meta"])


def _atomic_save(obj, path):
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
