"""StyleGAN2 in Z / W / W+ / layer subsets: the chain rule through the broadcast, the W+ Gram against reverse mode,
NVlabs names, features, and the direction rule of ``edit``."""
import pytest
import torch
import torch.nn.functional as F

import lowrankedit as le
from lowrankedit.models import stylegan2
from lowrankedit.models.stylegan2 import modulated_conv2d, setup_filter, upsample2d

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(channel_base=128, channel_max=16, w_dim=16)  # 16 px: num_ws = 6, W+ has 96 entries
BOX = le.Region.box(4, 5, 6, 7, size=(16, 16))


def small(space="wplus", **kw):
    return stylegan2(16, space=space, **{**SMALL, **kw})


def broadcast_matrix(num_ws, w_dim, layers=None):
    """``S`` with ``vec(ws) = S w``: ``1_{num_ws} (x) I`` (rows of the layers outside ``layers`` zero)."""
    ones = torch.ones(num_ws, 1, dtype=torch.float64)
    if layers is not None:
        ones = torch.zeros(num_ws, 1, dtype=torch.float64)
        ones[list(layers)] = 1
    return torch.kron(ones, torch.eye(w_dim, dtype=torch.float64))


def test_num_ws_and_nvlabs_block_rule():
    for res, num_ws in ((16, 6), (32, 8), (64, 10)):
        G = stylegan2(res, channel_base=4 * res, channel_max=8, w_dim=8)
        assert G.num_ws == num_ws == 2 * (res.bit_length() - 1) - 2
        assert G.latent_shape == (num_ws, 8)
        assert G.layers == tuple(f"b{2 ** i}" for i in range(3, res.bit_length()))


def test_same_seed_same_weights_whatever_the_space():
    ref = small("wplus").state_dict()
    for space, layers in (("z", None), ("w", None), ("w", range(1, 3))):
        sd = small(space, layers=layers).state_dict()
        assert sorted(sd) == sorted(ref)
        for k in ref:
            assert torch.equal(sd[k], ref[k]), (space, k)
    other = small("wplus", seed=1).state_dict()
    assert not torch.equal(other["synthesis.b8.conv0.weight"], ref["synthesis.b8.conv0.weight"])


def test_spaces_give_the_same_images():
    Gz, Gw, Gp = small("z"), small("w"), small("wplus")
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(5))
    ws = Gz.map_z(z)
    assert torch.allclose(ws, ws[:, :1].expand_as(ws))  # one W broadcast to every layer
    img = Gz.synthesize(z)
    assert torch.allclose(Gw.synthesize(ws[:, 0]), img, atol=1e-6)
    assert torch.allclose(Gp.synthesize(ws), img, atol=1e-6)
    # sample_latents: the same z drawn, mapped
    assert torch.allclose(Gp.sample_latents(2, seed=3)[:, 0], Gw.sample_latents(2, seed=3))
    assert torch.allclose(Gw.sample_latents(2, seed=3), Gz.map_z(Gz.sample_latents(2, seed=3))[:, 0])


def test_truncation():
    G = small("wplus")
    avg = G.mapping.w_avg
    assert torch.allclose(G.sample_latents(2, truncation_psi=0.0), avg.expand(2, 6, -1))
    w1 = G.sample_latents(2, truncation_psi=1.0)
    half = G.sample_latents(2, truncation_psi=0.5)
    assert torch.allclose(half, avg + 0.5 * (w1 - avg), atol=1e-6)
    cut = small("wplus", truncation_psi=0.5, truncation_cutoff=2).sample_latents(2)
    assert torch.allclose(cut[:, :2], half[:, :2], atol=1e-6) and torch.allclose(cut[:, 2:], w1[:, 2:])
    with pytest.raises(ValueError, match="truncation is part of the generator"):
        small("z").sample_latents(2, truncation_psi=0.7)
    with pytest.raises(ValueError, match="truncation_cutoff=2 .* needs space='wplus'"):
        small("w", truncation_cutoff=2)


def test_w_gram_is_broadcast_of_wplus_gram():
    """The chain rule through the broadcast: ``J_W = J_W+ S`` so ``G_W = S^T G_W+ S`` (float64 generators)."""
    Gp, Gw = small("wplus").double(), small("w").double()
    w = Gw.sample_latents(2, seed=1)
    gp = le.jacobian_gram(Gp, Gp.to_ws(w, "w"), BOX, progress=False)
    gw = le.jacobian_gram(Gw, w, BOX, progress=False)
    S = broadcast_matrix(6, 16)
    for a, b in ((gw.fg, gp.fg), (gw.bg, gp.bg)):
        want = S.T @ b @ S
        assert ((a - want).norm() / want.norm()) < 1e-5
    assert (gw.fg - S.T @ gp.fg @ S).abs().max() < 1e-5 * gw.fg.abs().max()


