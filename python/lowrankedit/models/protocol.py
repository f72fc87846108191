"""The generator protocol (see docs/generators.md) and the checks the methods run on a generator they are given."""
import hashlib
from typing import Protocol, Sequence, runtime_checkable

import torch


@runtime_checkable
class Generator(Protocol):
    """Anything with these members is a generator.

    ``latent_shape``: shape of one latent code; ``sample_latents(n, seed=0)``: ``(n, *latent_shape)``;
    ``synthesize(latents)``: images ``(n, 3, H, W)`` in [-1, 1]; ``layers``: feature layer names, shallow to deep;
    ``features(latents, layer)``: ``(n, C, h, w)``; ``synthesize_from(features, layer, latents)``: images.
    """

    latent_shape: Sequence[int]
    layers: Sequence[str]

    def sample_latents(self, n, seed=0): ...

    def synthesize(self, latents): ...

    def features(self, latents, layer): ...

    def synthesize_from(self, features, layer, latents): ...


def check_generator(G, needs=("latent_shape", "synthesize"), who="lowrankedit"):
    """Raise a ``TypeError`` naming the missing members when ``G`` lacks what a method needs."""
    missing = [m for m in needs if not hasattr(G, m)]
    if missing:
        raise TypeError(f"{who}: expected a generator with {', '.join(needs)}; {type(G).__name__} lacks {', '.join(missing)}")


def check_layer(G, layer, who="lowrankedit"):
    """Raise a ``ValueError`` listing the generator's layers when ``layer`` is not one of them."""
    layers = list(getattr(G, "layers", []))
    if layer not in layers:
        raise ValueError(f"{who}: the generator has no layer {layer!r}; its layers are {layers}")


def check_latents(G, latents, who="lowrankedit", name="latents"):
    """Check a batch ``(n, *latent_shape)``: tensor, floating, finite. Returns it."""
    shape = tuple(G.latent_shape)
    if not isinstance(latents, torch.Tensor):
        raise TypeError(f"{who}: expected {name} to be a torch.Tensor, got {type(latents).__name__}")
    if tuple(latents.shape[1:]) != shape or latents.dim() != len(shape) + 1:
        raise ValueError(f"{who}: expected {name} of shape (n, {', '.join(map(str, shape))}), got {tuple(latents.shape)}")
    if not latents.is_floating_point():
        raise TypeError(f"{who}: expected {name} to be floating point, got {latents.dtype}")
    if not torch.isfinite(latents).all():
        raise ValueError(f"{who}: {name} contains NaN or Inf")
    return latents


def fingerprint(G):
    """A short, stable identifier of a generator: its class, latent shape and (for modules) a hash of its weights."""
    h = hashlib.sha1()
    h.update(type(G).__name__.encode())
    # StyleGAN generators hash their ws shape: one set of weights has one fingerprint in every latent space
    h.update(str(tuple(getattr(G, "ws_shape", None) or getattr(G, "latent_shape", ()))).encode())
    if isinstance(G, torch.nn.Module):
        for name, t in sorted(G.state_dict().items()):
            h.update(name.encode())
            # The first 512 entries as float64 (4096 bytes): converting only those keeps edit() cheap
            # (0.3 s -> ms on the DCGAN) and gives the same bytes, hence the same fingerprints, as before.
            h.update(t.detach().reshape(-1)[:512].to("cpu", torch.float64).numpy().tobytes())
    name = getattr(G, "name", type(G).__name__)
    return f"{name}:{h.hexdigest()[:12]}"


def latent_space(G):
    """The name of the latent space ``G`` takes (``G.latent_space`` or ``G.space``, e.g. ``"w"``), or ``None`` when
    the generator does not say (then only its latent shape and fingerprint identify it)."""
    for attr in ("latent_space", "space"):
        v = getattr(G, attr, None)
        if isinstance(v, str):
            return v
    return None


def check_provenance(meta, G, who, *, latent_shape=None, force=False):
    """Refuse results recorded for another generator, latent space or latent shape than ``G``'s.

    ``meta`` is the result's metadata (``"generator"``: the :func:`fingerprint` it was found with, ``"latent_space"``);
    ``latent_shape`` the shape of one of its latent vectors (``None``: not compared). Each recorded entry is compared
    when both sides know it; a mismatch raises a ``ValueError`` naming both sides, unless ``force=True``.
    """
    if force:
        return
    meta = meta or {}
    rec = {"generator fingerprint": meta.get("generator"), "latent space": meta.get("latent_space"),
           "latent shape": tuple(latent_shape) if latent_shape is not None else None}
    have = {"generator fingerprint": fingerprint(G) if rec["generator fingerprint"] is not None else None,
            "latent space": latent_space(G),
            "latent shape": tuple(int(s) for s in G.latent_shape) if latent_shape is not None else None}
    differ = [k for k in rec if rec[k] is not None and have[k] is not None and rec[k] != have[k]]
    if rec["latent space"] == "w" and have["latent space"] == "wplus" and rec["latent shape"] in (None, (G.w_dim,)):
        # a W direction applies to W+ codes by explicit broadcast (models.latent_space.direction_offset)
        differ = [k for k in differ if k not in ("latent space", "latent shape")]
    if differ:
        def side(d):
            return ", ".join(f"{k} {d[k]!r}" for k in rec if d[k] is not None) or "nothing recorded"

        raise ValueError(f"{who}: this was made for another generator: {', '.join(differ)} differ (recorded: "
                         f"{side(rec)}; this generator: {side(have)}); pass force=True to use it anyway")
