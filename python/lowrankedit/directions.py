"""Directions in latent space found by a method, with their scores and provenance; and editing along them."""
import torch

from .gram import _atomic_save


class Directions:
    """``k`` unit-norm latent directions, best first.

    Attributes
    ----------
    vectors : torch.Tensor
        ``(k, *latent_shape)``, each row of unit Euclidean norm.
    scores : torch.Tensor
        ``(k,)``, the method's score of each direction, best first.
    meta : dict
        Method, latent space, generator fingerprint, region, parameters (and whatever else the method records).
    """

    def __init__(self, vectors, scores, meta=None, *, normalize=False):
        if not isinstance(vectors, torch.Tensor) or vectors.dim() < 2:
            got = tuple(vectors.shape) if isinstance(vectors, torch.Tensor) else type(vectors).__name__
            raise ValueError(f"Directions: expected vectors of shape (k, *latent_shape), got {got}")
        scores = torch.as_tensor(scores)
        if scores.shape != (vectors.shape[0],):
            raise ValueError(f"Directions: expected scores of shape ({vectors.shape[0]},), got {tuple(scores.shape)}")
        norms = vectors.flatten(1).norm(dim=1)
        if normalize:
            if (norms == 0).any():
                raise ValueError("Directions: cannot normalize a zero vector")
            vectors = vectors / norms.view(-1, *([1] * (vectors.dim() - 1)))
        elif vectors.shape[0] and not torch.allclose(norms, torch.ones_like(norms), atol=1e-4):
            raise ValueError(f"Directions: expected unit-norm vectors, got norms {norms.tolist()[:8]}")
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
        if isinstance(index, int):
            return self.vectors[index]
        return Directions(self.vectors[index], self.scores[index], self.meta)

    def __iter__(self):
        return iter(self.vectors)

    def save(self, path):
        """Write to ``path`` (``torch.save`` format) atomically: a failure leaves no partial file."""
        _atomic_save({"vectors": self.vectors.detach().cpu(), "scores": self.scores.detach().cpu(),
                      "meta": self.meta, "format": "lowrankedit.Directions/1"}, path)

    @classmethod
    def load(cls, path):
        d = torch.load(path, map_location="cpu", weights_only=False)
        if d.get("format") != "lowrankedit.Directions/1":
            raise ValueError(f"Directions.load: {path} is not a saved Directions file")
        return cls(d["vectors"], d["scores"], d["meta"])

    def __repr__(self):
        return (f"Directions(k={len(self)}, latent_shape={self.latent_shape}, method={self.meta.get('method')!r}, "
                f"scores={[round(float(s), 4) for s in self.scores[:4]]})")


def edit(G, latents, direction, alphas):
    """Images of ``latents + alpha * direction`` for every alpha.

    Parameters
    ----------
    G : generator
    latents : torch.Tensor
        ``(n, *latent_shape)``.
    direction : torch.Tensor or Directions
        ``(*latent_shape)``, or a ``Directions`` of length 1 (use ``dirs[i]`` to pick one). On a StyleGAN
        generator also a W ``(w_dim,)`` direction (broadcast over the layers that move) or a W+ ``(num_ws, w_dim)``
        one, on its own codes or on W+ codes ``(n, num_ws, w_dim)``; a W+ direction on W codes is refused.
    alphas : sequence of float

    Returns
    -------
    torch.Tensor
        ``(n, len(alphas), 3, H, W)``.
    """
    from .models.latent_space import apply_direction

    if isinstance(direction, Directions):
        if len(direction) != 1:
            raise ValueError(f"edit: expected one direction, got a Directions of length {len(direction)}; index it")
        direction = direction.vectors[0]
    if not isinstance(latents, torch.Tensor):
        raise TypeError(f"edit: expected latents to be a torch.Tensor, got {type(latents).__name__}")
    alphas = torch.as_tensor(alphas, dtype=latents.dtype, device=latents.device).flatten()
    if not torch.isfinite(alphas).all():
        raise ValueError("edit: alphas contain NaN or Inf")
    return apply_direction(G, latents, direction, alphas)  # the latent-space rule (W on W+, layers) lives there
