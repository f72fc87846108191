"""A compact, faithful StyleGAN2 generator in pure PyTorch, with NVlabs' parameter and buffer names.

The architecture of NVlabs' stylegan2-ada-pytorch ``networks.py`` (config-f, skip generator), written so that
forward-mode AD and ``torch.func.vmap`` pass through it: no custom ``autograd.Function``, no in-place operation
on a tensor that needs a gradient. A real ``G_ema`` state dict (with ``c_dim == 0``) loads by name:
``stylegan2(R, channel_base=..., channel_max=...).load_state_dict(G_ema.state_dict())``.

The weights of :func:`stylegan2` are random (seeded); no pretrained StyleGAN weights ship with the package.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from .latent_space import StyleGANSpace
from .protocol import check_layer

SQRT2 = math.sqrt(2.0)


def _randn(shape, gen):
    return torch.randn(*shape, generator=gen)


def setup_filter(taps=(1, 3, 3, 1)):
    """NVlabs' ``upfirdn2d.setup_filter``: the outer product of the taps, normalized to sum 1 ``(k, k)``."""
    f = torch.tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(x, f, up=1, padding=(0, 0, 0, 0), gain=1.0):
    """NVlabs' reference ``upfirdn2d`` (no downsampling): zero-insertion upsampling, pad, FIR filter per channel.

    ``x (n, C, H, W)``, ``f (k, k)``, ``padding = (x0, x1, y0, y1)`` (non-negative here).
    """
    n, C, H, W = x.shape
    if up > 1:
        x = x.reshape(n, C, H, 1, W, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, C, H * up, W * up)
    x = F.pad(x, list(padding))
    f = (f * (gain ** (f.dim() / 2))).to(x.dtype).flip([0, 1])
    return F.conv2d(x, f[None, None].expand(C, 1, *f.shape), groups=C)


def upsample2d(x, f, up=2):
    """NVlabs' ``upsample2d``: the image-skip upsampling (filter ``f``, gain ``up**2``)."""
    k = f.shape[-1]
    p = ((k + up - 1) // 2, (k - up) // 2)
    return upfirdn2d(x, f, up=up, padding=(p[0], p[1], p[0], p[1]), gain=up * up)


def normalize_2nd_moment(x, eps=1e-8):
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def bias_act(x, b, act="linear", gain=1.0, clamp=None):
    """NVlabs' ``bias_act`` reference path for ``linear`` and ``lrelu`` (slope 0.2), over dim 1."""
    x = x + b.reshape(1, -1, *([1] * (x.dim() - 2)))
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


class FullyConnectedLayer(nn.Module):
    """Equalized-learning-rate linear layer: weights scaled at run time by ``lr_multiplier / sqrt(in)``."""

    def __init__(self, in_features, out_features, gen, *, bias_init=0.0, lr_multiplier=1.0, activation="linear"):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(_randn((out_features, in_features), gen) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b[None], x, w.t())
        return bias_act(x.matmul(w.t()), b, self.activation, gain=SQRT2)


class MappingNetwork(nn.Module):
    """``z (n, z_dim)`` -> ``ws (n, num_ws, w_dim)``: normalize, ``num_layers`` lrelu FC layers (lr x 0.01),
    broadcast, truncation towards ``w_avg`` (written out of place)."""

    def __init__(self, z_dim, w_dim, num_ws, gen, num_layers=8, lr_multiplier=0.01):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        features = [z_dim] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(features[i], features[i + 1], gen, activation="lrelu",
                                                        lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, **unused):
        x = normalize_2nd_moment(z)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        x = x[:, None, :].expand(-1, self.num_ws, -1)
        if truncation_psi != 1:
            w_avg = self.w_avg.to(x.dtype)
            if truncation_cutoff is None:
                x = torch.lerp(w_avg.expand_as(x), x, float(truncation_psi))
            else:
                head = torch.lerp(w_avg.expand_as(x[:, :truncation_cutoff]), x[:, :truncation_cutoff],
                                  float(truncation_psi))
                x = torch.cat([head, x[:, truncation_cutoff:]], 1)
        return x


def modulated_conv2d(x, weight, styles, *, up=1, padding=0, resample_filter=None, demodulate=True):
    """Modulated (and demodulated) convolution, in the non-fused form (modulate activations, shared weights).

    ``x (n, I, H, W)``, ``weight (O, I, k, k)``, ``styles (n, I)``. Equal to NVlabs' fused grouped form:
    ``conv(x * s, w) * d`` with ``d = rsqrt(sum_{i,k} (w s)^2 + 1e-8)``. With ``up=2``: a stride-2 transposed
    convolution, then the [1,3,3,1] blur (gain 4), as NVlabs' ``conv2d_resample``.
    """
    w = weight.to(x.dtype)
    x = x * styles[:, :, None, None]
    if up == 1:
        x = F.conv2d(x, w, padding=padding)
    else:
        x = F.conv_transpose2d(x, w.transpose(0, 1), stride=up)
        k = resample_filter.shape[-1]
        # NVlabs' padding for up=2, kernel 3, filter 4: px0 = 1 + (k+up-1)//2 - (kw-1), px1 = 1 + (k-up)//2 - (kw-up)
        kw = w.shape[-1]
        p0 = padding + (k + up - 1) // 2 - (kw - 1)
        p1 = padding + (k - up) // 2 - (kw - up)
        x = upfirdn2d(x, resample_filter, padding=(p0, p1, p0, p1), gain=up * up)
    if demodulate:
        dcoefs = (styles.square() @ w.square().sum([2, 3]).t() + 1e-8).rsqrt()  # (n, O)
        x = x * dcoefs[:, :, None, None]
    return x


class SynthesisLayer(nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, resolution, gen, *, up=1, conv_clamp=None,
                 noise_strength=0.0):
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, gen, bias_init=1)
        self.weight = nn.Parameter(_randn((out_channels, in_channels, 3, 3), gen))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("resample_filter", setup_filter())
        self.register_buffer("noise_const", _randn((resolution, resolution), gen))
        self.noise_strength = nn.Parameter(torch.full([], float(noise_strength)))

    def forward(self, x, w, noise_mode="const"):
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, up=self.up, padding=1, resample_filter=self.resample_filter)
        if noise_mode == "const":
            x = x + (self.noise_const * self.noise_strength).to(x.dtype)
        elif noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength.to(x.dtype)
        clamp = self.conv_clamp * SQRT2 if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), "lrelu", gain=SQRT2, clamp=clamp)


