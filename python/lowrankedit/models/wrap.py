"""Turn a plain callable generator into one that follows the protocol."""
import torch

from .. import validation as V


class WrappedGenerator:
    """Generator protocol around ``fn(latents) -> images`` and, optionally, ``split(latents, layer) -> features``
    plus ``resume(features, layer, latents) -> images`` for feature-level methods."""

    def __init__(self, fn, latent_shape, *, layers=(), features=None, synthesize_from=None, sampler=None,
                 name="wrapped"):
        if not callable(fn):
            raise TypeError(f"wrap: expected fn to be callable, got {type(fn).__name__}")
        if (features is None) != (synthesize_from is None):
            raise ValueError("wrap: give both features and synthesize_from, or neither")
        if layers and features is None:
            raise ValueError("wrap: layers were named but no features function was given")
        self._fn = fn
        self.latent_shape = V.shape(latent_shape, "latent_shape", "wrap")
        self.layers = tuple(layers)
        self._features = features
        self._synthesize_from = synthesize_from
        self._sampler = sampler
        self.name = name

    def sample_latents(self, n, seed=0):
        n, seed = V.integer(n, "n", "sample_latents", min=0), V.integer(seed, "seed", "sample_latents")
        if self._sampler is not None:
            return self._sampler(n, seed)
        g = torch.Generator().manual_seed(seed)
        return torch.randn(n, *self.latent_shape, generator=g)

    def synthesize(self, latents):
        return self._fn(latents)

    def _need_layer(self, layer, who):
        if self._features is None:
            raise NotImplementedError(f"{who}: this wrapped generator was given no features/synthesize_from functions")
        if layer not in self.layers:
            raise ValueError(f"{who}: the generator has no layer {layer!r}; its layers are {list(self.layers)}")

    def features(self, latents, layer):
        self._need_layer(layer, "features")
        return self._features(latents, layer)

    def synthesize_from(self, features, layer, latents=None):
        self._need_layer(layer, "synthesize_from")
        return self._synthesize_from(features, layer, latents)


def wrap(fn, latent_shape, *, layers=(), features=None, synthesize_from=None, sampler=None, name="wrapped"):
    """Wrap ``fn(latents (n, *latent_shape)) -> images (n, 3, H, W)`` as a generator.

    Examples
    --------
    >>> G = wrap(lambda z: torch.tanh(z.sum(1)).view(-1, 1, 1, 1).expand(-1, 3, 8, 8), (4,))
    >>> G.synthesize(G.sample_latents(2)).shape
    torch.Size([2, 3, 8, 8])
    """
    return WrappedGenerator(fn, latent_shape, layers=layers, features=features, synthesize_from=synthesize_from,
                            sampler=sampler, name=name)
