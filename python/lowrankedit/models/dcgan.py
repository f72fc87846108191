"""The pretrained 64x64 face DCGAN (z in R^100) whose weights ship in the ``gan-face-generate`` wheel.

Architecture: the standard PyTorch DCGAN tutorial generator, nz=100, ngf=64. Our own module; only the weights come
from the wheel (``gan_face_generate/weights.tar``, key ``netG_state_dict``).
"""
import os

import torch
from torch import nn

from .protocol import check_layer

INSTALL_HINT = "pip install --no-deps gan-face-generate==1.1.1   (or run `bash scripts/setup.sh`)"


class DCGAN(nn.Module):
    """DCGAN generator exposing its four transposed-convolution blocks as feature layers.

    Layers (features after each block's ReLU): ``block1`` (512, 4, 4), ``block2`` (256, 8, 8),
    ``block3`` (128, 16, 16), ``block4`` (64, 32, 32). Images are ``(n, 3, 64, 64)`` in [-1, 1].
    """

    layers = ("block1", "block2", "block3", "block4")

    def __init__(self, nz=100, ngf=64, nc=3):
        super().__init__()
        self.nz = nz
        self.latent_shape = (nz,)
        self.name = "dcgan"
        # Same module indices as the tutorial's nn.Sequential so its state dict loads unchanged.
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
        )
        # Block k ends after module index _ends[k-1] (exclusive bound into self.main).
        self._ends = {"block1": 3, "block2": 6, "block3": 9, "block4": 12}

    @property
    def device(self):
        return next(self.parameters()).device

    def sample_latents(self, n, seed=0):
        """``(n, 100)`` standard normal codes, reproducible from ``seed`` (drawn on the CPU, then moved)."""
        from .. import validation as V

        n, seed = V.integer(n, "n", "DCGAN.sample_latents", min=0), V.integer(seed, "seed", "DCGAN.sample_latents")
        g = torch.Generator().manual_seed(seed)
        return torch.randn(n, self.nz, generator=g).to(self.device)

    def _z(self, latents):
        if latents.dim() != 2 or latents.shape[1] != self.nz:
            raise ValueError(f"DCGAN: expected latents of shape (n, {self.nz}), got {tuple(latents.shape)}")
        return latents.reshape(latents.shape[0], self.nz, 1, 1)

    def synthesize(self, latents):
        """Images ``(n, 3, 64, 64)`` in [-1, 1]; differentiable in ``latents``."""
        return self.main(self._z(latents))

    def forward(self, latents):
        return self.synthesize(latents)

    def features(self, latents, layer):
        """Feature maps after ``layer``'s ReLU, ``(n, C, h, w)``."""
        check_layer(self, layer, "DCGAN.features")
        return self.main[: self._ends[layer]](self._z(latents))

    def features_many(self, latents, layers):
        """Features at several layers from one run of the blocks: ``{layer: (n, C, h, w)}``."""
        for layer in layers:
            check_layer(self, layer, "DCGAN.features_many")
        x, out, start = self._z(latents), {}, 0
        for layer in sorted(set(layers), key=self.layers.index):
            x = self.main[start:self._ends[layer]](x)
            out[layer], start = x, self._ends[layer]
        return out

    def synthesize_from(self, features, layer, latents=None):
        """Run the rest of the generator from ``features`` at ``layer`` (``latents`` unused: DCGAN has no skips)."""
        check_layer(self, layer, "DCGAN.synthesize_from")
        return self.main[self._ends[layer]:](features)


def _weights_path():
    try:
        import gan_face_generate
    except ImportError as exc:
        raise ImportError(
            "dcgan_digiface: the pretrained weights come from the `gan-face-generate` wheel, which is not installed; "
            f"install it with: {INSTALL_HINT}"
        ) from exc
    path = os.path.join(os.path.dirname(gan_face_generate.__file__), "weights.tar")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dcgan_digiface: expected weights at {path}; reinstall with: {INSTALL_HINT}")
    return path


def dcgan_digiface(device="cpu", dtype=torch.float32):
    """The pretrained 64x64 face DCGAN, in eval mode, parameters frozen.

    Examples
    --------
    >>> G = dcgan_digiface()
    >>> G.synthesize(G.sample_latents(2)).shape
    torch.Size([2, 3, 64, 64])
    """
    ckpt = torch.load(_weights_path(), map_location="cpu", weights_only=True)  # saved from CUDA: map to the CPU
    if "netG_state_dict" not in ckpt:
        raise KeyError(f"dcgan_digiface: expected key 'netG_state_dict' in the weights file, found {sorted(ckpt)}")
    state = {k.removeprefix("module."): v for k, v in ckpt["netG_state_dict"].items()}
    G = DCGAN()
    G.load_state_dict(state)
    G.eval().requires_grad_(False)
    return G.to(device=device, dtype=dtype)


def dcgan_mouth_region():
    """The mouth box on the DCGAN's 64x64 faces (rows 42-55, columns 20-43), the region the tests and demos use."""
    from ..region import Region

    return Region.box(42, 20, 14, 24, size=(64, 64), name="mouth")


#: Named boxes ``(top, left, height, width)`` on the DCGAN's aligned 64x64 faces (read off the mean of many samples).
DCGAN_BOXES = {"eyes": (22, 14, 12, 36), "nose": (32, 25, 10, 14), "mouth": (42, 20, 14, 24)}


def dcgan_region(name):
    """A named face region of the DCGAN (``"eyes"``, ``"nose"`` or ``"mouth"``) as a ``Region``."""
    from ..region import Region

    if name not in DCGAN_BOXES:
        raise ValueError(f"dcgan_region: expected one of {sorted(DCGAN_BOXES)}, got {name!r}")
    return Region.box(*DCGAN_BOXES[name], size=(64, 64), name=name)
