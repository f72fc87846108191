"""Adapters against objects with exactly the users' interfaces (NVlabs ADA, NVlabs StyleGAN3, rosinality), built
here on our StyleGAN2: same images as calling our module directly, deterministic noise, the double-VJP fallback."""
import sys
import types

import pytest
import torch
from torch import nn

import lowrankedit as le
from lowrankedit.models import from_nvlabs, from_rosinality, stylegan2

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(channel_base=128, channel_max=16, w_dim=16)
BOX = le.Region.box(4, 5, 6, 7, size=(16, 16))


def core(space="wplus", **kw):
    return stylegan2(16, space=space, **{**SMALL, **kw})


# ------------------------------------------------------------------------------------------------------------
# Shims with NVlabs' and rosinality's call signatures (keywords a version lacks are a TypeError, as there)


class AdaMapping(nn.Module):
    """stylegan2-ada-pytorch ``MappingNetwork.forward(z, c, truncation_psi=1, truncation_cutoff=None,
    skip_w_avg_update=False)``; updates ``w_avg`` in training mode."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = net.z_dim, 0, net.w_dim, net.num_ws

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False):
        assert c is None or c.shape[1] == 0
        ws = self.net.mapping(z, None, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        if self.training and not skip_w_avg_update:
            self.net.mapping.w_avg.copy_(ws[:, 0].detach().mean(0).lerp(self.net.mapping.w_avg, 0.995))
        return ws


class AdaSynthesis(nn.Module):
    """``SynthesisNetwork.forward(ws, **block_kwargs)``; blocks take ``force_fp32``, ``fused_modconv`` and the layers'
    ``noise_mode`` (default "random")."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.block_resolutions = net.synthesis.block_resolutions
        self.num_ws, self.w_dim = net.num_ws, net.w_dim

    @staticmethod
    def block(blk, x, img, ws, force_fp32=False, fused_modconv=None, noise_mode="random"):
        return blk(x, img, ws, noise_mode=noise_mode)

    def forward(self, ws, **block_kwargs):
        assert ws.shape[1:] == (self.num_ws, self.w_dim)
        x = img = None
        for res, cur in self.net.synthesis.block_ws(ws).items():
            x, img = self.block(getattr(self.net.synthesis, f"b{res}"), x, img, cur, **block_kwargs)
        return img


class NoJvpIdentity(torch.autograd.Function):
    """Like NVlabs' CUDA ops: an old-style Function, no ``jvp``, no ``setup_context``; its backward is itself
    differentiable, so double backward works."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * 1.0


class SG3Synthesis(nn.Module):
    """stylegan3 ``SynthesisNetwork``: ``layer_names``; layers take ``noise_mode`` (ignored), ``force_fp32`` and
    ``update_emas``; no ``fused_modconv``. The output passes through a custom Function without forward mode."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.num_ws, self.w_dim = net.num_ws, net.w_dim
        self.layer_names = [f"L{i}_{r}_{net.synthesis.channels[r]}" for i, r in
                            enumerate(net.synthesis.block_resolutions)]

    @staticmethod
    def layer(x, w, noise_mode="random", force_fp32=False, update_emas=False):
        return x

    def forward(self, ws, **layer_kwargs):
        assert ws.shape[1:] == (self.num_ws, self.w_dim)
        self.layer(None, None, **layer_kwargs)  # the keyword check NVlabs' layers make
        return NoJvpIdentity.apply(self.net.synthesis(ws, noise_mode="const"))


class NVlabsShim(nn.Module):
    def __init__(self, net, sg3=False):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = net.z_dim, 0, net.w_dim
        self.img_resolution, self.img_channels, self.num_ws = net.img_resolution, 3, net.num_ws
        self.mapping = AdaMapping(net)
        self.synthesis = SG3Synthesis(net) if sg3 else AdaSynthesis(net)
        self.train()  # as a user's freshly unpickled G_ema may be