class ToRGBLayer(nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, gen, *, conv_clamp=None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, gen, bias_init=1)
        self.weight = nn.Parameter(_randn((out_channels, in_channels, 1, 1), gen))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x, w):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (upsampling conv0), conv1, toRGB added to the upsampled image (skip architecture)."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, gen, *, conv_clamp=None,
                 noise_strength=0.0):
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.register_buffer("resample_filter", setup_filter())
        kw = dict(conv_clamp=conv_clamp, noise_strength=noise_strength)
        if in_channels == 0:
            self.const = nn.Parameter(_randn((out_channels, resolution, resolution), gen))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, gen, up=2, **kw)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, gen, **kw)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, gen, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1

    def features(self, x, ws, noise_mode="const"):
        """``ws (n, num_conv + 1, w_dim)``: the block's activations before toRGB."""
        if self.in_channels == 0:
            x = self.const.to(ws.dtype)[None].expand(ws.shape[0], -1, -1, -1)
            return self.conv1(x, ws[:, 0], noise_mode)
        x = self.conv0(x, ws[:, 0], noise_mode)
        return self.conv1(x, ws[:, 1], noise_mode)

    def to_image(self, x, img, ws):
        """The skip image after this block from its activations ``x`` and the previous image."""
        y = self.torgb(x, ws[:, self.num_conv])
        return y if img is None else upsample2d(img, self.resample_filter) + y

    def forward(self, x, img, ws, noise_mode="const", **unused):
        x = self.features(x, ws, noise_mode)
        return x, self.to_image(x, img, ws)


