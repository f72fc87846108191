"""Adapters for the StyleGAN generators users hold: NVlabs objects (stylegan2-ada-pytorch, stylegan3) and
rosinality's ``Generator``. Each becomes a :class:`~lowrankedit.models.latent_space.StyleGANSpace` in the chosen
space, with deterministic (constant) noise, so every method and ``edit`` run on it.

Loading an NVlabs pickle runs the code stored inside it (the pickle rebuilds its modules with ``exec``): load only
files you trust. :func:`load_nvlabs_pickle` refuses unless told ``trusted=True``.
"""
import sys

import torch
from torch import nn

from .latent_space import StyleGANSpace

NOISE_MODES = ("const", "none")
#: NVlabs' custom-op modules (stylegan2-ada-pytorch and stylegan3 ``torch_utils/ops``) with a pure-PyTorch path.
NVLABS_OPS = ("bias_act", "upfirdn2d", "filtered_lrelu")


def _check_noise(noise_mode, who):
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"{who}: expected noise_mode in {NOISE_MODES}, got {noise_mode!r}: random noise changes the "
                         "image at every call, so Jacobians and edits would not be deterministic")


def _need(obj, names, who, what):
    missing = [n for n in names if not hasattr(obj, n)]
    if missing:
        raise TypeError(f"{who}: expected {what} with {', '.join(names)}; {type(obj).__name__} lacks "
                        f"{', '.join(missing)}")


class NVlabsGenerator(StyleGANSpace, nn.Module):
    """A stylegan2-ada-pytorch or stylegan3 generator (``G_ema``) in one latent space.

    ``mapping(z, None, truncation_psi=..., truncation_cutoff=...)`` and ``synthesis(ws, noise_mode=...,
    force_fp32=True)`` (plus ``fused_modconv=True`` for StyleGAN2 blocks, so the noise goes through a plain add and
    not NVlabs' ``fma`` function). ``is_stylegan3`` is detected by ``synthesis.layer_names``.
    """

    layers = ()

    def __init__(self, G, *, space="wplus", layers=None, truncation_psi=1.0, truncation_cutoff=None,
                 noise_mode="const"):
        nn.Module.__init__(self)
        who = "from_nvlabs"
        _need(G, ("mapping", "synthesis", "z_dim", "w_dim", "num_ws", "img_resolution"), who,
              "an NVlabs generator (G_ema)")
        _check_noise(noise_mode, who)
        if int(getattr(G, "c_dim", 0)) != 0:
            raise ValueError(f"{who}: the generator is conditional (c_dim={G.c_dim}); only unconditional generators "
                             "(c_dim == 0, called with c=None) are supported")
        self.G = G.eval().requires_grad_(False)  # eval: ADA's mapping updates w_avg in training mode
        self.z_dim, self.w_dim, self.num_ws = int(G.z_dim), int(G.w_dim), int(G.num_ws)
        self.img_resolution = int(G.img_resolution)
        self.is_stylegan3 = hasattr(G.synthesis, "layer_names")
        self.noise_mode = noise_mode
        # StyleGAN2 blocks take fused_modconv, StyleGAN3 layers do not (a TypeError there)
        self._synthesis_kwargs = dict(noise_mode=noise_mode, force_fp32=True)
        if not self.is_stylegan3:
            self._synthesis_kwargs["fused_modconv"] = True
        self.name = f"nvlabs-{'stylegan3' if self.is_stylegan3 else 'stylegan2'}-{self.img_resolution}"
        self._init_space(space, layers, truncation_psi, truncation_cutoff, who)

    def _mapping(self, z, truncation_psi, truncation_cutoff):
        return self.G.mapping(z, None, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)

    def _synthesis(self, ws):
        return self.G.synthesis(ws, **self._synthesis_kwargs)


