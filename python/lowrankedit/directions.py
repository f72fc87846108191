"""Directions in latent space found by a method, with their scores and provenance; and editing along them."""
import numbers

import torch

from . import fileformat
from . import validation as V
from .models.protocol import check_provenance


class Directions:
    """``k`` unit-norm latent directions, best first.

    Attributes
    ----------
    vectors : torch.Tensor
        ``(k, *latent_shape)``, each row of unit Euclidean norm, finite.
    scores : torch.Tensor
        ``(k,)``, the method's score of each direction, best first (NaN where a method did not measure one;
        never Inf).
    meta : dict
        Method, latent space, generator fingerprint, region, parameters (and whatever else the method records).
    """

    def __init__(self, vectors, scores, meta=None, *, normalize=False):
        who = "Directions"
        V.tensor(vectors, "vectors", who)
        if vectors.dim() < 2:
            raise ValueError(f"{who}: expected vectors of shape (k, *latent_shape), got {tuple(vectors.shape)}")
        if isinstance(scores, torch.Tensor):
            scores = scores.detach()
        else:
            try:
                scores = torch.as_tensor(scores, dtype=torch.float64)
            except (TypeError, ValueError, RuntimeError):
                raise V.ArgumentError(f"{who}: expected scores to be a tensor or sequence of numbers, got "
                                      f"{V._got(scores)}") from None
        if scores.shape != (vectors.shape[0],):
            raise ValueError(f"{who}: expected scores of shape ({vectors.shape[0]},), got {tuple(scores.shape)}")
        if scores.is_floating_point() and bool(torch.isinf(scores).any()):
            raise ValueError(f"{who}: expected finite scores (NaN = not measured), got Inf in {scores.tolist()[:8]}")
        if meta is not None and not isinstance(meta, dict):
            raise V.ArgumentError(f"{who}: expected meta to be a dict, got {V._got(meta)}")
        V.boolean(normalize, "normalize", who)
        norms = vectors.flatten(1).norm(dim=1)
        if normalize:
            if (norms == 0).any():
                zero = (norms == 0).nonzero()[:, 0].tolist()[:8]
                raise ValueError(f"{who}: cannot normalize a zero vector (rows {zero})")
            vectors = vectors / norms.view(-1, *([1] * (vectors.dim() - 1)))
        elif vectors.shape[0] and not torch.allclose(norms, torch.ones_like(norms), atol=1e-4):
            raise ValueError(f"{who}: expected unit-norm vectors, got norms {norms.tolist()[:8]}")
        self.vectors = vectors
        self.scores = scores
        self.meta = dict(meta or {})

    @property
    def latent_shape(self):
        return tuple(self.vectors.shape[1:])

    def __len__(self):
        return self.vectors.shape[0]

    def __getitem__(self, index):
        """An int gives one vector ``(*latent_shape)``; a slice or index list gives a ``Directions``."""
        if isinstance(index, numbers.Integral) and not isinstance(index, bool):
            return self.vectors[index]
        return Directions(self.vectors[index], self.scores[index], self.meta)

    def __iter__(self):
        return iter(self.vectors)

    def save(self, path):
        """Write to ``path`` in the safe file format (:mod:`lowrankedit.fileformat`), atomically: readers see the
        old file or the new one, and a failed save leaves the old file intact."""
        fileformat.save(path, "directions", {"vectors": self.vectors, "scores": self.scores},
                        {"latent_shape": list(self.latent_shape), "meta": self.meta})

    @classmethod
    def load(cls, path, generator=None, force=False):
        """Read a file written by :meth:`save`; loading runs no code from the file.

        Parameters
        ----------
        path : path
        generator : generator, optional
            When given, the file must have been made for it: its recorded generator fingerprint, latent space and
            latent shape must match ``generator``'s, else a ``ValueError`` names both sides.
        force : bool
            Skip that check.

        Raises
        ------
        lowrankedit.FileFormatError
            Empty, truncated, corrupt, foreign, old-format (pickle) or wrong-kind file.
        """
        tensors, meta = fileformat.load(path, "directions")
        try:
            d = cls(tensors["vectors"], tensors["scores"], meta["meta"])
        except (KeyError, ValueError, TypeError) as exc:
            raise fileformat.FileFormatError(path, f"not a valid Directions file ({exc})") from None
        if generator is not None:
            check_provenance(d.meta, generator, f"Directions.load({str(path)!r})", latent_shape=d.latent_shape,
                             force=V.boolean(force, "force", "Directions.load"))
        return d

    def __repr__(self):
        return (f"Directions(k={len(self)}, latent_shape={self.latent_shape}, method={self.meta.get('method')!r}, "
                f"scores={[round(float(s), 4) for s in self.scores[:4]]})")


def edit(G, latents, direction, alphas, *, force=False):
    """Images of ``latents + alpha * direction`` for every alpha.

    Parameters
    ----------
    G : generator
    latents : torch.Tensor
        ``(n, *latent_shape)``, finite.
    direction : torch.Tensor or Directions
        ``(*latent_shape)``, finite, or a ``Directions`` of length 1 (use ``dirs[i:i+1]`` to pick one), which must
        have been made for ``G`` (generator fingerprint, latent space and shape recorded in its ``meta``).
    alphas : sequence of float
        Finite edit strengths.
    force : bool
        Use a ``Directions`` made for another generator anyway.

    Returns
    -------
    torch.Tensor
        ``(n, len(alphas), 3, H, W)``.
    """
    from .models.protocol import check_generator, check_latents

    who = "edit"
    check_generator(G, who=who)
    V.boolean(force, "force", who)
    if isinstance(direction, Directions):
        if len(direction) != 1:
            raise ValueError(f"{who}: expected one direction, got a Directions of length {len(direction)}; index it")
        check_provenance(direction.meta, G, who, latent_shape=direction.latent_shape, force=force)
        direction = direction.vectors[0]
    check_latents(G, latents, who)
    V.tensor(direction, "direction", who)
    if tuple(direction.shape) != tuple(G.latent_shape):
        raise ValueError(f"{who}: expected direction of shape {tuple(G.latent_shape)}, got {tuple(direction.shape)}")
    if isinstance(alphas, torch.Tensor):
        alphas = V.tensor(alphas, "alphas", who)
    elif hasattr(alphas, "__iter__") and not isinstance(alphas, (str, bytes, dict)):
        alphas = [V.real(a, f"alphas[{i}]", who) for i, a in enumerate(alphas)]
    else:
        raise V.ArgumentError(f"{who}: expected alphas to be a sequence of numbers, got {V._got(alphas)}")
    alphas = torch.as_tensor(alphas, dtype=latents.dtype, device=latents.device).flatten()
    d = direction.to(latents)
    n, k = latents.shape[0], alphas.numel()
    moved = latents[:, None] + alphas.view(1, k, *([1] * d.dim())) * d
    with torch.no_grad():
        images = G.synthesize(moved.reshape(n * k, *latents.shape[1:]))
    return images.reshape(n, k, *images.shape[1:])