class RosinalityShim(nn.Module):
    """rosinality ``Generator.forward(styles, return_latents=False, inject_index=None, truncation=1,
    truncation_latent=None, input_is_latent=False, noise=None, randomize_noise=True) -> (image, latent)``."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.size, self.style_dim, self.n_latent = net.img_resolution, net.w_dim, net.num_ws
        self.style = lambda z: net.mapping(z)[:, 0]

    def mean_latent(self, n_latent):
        return self.style(torch.randn(n_latent, self.style_dim)).mean(0, keepdim=True)

    def forward(self, styles, return_latents=False, inject_index=None, truncation=1, truncation_latent=None,
                input_is_latent=False, noise=None, randomize_noise=True):
        assert isinstance(styles, list)
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if truncation < 1:
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        latent = styles[0] if styles[0].dim() == 3 else styles[0][:, None].repeat(1, self.n_latent, 1)
        image = self.net.synthesis(latent, noise_mode="random" if randomize_noise else "const")
        return image, (latent if return_latents else None)


SPACES = [("z", None), ("w", None), ("wplus", None), ("w", (1, 2, 3))]


@pytest.mark.parametrize("sg3", [False, True], ids=["ada", "sg3"])
@pytest.mark.parametrize("space,layers", SPACES)
def test_nvlabs_adapter_same_images(sg3, space, layers):
    ours = core(space, layers=layers)
    G = from_nvlabs(NVlabsShim(core(), sg3=sg3), space=space, layers=layers)
    assert G.is_stylegan3 is sg3
    assert G.latent_shape == ours.latent_shape and G.num_ws == 6
    lat = ours.sample_latents(3, seed=2)
    assert torch.equal(G.sample_latents(3, seed=2), lat)
    assert torch.allclose(G.synthesize(lat), ours.synthesize(lat), atol=1e-6)
    d = torch.randn(16)
    assert torch.allclose(le.edit(G, lat, d, [1.0, -2.0]), le.edit(ours, lat, d, [1.0, -2.0]), atol=1e-6)


def test_nvlabs_adapter_eval_mode_and_keywords():
    shim = NVlabsShim(core())
    before = shim.mapping.net.mapping.w_avg.clone()
    shim.mapping(torch.randn(4, 16), None)  # training mode: w_avg moves (why the adapter calls eval)
    assert not torch.equal(shim.mapping.net.mapping.w_avg, before)
    G = from_nvlabs(shim)
    assert not shim.training
    avg = shim.mapping.net.mapping.w_avg.clone()
    G.sample_latents(4)
    assert torch.equal(shim.mapping.net.mapping.w_avg, avg)
    # the shims are strict, as NVlabs' code is: a keyword the version lacks is a TypeError
    with pytest.raises(TypeError):
        NVlabsShim(core(), sg3=True).synthesis(G.sample_latents(1), fused_modconv=True)
    with pytest.raises(TypeError):
        shim.synthesis(G.sample_latents(1), update_emas=False)


def test_nvlabs_truncation():
    ours = core("wplus", truncation_psi=0.6, truncation_cutoff=3)
    G = from_nvlabs(NVlabsShim(core()), truncation_psi=0.6, truncation_cutoff=3)
    assert torch.allclose(G.sample_latents(2, seed=1), ours.sample_latents(2, seed=1))


def test_random_noise_refused():
    with pytest.raises(ValueError, match="expected noise_mode in .* got 'random'"):
        from_nvlabs(NVlabsShim(core()), noise_mode="random")
    with pytest.raises(ValueError, match="randomize_noise=True draws new noise"):
        from_rosinality(RosinalityShim(core()), randomize_noise=True)
    # and the shims show why: random noise changes the image from call to call
    net = core(noise_strength=0.5)
    ws = net.sample_latents(1)
    assert not torch.equal(AdaSynthesis(net)(ws), AdaSynthesis(net)(ws))


def test_nvlabs_adapter_refusals():
    class Cond(NVlabsShim):
        pass

    shim = Cond(core())
    shim.c_dim = 10
    with pytest.raises(ValueError, match="conditional"):
        from_nvlabs(shim)
    with pytest.raises(TypeError, match="lacks mapping"):
        from_nvlabs(nn.Linear(2, 2))
    G = from_nvlabs(NVlabsShim(core()), space="w")
    with pytest.raises(ValueError, match=r"expected latents of shape \(n, 16\) \(space 'w'\)"):
        G.synthesize(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"W\+ direction .* cannot apply to W codes"):
        le.edit(G, G.sample_latents(1), torch.randn(6, 16), [1.0])


@pytest.mark.parametrize("space,layers", SPACES)
def test_rosinality_adapter_same_images(space, layers):
    ours = core(space, layers=layers)
    G = from_rosinality(RosinalityShim(core()), space=space, layers=layers)
    lat = ours.sample_latents(2, seed=4)
    assert torch.equal(G.sample_latents(2, seed=4), lat)
    assert torch.allclose(G.synthesize(lat), ours.synthesize(lat), atol=1e-6)


def test_rosinality_truncation():
    g = RosinalityShim(core())
    with pytest.raises(ValueError, match="needs truncation_latent"):
        from_rosinality(g, truncation_psi=0.5)
    mean = g.mean_latent(256)
    G = from_rosinality(g, truncation_psi=0.5, truncation_latent=mean)
    w = from_rosinality(g).sample_latents(2, seed=0)
    assert torch.allclose(G.sample_latents(2, seed=0), mean[:, None] + 0.5 * (w - mean[:, None]), atol=1e-6)


def test_custom_function_without_jvp_falls_back_to_double_vjp():
    """The StyleGAN3 shim ends in an autograd.Function with no jvp: forward mode fails, ``mode="auto"`` takes two
    reverse passes, records it in ``meta``, and the Grams still match the float64 reference on our module."""
    G = from_nvlabs(NVlabsShim(core(), sg3=True)).double()
    wp = G.sample_latents(1, seed=3)[0]
    with pytest.raises(RuntimeError):
        torch.func.jvp(G.synthesize, (wp[None],), (torch.ones_like(wp[None]),))
    gram = le.jacobian_gram(G, wp, BOX, progress=False)
    assert gram.meta["jvp"] == "double_vjp" and gram.meta["mode"] == "double_vjp"
    assert "forward mode failed" in gram.meta["mode_reason"]
    ref = le.reference.jacobian_gram(core("wplus"), wp, BOX)
    assert ((gram.fg - ref.fg).norm() / ref.fg.norm()) < 1e-10
    assert ((gram.bg - ref.bg).norm() / ref.bg.norm()) < 1e-10
    # without the custom op the forward route is taken
    assert le.jacobian_gram(from_nvlabs(NVlabsShim(core())), wp.float(), BOX, progress=False).meta["jvp"] == "forward"


def test_use_reference_ops():
    names = ["torch_utils.ops.bias_act", "torch_utils.ops.upfirdn2d", "torch_utils.ops.filtered_lrelu",
             "torch_utils.ops.conv2d_gradfix"]
    fakes = {}
    for name in names:
        m = types.ModuleType(name)
        m._init = lambda: True
        m.enabled = True
        fakes[name] = m
    saved = {n: sys.modules.get(n) for n in names}
    sys.modules.update(fakes)
    try:
        changed = le.models.use_reference_ops()
        assert sorted(changed) == sorted(names)
        for name in names[:3]:
            assert fakes[name]._init() is False
        assert fakes[names[3]].enabled is False
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def test_load_nvlabs_pickle_needs_trust(tmp_path):
    with pytest.raises(PermissionError, match="runs the code inside the pickle"):
        le.models.load_nvlabs_pickle(tmp_path / "network.pkl")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_from_checkpoint_rebuilds_the_generator_from_its_weights(tmp_path, suffix):
    from safetensors.torch import save_file

    G = le.models.stylegan2(16, channel_base=128, channel_max=16, w_dim=8, num_mapping=2, seed=3)
    path = tmp_path / f"g{suffix}"
    sd = {k: v.contiguous() for k, v in G.state_dict().items()}
    save_file(sd, str(path)) if suffix == ".safetensors" else torch.save({"G_ema": sd}, path)
    H = le.models.from_checkpoint(path, space="wplus")
    assert (H.num_ws, H.w_dim) == (G.num_ws, G.w_dim)
    ws = G.sample_latents(2, seed=1)
    torch.testing.assert_close(H.synthesize(ws), G.synthesize(ws), rtol=0, atol=0)


def test_from_checkpoint_refuses_pickles_and_foreign_files(tmp_path):
    (tmp_path / "net.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ValueError, match="network pickle, which runs its own code"):
        le.models.from_checkpoint(tmp_path / "net.pkl")
    torch.save({"g_ema": {"x": torch.zeros(1)}}, tmp_path / "ros.pt")
    with pytest.raises(ValueError, match="rosinality checkpoint"):
        le.models.from_checkpoint(tmp_path / "ros.pt")
    torch.save({"w": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a StyleGAN2 state dict"):
        le.models.from_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable weights file"):
        le.models.from_checkpoint(tmp_path / "junk.pt")