class RosinalityGenerator(StyleGANSpace, nn.Module):
    """rosinality/stylegan2-pytorch's ``Generator`` in one latent space.

    Synthesis is ``g([ws], input_is_latent=True, randomize_noise=False)[0]`` with ``ws (n, n_latent, style_dim)``
    (the ``noises.noise_i`` buffers: constant noise); the mapping is ``g.style(z)``, with truncation towards
    ``truncation_latent`` (``g.mean_latent(4096)``, which must be given when ``truncation_psi != 1``).
    """

    layers = ()

    def __init__(self, g, *, space="wplus", layers=None, truncation_psi=1.0, truncation_latent=None,
                 randomize_noise=False):
        nn.Module.__init__(self)
        who = "from_rosinality"
        _need(g, ("style", "n_latent", "style_dim", "size"), who, "a rosinality Generator")
        if randomize_noise:
            raise ValueError(f"{who}: randomize_noise=True draws new noise at every call, so Jacobians and edits "
                             "would not be deterministic; use randomize_noise=False (the generator's noise buffers)")
        self.g = g.eval().requires_grad_(False)
        self.z_dim = self.w_dim = int(g.style_dim)
        self.num_ws, self.img_resolution = int(g.n_latent), int(g.size)
        if float(truncation_psi) != 1 and truncation_latent is None:
            raise ValueError(f"{who}: truncation_psi={truncation_psi} needs truncation_latent (e.g. "
                             "g.mean_latent(4096)), as rosinality's generator does")
        if truncation_latent is not None:
            t = torch.as_tensor(truncation_latent).reshape(-1)
            if t.numel() != self.w_dim:
                raise ValueError(f"{who}: expected truncation_latent of {self.w_dim} entries, got "
                                 f"{tuple(torch.as_tensor(truncation_latent).shape)}")
            self.register_buffer("truncation_latent", t.clone())
        else:
            self.truncation_latent = None
        self.name = f"rosinality-stylegan2-{self.img_resolution}"
        self._init_space(space, layers, truncation_psi, None, who)

    def _mapping(self, z, truncation_psi, truncation_cutoff):
        w = self.g.style(z)
        if truncation_psi != 1:
            t = self.truncation_latent.to(w)
            w = t + truncation_psi * (w - t)
        return w[:, None, :].expand(-1, self.num_ws, -1)

    def _synthesis(self, ws):
        return self.g([ws], input_is_latent=True, randomize_noise=False)[0]