def test_layer_subset_gram():
    """With ``layers=L`` only those ws move: in W the Gram is ``S_L^T G_W+ S_L``; in W+ it is zero outside L."""
    L = (1, 2, 3)
    Gp = small("wplus").double()
    GwL, GpL = small("w", layers=range(1, 4)).double(), small("wplus", layers=L).double()
    w = GwL.sample_latents(1, seed=2)
    gp = le.jacobian_gram(Gp, Gp.to_ws(w, "w"), BOX, progress=False)
    gwl = le.jacobian_gram(GwL, w, BOX, progress=False)
    SL = broadcast_matrix(6, 16, L)
    assert ((gwl.fg - SL.T @ gp.fg @ SL).norm() / gwl.fg.norm()) < 1e-5
    gpl = le.jacobian_gram(GpL, Gp.to_ws(w, "w"), BOX, progress=False)
    keep = SL.sum(1) > 0
    assert torch.allclose(gpl.fg[keep][:, keep], gp.fg[keep][:, keep], rtol=1e-9, atol=1e-12)
    assert gpl.fg[~keep].abs().max() == 0 and gpl.bg[:, ~keep].abs().max() == 0


def test_wplus_gram_matches_reverse_mode_jacobian():
    G = small("wplus")
    wp = G.sample_latents(1, seed=4)[0]
    got = le.jacobian_gram(G.double(), wp.double(), BOX, progress=False)
    assert got.meta["mode"] == "forward" and got.meta["jvp"] == "forward"
    Gd = small("wplus").double()

    def rows(flat):
        return Gd.synthesize(flat.view(1, 6, 16))[0].mean(0).reshape(-1)

    J = torch.autograd.functional.jacobian(rows, wp.double().reshape(-1))  # one reverse pass per pixel
    m = BOX.mask(16, 16, dtype=torch.float64).reshape(-1)
    fg = (J * m[:, None]).T @ J / m.sum()
    bg = (J * (1 - m)[:, None]).T @ J / (1 - m).sum()
    assert ((got.fg - fg).norm() / fg.norm()) < 1e-10
    assert ((got.bg - bg).norm() / bg.norm()) < 1e-10
    ref = le.reference.jacobian_gram(small("wplus"), wp, BOX)
    assert ((ref.fg - fg).norm() / fg.norm()) < 1e-10


NVLABS_LAYER = ["weight", "bias", "noise_strength", "noise_const", "resample_filter", "affine.weight", "affine.bias"]
NVLABS_TORGB = ["weight", "bias", "affine.weight", "affine.bias"]


def nvlabs_names(res, num_mapping=8):
    """NVlabs' G_ema state-dict names for a skip StyleGAN2 at ``res`` (written out from their naming, not ours)."""
    names = [f"mapping.fc{i}.{p}" for i in range(num_mapping) for p in ("weight", "bias")] + ["mapping.w_avg"]
    r = 4
    while r <= res:
        b = f"synthesis.b{r}"
        names += [f"{b}.resample_filter"] + [f"{b}.torgb.{p}" for p in NVLABS_TORGB]
        names += [f"{b}.conv1.{p}" for p in NVLABS_LAYER]
        names += [f"{b}.const"] if r == 4 else [f"{b}.conv0.{p}" for p in NVLABS_LAYER]
        r *= 2
    return sorted(names)


def test_nvlabs_names_and_state_dict_round_trip(tmp_path):
    G = small("wplus", seed=3)
    sd = G.state_dict()
    assert sorted(sd) == nvlabs_names(16)
    assert sd["synthesis.b4.const"].shape == (16, 4, 4)
    assert sd["synthesis.b8.conv0.weight"].shape == (16, 16, 3, 3)
    assert sd["synthesis.b16.conv1.weight"].shape == (8, 8, 3, 3)
    assert sd["synthesis.b16.torgb.weight"].shape == (3, 8, 1, 1)
    assert sd["synthesis.b8.conv0.affine.weight"].shape == (16, 16)
    assert sd["synthesis.b8.resample_filter"].shape == (4, 4)
    # written to a file under those names (as a converted G_ema would be), loaded into a differently seeded model
    path = tmp_path / "g_ema.pt"
    torch.save({k: v.clone() for k, v in sd.items()}, path)
    H = small("w", seed=0)
    w = H.sample_latents(2, seed=9)
    before = H.synthesize(w)
    H.load_state_dict(torch.load(path, weights_only=True))
    after = H.synthesize(w)
    ref = G.synthesize(G.to_ws(w, "w"))
    assert (after - before).abs().max() > 1e-2
    assert torch.equal(after, ref)