class SynthesisNetwork(nn.Module):
    """``ws (n, num_ws, w_dim)`` -> images ``(n, img_channels, R, R)``; blocks ``b4 ... bR``."""

    def __init__(self, w_dim, img_resolution, img_channels, gen, *, channel_base=32768, channel_max=512,
                 conv_clamp=None, noise_strength=0.0):
        super().__init__()
        log2 = int(math.log2(img_resolution))
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        self.channels = channels
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(in_ch, channels[res], w_dim, res, img_channels, gen, conv_clamp=conv_clamp,
                                   noise_strength=noise_strength)
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last block's toRGB

    def block_ws(self, ws):
        """``{res: ws slice}``: block ``b{res}`` reads ``num_conv + 1`` ws; its toRGB shares its index with the
        next block's first conv (NVlabs' ``w_idx += num_conv``)."""
        out, idx = {}, 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            out[res] = ws.narrow(1, idx, block.num_conv + block.num_torgb)
            idx += block.num_conv
        return out

    def run(self, ws, *, noise_mode="const", start=None, x=None, img=None, stop=None):
        """Run blocks from ``start`` (given its input activations' result ``x`` and previous ``img``, or from the
        constant) to ``stop`` (inclusive; that block's ``x`` is returned instead of the image)."""
        bws = self.block_ws(ws)
        for res in self.block_resolutions:
            if start is not None and res < start:
                continue
            block = getattr(self, f"b{res}")
            if start is not None and res == start:
                img = block.to_image(x, img, bws[res])  # x: this block's activations, given
            else:
                x = block.features(x, bws[res], noise_mode)
                if stop is not None and res == stop:
                    return x, img
                img = block.to_image(x, img, bws[res])
        return x, img

    def forward(self, ws, noise_mode="const", **unused):
        return self.run(ws, noise_mode=noise_mode)[1]


class StyleGAN2(StyleGANSpace, nn.Module):
    """StyleGAN2 generator (``mapping`` + ``synthesis``, NVlabs names) in one latent space.

    Feature layers ``b8 ... bR``: the activations of each synthesis block (before its toRGB). ``features`` runs
    up to a block; ``synthesize_from`` runs the rest from given activations (the block's toRGB included, so an
    edit of the features reaches the image through the skip connection as well).
    """

    def __init__(self, resolution=256, *, space="wplus", layers=None, channel_base=32768, channel_max=512,
                 w_dim=512, z_dim=None, num_mapping=8, img_channels=3, conv_clamp=None, noise_strength=0.0,
                 truncation_psi=1.0, truncation_cutoff=None, noise_mode="const", seed=0):
        nn.Module.__init__(self)
        who = "stylegan2"
        if not (isinstance(resolution, int) and resolution >= 8 and resolution & (resolution - 1) == 0):
            raise ValueError(f"{who}: expected resolution to be a power of two >= 8, got {resolution!r}")
        for name, v in (("channel_base", channel_base), ("channel_max", channel_max), ("w_dim", w_dim),
                        ("num_mapping", num_mapping)):
            if not (isinstance(v, int) and v > 0):
                raise ValueError(f"{who}: expected {name} to be a positive int, got {v!r}")
        if channel_base // resolution < 1:
            raise ValueError(f"{who}: channel_base={channel_base} gives 0 channels at {resolution} px; expected "
                             f"channel_base >= resolution")
        if noise_mode not in ("const", "none"):
            raise ValueError(f"{who}: expected noise_mode 'const' or 'none' (random noise makes images and "
                             f"Jacobians non-deterministic), got {noise_mode!r}")
        gen = torch.Generator().manual_seed(int(seed))
        self.z_dim = w_dim if z_dim is None else int(z_dim)
        self.w_dim, self.c_dim, self.img_resolution, self.img_channels = w_dim, 0, resolution, img_channels
        self.noise_mode = noise_mode
        self.synthesis = SynthesisNetwork(w_dim, resolution, img_channels, gen, channel_base=channel_base,
                                          channel_max=channel_max, conv_clamp=conv_clamp,
                                          noise_strength=noise_strength)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(self.z_dim, w_dim, self.num_ws, gen, num_layers=num_mapping)
        with torch.no_grad():  # w_avg of the random mapping, so truncation does what it does on a trained one
            z = torch.randn(1024, self.z_dim, generator=gen)
            self.mapping.w_avg.copy_(self.mapping(z)[:, 0].mean(0))
        self.layers = tuple(f"b{r}" for r in self.synthesis.block_resolutions[1:])
        self.name = f"stylegan2-{resolution}-random"
        self.config = dict(resolution=resolution, channel_base=channel_base, channel_max=channel_max, w_dim=w_dim,
                           z_dim=self.z_dim, num_mapping=num_mapping, conv_clamp=conv_clamp, seed=int(seed))
        self._init_space(space, layers, truncation_psi, truncation_cutoff, who)
        self.eval().requires_grad_(False)

    def _mapping(self, z, truncation_psi, truncation_cutoff):
        return self.mapping(z, None, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)

    def _synthesis(self, ws):
        return self.synthesis(ws, noise_mode=self.noise_mode)

    def _res(self, layer, who):
        check_layer(self, layer, who)
        return int(layer[1:])

    def features(self, latents, layer):
        """Activations of block ``layer`` (``"b8"`` ... ``"bR"``), ``(n, C, res, res)``."""
        res = self._res(layer, "StyleGAN2.features")
        self._check_codes(latents, "StyleGAN2.features")
        return self.synthesis.run(self.to_ws(latents), noise_mode=self.noise_mode, stop=res)[0]

    def features_many(self, latents, layers):
        """``{layer: features}`` for several layers from one run of the blocks."""
        wanted = {self._res(layer, "StyleGAN2.features_many"): layer for layer in layers}
        self._check_codes(latents, "StyleGAN2.features_many")
        ws, out, x, img = self.to_ws(latents), {}, None, None
        bws = self.synthesis.block_ws(ws)
        for res in self.synthesis.block_resolutions:
            if res > max(wanted):
                break
            block = getattr(self.synthesis, f"b{res}")
            x = block.features(x, bws[res], self.noise_mode)
            if res in wanted:
                out[wanted[res]] = x
            img = block.to_image(x, img, bws[res])
        return out

    def synthesize_from(self, features, layer, latents):
        """The image when the blocks after ``layer`` (and ``layer``'s toRGB) run from ``features``; the earlier
        skip image and every ws come from ``latents``."""
        res = self._res(layer, "StyleGAN2.synthesize_from")
        self._check_codes(latents, "StyleGAN2.synthesize_from")
        ws = self.to_ws(latents)
        prev = res // 2
        img = None
        if prev >= 4:  # run(stop=prev) returns before prev's toRGB: add it from prev's own activations
            x_prev, img_prev = self.synthesis.run(ws, noise_mode=self.noise_mode, stop=prev)
            img = getattr(self.synthesis, f"b{prev}").to_image(x_prev, img_prev, self.synthesis.block_ws(ws)[prev])
        return self.synthesis.run(ws, noise_mode=self.noise_mode, start=res, x=features, img=img)[1]


