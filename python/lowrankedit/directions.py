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


def direction_stack(vecs, shape, who, name):
    """``vecs`` as a stack ``(k, *shape)``: one vector of ``shape`` becomes a stack of one; anything else is refused."""
    shape = tuple(shape)
    if tuple(vecs.shape) == shape:
        vecs = vecs[None]
    if tuple(vecs.shape[1:]) != shape:
        raise ValueError(f"{who}: expected {name} of shape (k, {', '.join(map(str, shape))}), got {tuple(vecs.shape)}")
    return vecs


def orthogonalize(direction, others):
    """``direction`` with its component in the span of ``others`` removed, rescaled to unit norm.

    Parameters
    ----------
    direction : torch.Tensor
        ``(*latent_shape)``.
    others : torch.Tensor or Directions
        ``(r, *latent_shape)`` (any norms, need not be orthogonal to each other) or one ``(*latent_shape)``.

    Returns
    -------
    torch.Tensor
        ``(*latent_shape)`` unit norm, orthogonal to every row of ``others`` (to rounding).

    Notes
    -----
    ``d' = d - Q Q^T d`` with ``Q`` an orthonormal basis of the rows of ``others`` (reduced QR, in float64), then
    ``d' / ||d'||``. Raises ``ValueError`` when ``d`` lies in that span (nothing is left).

    Examples
    --------
    >>> d = orthogonalize(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([[1.0, 0.0, 0.0]]))
    >>> d.tolist()
    [0.0, 1.0, 0.0]
    """
    others = others.vectors if isinstance(others, Directions) else others
    if not isinstance(others, torch.Tensor) or not isinstance(direction, torch.Tensor):
        raise TypeError("orthogonalize: expected direction and others as tensors (others may be a Directions)")
    shape = tuple(direction.shape)
    others = direction_stack(others, shape, "orthogonalize", "others")
    d = direction.detach().reshape(-1).double()
    Q, _ = torch.linalg.qr(others.detach().reshape(others.shape[0], -1).double().to(d.device).T)
    rest = d - Q @ (Q.T @ d)
    norm = rest.norm()
    if not norm > 1e-8 * max(float(d.norm()), 1e-300):
        raise ValueError("orthogonalize: the direction lies in the span of the others; nothing is left of it")
    return (rest / norm).reshape(shape).to(direction)


def edit(G, latents, direction, alphas, *, orthogonal_to=None, force=False):
    """Images of ``latents + alpha * direction`` for every alpha; per-latent strengths and chained edits too.

    Parameters
    ----------
    G : generator
    latents : torch.Tensor
        ``(n, *latent_shape)``, finite.
    direction : torch.Tensor or Directions
        One direction ``(*latent_shape)`` (or a ``Directions`` of length 1); or a chain of ``m`` directions,
        ``(m, *latent_shape)`` (or a ``Directions`` of length ``m``), moved along together. On a StyleGAN
        generator a direction may also be W ``(w_dim,)`` (broadcast over the layers that move) or W+
        ``(num_ws, w_dim)``, on its own codes or on W+ codes ``(n, num_ws, w_dim)``; a W+ direction on W codes is
        refused (the rule: :func:`lowrankedit.models.latent_space.direction_offset`).
    alphas : sequence of float or torch.Tensor
        One direction: ``(k,)`` strengths for every latent, or ``(n, k)``, each latent its own. A chain: ``(k, m)``,
        row ``j`` holding the strength of each direction in edit ``j``, or ``(n, k, m)``.
    orthogonal_to : torch.Tensor or Directions, optional
        ``(r, *latent_shape)``: first make every direction orthogonal to these (:func:`orthogonalize`), so the edit
        leaves the attributes they control alone (to first order).
    force : bool
        Use a ``Directions`` made for another generator, latent space or shape anyway (its ``meta`` records them).

    Returns
    -------
    torch.Tensor
        ``(n, k, 3, H, W)``: edit ``j`` of latent ``i`` is ``G(z_i + sum_c alphas[i, j, c] * d_c)``.

    Examples
    --------
    >>> import lowrankedit as le
    >>> G = le.models.dcgan_digiface()
    >>> z, d = G.sample_latents(2), torch.eye(100)[:2]
    >>> le.edit(G, z, d[0], [-1.0, 1.0]).shape, le.edit(G, z, d, [[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]).shape
    (torch.Size([2, 2, 3, 64, 64]), torch.Size([2, 3, 3, 64, 64]))
    """
    from .models.latent_space import apply_direction, describe_direction_shapes, direction_shapes
    from .models.protocol import check_generator

    who = "edit"
    check_generator(G, who=who)
    V.boolean(force, "force", who)
    if isinstance(direction, Directions):
        check_provenance(direction.meta, G, who, latent_shape=direction.latent_shape, force=force)
    singles = direction_shapes(G)
    vecs = direction.vectors if isinstance(direction, Directions) else direction
    if not isinstance(vecs, torch.Tensor):
        raise TypeError(f"edit: expected direction as a tensor or Directions, got {type(direction).__name__}")
    V.tensor(vecs, "direction", who)
    # a Directions says by its length whether it is a chain; a tensor by its shape (one direction's shape wins)
    chain = len(direction) > 1 if isinstance(direction, Directions) else tuple(vecs.shape) not in singles
    if isinstance(direction, Directions) and not chain:
        vecs = vecs[0]
    if chain and tuple(vecs.shape[1:]) not in singles:
        raise ValueError(f"edit: expected a direction of shape {describe_direction_shapes(G)}, got "
                         f"{tuple(vecs.shape)} (a chain of m "
                         f"directions: (m, *shape))")
    if not isinstance(latents, torch.Tensor):
        raise TypeError(f"edit: expected latents to be a torch.Tensor, got {type(latents).__name__}")
    vecs = (vecs if chain else vecs[None]).to(latents)                                # (m, *shape)
    if orthogonal_to is not None:
        vecs = torch.stack([orthogonalize(v, orthogonal_to) for v in vecs])
    n, m = latents.shape[0], vecs.shape[0]
    if isinstance(alphas, torch.Tensor):
        V.tensor(alphas, "alphas", who)
    a = torch.as_tensor(alphas, dtype=latents.dtype, device=latents.device)
    bad = (~torch.isfinite(a)).nonzero()
    if len(bad):
        where = "".join(f"[{int(i)}]" for i in bad[0])
        raise ValueError(f"{who}: expected alphas{where} to be a finite number, got {float(a[tuple(bad[0])])}")
    if not chain:
        a = a[..., None]                                                              # one direction: m = 1
    if isinstance(direction, Directions) and chain and a.dim() < 2:
        raise ValueError(f"edit: got a Directions of length {m} and alphas {tuple(a.shape)}; index it for one "
                         f"direction, or pass alphas of shape (k, {m}) to chain them")
    if a.dim() == 2:
        a = a.expand(n, *a.shape)
    if a.dim() != 3 or a.shape[0] != n or a.shape[2] != m:
        want = f"(k,) or ({n}, k)" if not chain else f"(k, {m}) or ({n}, k, {m})"
        raise ValueError(f"edit: expected alphas of shape {want}, got {tuple(torch.as_tensor(alphas).shape)}")
    return apply_direction(G, latents, vecs, a)  # the latent-space rule (W on W+, layers) lives there