def test_modulated_conv_equals_nvlabs_fused_form():
    """Our non-fused modulated conv against NVlabs' fused grouped form (weights modulated per sample)."""
    g = torch.Generator().manual_seed(0)
    x, wt = torch.randn(3, 4, 8, 8, generator=g), torch.randn(5, 4, 3, 3, generator=g)
    s = torch.randn(3, 4, generator=g)
    f = setup_filter()
    w = wt[None] * s[:, None, :, None, None]
    w = w * (w.square().sum([2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]  # (n, O, I, 3, 3)
    xg = x.reshape(1, -1, 8, 8)
    same = F.conv2d(xg, w.reshape(-1, 4, 3, 3), padding=1, groups=3).reshape(3, 5, 8, 8)
    assert torch.allclose(modulated_conv2d(x, wt, s, padding=1), same, atol=1e-5)
    # up=2: transposed grouped conv (weights (n*I, O, k, k)), then pad (1, 1), blur with gain 4
    wtr = w.transpose(1, 2).reshape(3 * 4, 5, 3, 3)
    y = F.conv_transpose2d(xg, wtr, stride=2, groups=3)
    y = F.conv2d(F.pad(y, [1, 1, 1, 1]), (4 * f).expand(15, 1, 4, 4), groups=15).reshape(3, 5, 16, 16)
    assert torch.allclose(modulated_conv2d(x, wt, s, up=2, padding=1, resample_filter=f), y, atol=1e-5)


def test_upsample2d_hand_values():
    f = setup_filter()
    assert torch.allclose(f.sum(), torch.tensor(1.0)) and torch.allclose(f[0, 0], torch.tensor(1 / 64))
    ones = upsample2d(torch.ones(1, 1, 4, 4), f)
    assert ones.shape == (1, 1, 8, 8)
    assert torch.allclose(ones[..., 2:-2, 2:-2], torch.ones(1, 1, 4, 4))  # gain 4 keeps a constant constant
    # one impulse -> the [1,3,3,1] x [1,3,3,1] / 16 pattern (gain 4 over 64)
    imp = torch.zeros(1, 1, 4, 4)
    imp[0, 0, 1, 1] = 1
    up = upsample2d(imp, f)[0, 0]
    k = torch.tensor([1.0, 3, 3, 1])
    assert torch.allclose(up[1:5, 1:5], torch.outer(k, k) / 16)


@pytest.mark.parametrize("layer", ["b8", "b16"])
def test_features_and_resume(layer):
    G = small("wplus")
    wp = G.sample_latents(3, seed=1)
    f = G.features(wp, layer)
    res = int(layer[1:])
    assert f.shape == (3, G.synthesis.channels[res], res, res)
    assert torch.allclose(G.synthesize_from(f, layer, wp), G.synthesize(wp), atol=1e-6)
    many = G.features_many(wp, ["b16", "b8"])
    assert torch.equal(many[layer], f)
    # an edit of the features reaches the image (through the block's toRGB too)
    moved = G.synthesize_from(f + 0.5 * torch.randn_like(f), layer, wp)
    assert (moved - G.synthesize(wp)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="no layer 'b4x'"):
        G.features(wp, "b4x")


def test_forward_mode_and_vmap_pass():
    G = small("wplus").double()
    wp = G.sample_latents(2, seed=0)
    t = torch.randn_like(wp)
    _, jv = torch.func.jvp(G.synthesize, (wp,), (t,))
    eps = 1e-7  # small enough to stay off the leaky-ReLU kinks
    fd = (G.synthesize(wp + eps * t) - G.synthesize(wp - eps * t)) / (2 * eps)
    assert ((jv - fd).norm() / jv.norm()) < 1e-5
    batched = torch.func.vmap(lambda c: G.synthesize(c[None])[0])(wp)
    assert torch.allclose(batched, G.synthesize(wp), atol=1e-10)


def test_edit_w_direction_on_wplus_codes_is_broadcast():
    G = small("wplus")
    wp = G.sample_latents(2, seed=1)
    d = torch.randn(16)
    got = le.edit(G, wp, d, [-1.0, 2.0])
    want = le.edit(G, wp, d[None].expand(6, -1).contiguous(), [-1.0, 2.0])
    assert got.shape == (2, 2, 3, 16, 16)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(got[:, 1], G.synthesize(wp + 2.0 * d), atol=1e-6)


def test_edit_accepts_wplus_codes_on_w_generator():
    Gw, Gp = small("w"), small("wplus")
    w = Gw.sample_latents(2, seed=1)
    wp = Gp.to_ws(w, "w").contiguous()
    d = torch.randn(16)
    assert torch.allclose(le.edit(Gw, wp, d, [1.5]), le.edit(Gw, w, d, [1.5]), atol=1e-6)
    dp = torch.randn(6, 16)
    assert torch.allclose(le.edit(Gw, wp, dp, [1.5])[:, 0], Gp.synthesize(wp + 1.5 * dp), atol=1e-6)


def test_edit_refuses_wplus_direction_on_w_codes():
    G = small("w")
    with pytest.raises(ValueError, match=r"W\+ direction \(6, 16\) cannot apply to W codes"):
        le.edit(G, G.sample_latents(2), torch.randn(6, 16), [1.0])


def test_edit_with_layers_moves_only_those_ws():
    G = small("w", layers=range(2, 4))
    w = G.sample_latents(2, seed=3)
    d = torch.randn(16)
    ws = G.to_ws(w).clone()
    ws[:, 2:4] += 1.5 * d
    assert torch.allclose(le.edit(G, w, d, [1.5])[:, 0], G.synthesize_ws(ws), atol=1e-6)
    Gp = small("wplus", layers=[2, 3])
    dp = torch.zeros(6, 16)
    dp[2:4] = torch.randn(2, 16)
    wp = Gp.sample_latents(2, seed=3)
    assert torch.allclose(le.edit(Gp, wp, dp, [1.0])[:, 0], Gp.synthesize_ws(wp + dp), atol=1e-6)
    dp[0] = 1.0
    with pytest.raises(ValueError, match=r"outside the generator's layers \[2, 3\]"):
        le.edit(Gp, wp, dp, [1.0])


def test_z_directions():
    G = small("z")
    z = G.sample_latents(2, seed=0)
    d = torch.randn(16)
    assert torch.allclose(le.edit(G, z, d, [1.0])[:, 0], G.synthesize(z + d), atol=1e-6)
    Gw = small("w")
    with pytest.raises(ValueError, match=r"expected a direction of shape \(16,\) in W or \(6, 16\) in W\+"):
        le.edit(Gw, Gw.sample_latents(1), torch.randn(5), [1.0])


@pytest.mark.parametrize("shape", [(2, 7, 16), (2, 16), (16,)])
def test_wrong_latent_shape_refused(shape):
    G = small("wplus")
    with pytest.raises(ValueError, match=r"expected latents of shape \(n, 6, 16\) \(space 'wplus'\)"):
        G.synthesize(torch.randn(*shape))
    with pytest.raises(ValueError, match="expected latents of shape"):
        le.edit(G, torch.randn(*shape), torch.randn(16), [1.0])


def test_bad_arguments_refused():
    with pytest.raises(ValueError, match="random noise makes images and Jacobians non-deterministic"):
        le.models.StyleGAN2(16, noise_mode="random", **SMALL)
    with pytest.raises(ValueError, match="expected space in"):
        small("w+")
    with pytest.raises(ValueError, match="needs space='w' or 'wplus', got space='z'"):
        small("z", layers=[1])
    with pytest.raises(ValueError, match=r"non-empty subset of range\(6\)"):
        small("wplus", layers=[6])
    with pytest.raises(ValueError, match="power of two"):
        stylegan2(24, **SMALL)


def test_methods_run_in_wplus():
    """ReSeFa and LowRankGAN on a W+ Gram, LELSD and PandA on the feature layers, at 16 px (smoke + shapes)."""
    G = small("wplus")
    gram = le.jacobian_gram(G, G.sample_latents(2, seed=0), BOX, progress=False)
    d = le.resefa(gram, k=2)
    assert d.vectors.shape == (2, 6, 16)
    assert le.edit(G, G.sample_latents(1), d[0], [1.0]).shape == (1, 1, 3, 16, 16)
    lr = le.lowrankgan(gram)
    assert lr.vectors.shape[1:] == (6, 16)
    ls = le.lelsd(G, le.segmenters.StaticRegion(BOX), layers=("b8", "image"), steps=3, batch_size=2, eval_samples=2)
    assert ls.vectors.shape == (1, 6, 16)
    pa = le.panda(G, "b8", ranks=(4, 2), n_samples=8, iters=3, progress=False)
    assert pa.edit(G.sample_latents(2), 0, 0, 1.0).shape == (2, 3, 16, 16)