def stylegan2(resolution=256, *, space="wplus", layers=None, channel_base=32768, channel_max=512, w_dim=512,
              num_mapping=8, seed=0, truncation_psi=1.0, truncation_cutoff=None, conv_clamp=None,
              noise_strength=0.1, device="cpu", dtype=torch.float32):
    """A StyleGAN2 generator with random (seeded) weights, in eval mode, parameters frozen.

    Parameters
    ----------
    resolution : int
        Image size, a power of two >= 8; ``num_ws = 2 log2(resolution) - 2``.
    space : {"z", "w", "wplus"}
        What one latent code is: ``(w_dim,)`` z, ``(w_dim,)`` w broadcast to all layers, or ``(num_ws, w_dim)``.
    layers : iterable of int, optional
        With ``"w"`` / ``"wplus"``: only these ws move (derivatives and edits), e.g. ``range(4, 8)``.
    channel_base, channel_max : int
        Channels at resolution ``r``: ``min(channel_base // r, channel_max)`` (NVlabs' rule).
    w_dim, num_mapping : int
        Width of z and w, and the mapping network's depth.
    seed : int
        The weights; the same seed gives the same weights whatever the space.
    truncation_psi, truncation_cutoff :
        Truncation of :meth:`sample_latents` (and of the mapping in space ``"z"``).
    conv_clamp : float, optional
        NVlabs' activation clamp (256 in their trained configs).
    noise_strength : float
        The per-layer noise strength (NVlabs initializes it to 0 and learns it; nonzero here so that constant
        noise is part of the images, as in a trained model).

    Examples
    --------
    >>> G = stylegan2(32, channel_base=256, channel_max=32, w_dim=32)
    >>> G.latent_shape, G.layers
    ((8, 32), ('b8', 'b16', 'b32'))
    >>> G.synthesize(G.sample_latents(2)).shape
    torch.Size([2, 3, 32, 32])
    """
    G = StyleGAN2(resolution, space=space, layers=layers, channel_base=channel_base, channel_max=channel_max,
                  w_dim=w_dim, num_mapping=num_mapping, seed=seed, truncation_psi=truncation_psi,
                  truncation_cutoff=truncation_cutoff, conv_clamp=conv_clamp, noise_strength=noise_strength)
    return G.to(device=device, dtype=dtype)