def from_nvlabs(G, *, space="wplus", layers=None, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const"):
    """Adapt an NVlabs ``G_ema`` (stylegan2-ada-pytorch or stylegan3) to the generator protocol.

    Parameters
    ----------
    G : NVlabs ``Generator``
        With ``mapping``, ``synthesis``, ``z_dim``, ``w_dim``, ``num_ws``, ``img_resolution`` and ``c_dim == 0``.
        Put in eval mode with frozen parameters.
    space : {"z", "w", "wplus"}
    layers : iterable of int, optional
        Only these ws move (space ``"w"`` / ``"wplus"``).
    truncation_psi, truncation_cutoff :
        Passed to ``G.mapping`` by ``sample_latents`` (and in space ``"z"`` by every call).
    noise_mode : {"const", "none"}
        ``"random"`` (NVlabs' default) is refused: it makes Jacobians non-deterministic.

    Returns
    -------
    NVlabsGenerator
        Float32 synthesis (``force_fp32=True``). On CUDA, call :func:`use_reference_ops` first if forward-mode
        Jacobians are wanted (NVlabs' CUDA ops have no forward mode; ``jacobian_gram`` otherwise falls back to two
        reverse passes and says so in ``Gram.meta``).
    """
    return NVlabsGenerator(G, space=space, layers=layers, truncation_psi=truncation_psi,
                           truncation_cutoff=truncation_cutoff, noise_mode=noise_mode)


def from_rosinality(g, *, space="wplus", layers=None, truncation_psi=1.0, truncation_latent=None,
                    randomize_noise=False):
    """Adapt rosinality's ``Generator`` (``torch.load(ckpt)["g_ema"]`` loaded into it) to the generator protocol.

    ``randomize_noise=True`` is refused (random noise at every call); truncation needs ``truncation_latent``.
    Note that rosinality's ``op/`` compiles CUDA code when imported; its pure-PyTorch fallbacks run on CPU tensors.
    """
    return RosinalityGenerator(g, space=space, layers=layers, truncation_psi=truncation_psi,
                               truncation_latent=truncation_latent, randomize_noise=randomize_noise)


def use_reference_ops(modules=None):
    """Make NVlabs' custom ops (``bias_act``, ``upfirdn2d``, ``filtered_lrelu``) take their pure-PyTorch reference
    paths, and turn off ``conv2d_gradfix`` / ``grid_sample_gradfix``; their CUDA paths are ``autograd.Function``s
    without forward mode.

    The networks never pass ``impl=``; each op takes its CUDA path when ``_init()`` (building the plugin) succeeds,
    so this replaces ``_init`` by one that returns False. Works on the ``torch_utils.ops`` modules already imported
    (a pickle imports them when it is loaded), or on the ``modules`` given.

    Returns
    -------
    list of str
        The names of the modules changed (empty when none is imported).
    """
    if modules is None:
        modules = [m for name, m in list(sys.modules.items())
                   if m is not None and name.split(".")[-1] in NVLABS_OPS + ("conv2d_gradfix", "grid_sample_gradfix")
                   and ".ops." in f".{name}"]
    changed = []
    for mod in modules:
        short = mod.__name__.split(".")[-1]
        if short in NVLABS_OPS and hasattr(mod, "_init"):
            mod._init = _no_plugin
            changed.append(mod.__name__)
        elif hasattr(mod, "enabled"):
            mod.enabled = False
            changed.append(mod.__name__)
    return changed


def _no_plugin():
    return False


def load_nvlabs_pickle(path, *, trusted=False, key="G_ema", device="cpu"):
    """Load ``key`` from an NVlabs network pickle with NVlabs' ``legacy.load_network_pkl``.

    A pickle runs its own code when loaded: this refuses unless ``trusted=True``. NVlabs' ``legacy``, ``dnnlib`` and
    ``torch_utils`` must be importable (the repository of the pickle's generation on ``sys.path``).
    """
    if trusted is not True:
        raise PermissionError(f"load_nvlabs_pickle: loading {path} runs the code inside the pickle; pass "
                              "trusted=True only for a file from a source you trust")
    try:
        import legacy  # NVlabs' own loader, from stylegan2-ada-pytorch or stylegan3
    except ImportError as exc:
        raise ImportError("load_nvlabs_pickle: NVlabs' `legacy` module is not importable; put a checkout of "
                          "stylegan2-ada-pytorch or stylegan3 on sys.path") from exc
    with open(path, "rb") as f:
        return legacy.load_network_pkl(f)[key].to(device)





def _infer_stylegan2(sd, who):
    """``stylegan2(...)`` arguments that reproduce the tensor shapes of an NVlabs-named state dict."""
    res = sorted(int(k.split(".")[1][1:]) for k in sd if k.startswith("synthesis.b") and k.endswith(".torgb.weight"))
    fcs = sorted(int(k.split(".")[1][2:]) for k in sd if k.startswith("mapping.fc") and k.endswith(".weight"))
    if not res or not fcs or "synthesis.b4.const" not in sd:
        raise ValueError(f"{who}: not a StyleGAN2 state dict under NVlabs' names (mapping.fc*, synthesis.b4.const, "
                         "synthesis.b*.torgb)")
    R, w_dim = res[-1], int(sd[f"mapping.fc{fcs[-1]}.weight"].shape[0])
    if int(sd["mapping.fc0.weight"].shape[1]) != w_dim:
        raise ValueError(f"{who}: z_dim {int(sd['mapping.fc0.weight'].shape[1])} != w_dim {w_dim}; this "
                         "architecture has z_dim == w_dim")
    channel_max = int(sd["synthesis.b4.const"].shape[0])
    channels = {r: int(sd[f"synthesis.b{r}.torgb.weight"].shape[1]) for r in res}
    channel_base = channels[R] * R  # NVlabs: channels(r) = min(channel_base // r, channel_max)
    if any(min(channel_base // r, channel_max) != c for r, c in channels.items()):
        raise ValueError(f"{who}: channels per resolution {channels} follow no min(channel_base // r, channel_max) "
                         "rule")
    return dict(resolution=R, channel_base=channel_base, channel_max=channel_max, w_dim=w_dim,
                num_mapping=len(fcs))


def from_checkpoint(path, *, space="wplus", layers=None, device="cpu"):
    """A StyleGAN2 generator from a checkpoint file of weights: an NVlabs-named state dict (``G_ema.state_dict()``)
    saved with ``torch.save`` (``.pt``/``.pth``, optionally under a ``"G_ema"`` key) or as ``.safetensors``.

    Loading runs no code from the file (``torch.load(weights_only=True)`` or safetensors). A network pickle
    (``.pkl``) runs its own code when loaded, so it is refused here: load one you trust with
    :func:`load_nvlabs_pickle` and wrap it with :func:`from_nvlabs`. A rosinality checkpoint (``"g_ema"``) needs
    rosinality's ``Generator`` class: build it, load the state dict, and wrap it with :func:`from_rosinality`.
    """
    from .stylegan2 import stylegan2

    who, path = "from_checkpoint", str(path)
    if path.endswith(".pkl"):
        raise ValueError(f"{who}: {path} is a network pickle, which runs its own code when loaded; for a file you "
                         "trust use models.load_nvlabs_pickle(path, trusted=True) and models.from_nvlabs(G)")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            sd = load_file(path)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file gets the same one-line answer
        raise ValueError(f"{who}: {path} is not a readable weights file ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if isinstance(sd, dict) and "g_ema" in sd:
        raise ValueError(f"{who}: {path} is a rosinality checkpoint; build rosinality's Generator, load "
                         "ckpt['g_ema'] into it and wrap it with models.from_rosinality(g)")
    if isinstance(sd, dict) and isinstance(sd.get("G_ema"), dict):
        sd = sd["G_ema"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{who}: {path} holds no state dict of tensors")
    G = stylegan2(space=space, layers=layers, **_infer_stylegan2(sd, f"{who}: {path}"))
    try:
        G.load_state_dict(sd)
    except RuntimeError as exc:
        raise ValueError(f"{who}: {path} does not fit the StyleGAN2 it describes: {str(exc).splitlines()[0]}") from None
    return G.to(device)


__all__ = ["NVlabsGenerator", "RosinalityGenerator", "from_nvlabs", "from_rosinality", "from_checkpoint", "use_reference_ops",
           "load_nvlabs_pickle"]
