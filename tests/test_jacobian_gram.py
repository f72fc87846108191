"""jacobian_gram on the real DCGAN against the float64 reference and the reverse-mode Jacobian; modes agree."""
import pytest
import torch
import torch.nn.functional as F

import lowrankedit
from lowrankedit import Region, reference
from lowrankedit.jacobian_gram import jacobian_gram

TOL = 1e-4  # relative, Frobenius norm, per Gram


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def _assert_close(got, ref, tol=TOL):
    assert _rel(got.fg, ref.fg) < tol, _rel(got.fg, ref.fg)
    assert _rel(got.bg, ref.bg) < tol, _rel(got.bg, ref.bg)
    assert got.n_fg == pytest.approx(ref.n_fg, rel=1e-12) and got.n_bg == pytest.approx(ref.n_bg, rel=1e-12)


class _Subspace(torch.nn.Module):
    """The real DCGAN restricted to a 12-d affine slice of its latent space, z = z0 + A u: the same network, 8x fewer
    Jacobian columns, so the slower modes (double-VJP, matrix-free) stay cheap in the tests."""

    latent_shape = (12,)

    def __init__(self, G, k=12):
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.G = G
        self.register_buffer("z0", torch.randn(100, generator=g))
        self.register_buffer("A", torch.linalg.qr(torch.randn(100, k, generator=g))[0])

    def synthesize(self, u):
        return self.G.synthesize(self.z0 + u @ self.A.mT)


@pytest.fixture(scope="module")
def sub(dcgan):
    return _Subspace(dcgan)


@pytest.fixture(scope="module")
def u():
    return torch.randn(12, generator=torch.Generator().manual_seed(11))


@pytest.fixture(scope="module")
def z(dcgan):
    return dcgan.sample_latents(3, seed=7)


@pytest.fixture(scope="module")
def soft():
    # A soft elliptical mask around the mouth with weights strictly between 0 and 1 on its rim.
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    r = ((yy - 49) / 9) ** 2 + ((xx - 32) / 14) ** 2
    return Region.from_mask((1.5 - r).clamp(0, 1), name="soft mouth")


@pytest.fixture(scope="module")
def ref_box(dcgan, z, mouth):
    return reference.jacobian_gram(dcgan, z[0], mouth)


@pytest.fixture(scope="module")
def ref_sub_soft_channels(sub, u, soft):
    return reference.jacobian_gram(sub, u, soft, size=(32, 32), fuse_channels=False)


@pytest.fixture(scope="module")
def ref_sub_box(sub, u, mouth):
    return reference.jacobian_gram(sub, u, mouth)


def test_forward_matches_reference_box_fused(dcgan, z, mouth, ref_box):
    g = jacobian_gram(dcgan, z[0], mouth, progress=False)
    assert g.meta["mode"] == "forward" and g.meta["jvp"] == "forward"
    assert g.fg.shape == (100, 100) and g.n_fg == 14 * 24 and g.n_bg == 64 * 64 - 14 * 24
    assert torch.equal(g.fg, g.fg.mT)
    _assert_close(g, ref_box)


@pytest.mark.parametrize("mode", ["forward", "double_vjp", "matrix_free"])
def test_modes_match_reference_soft_per_channel(sub, u, soft, ref_sub_soft_channels, mode):
    g = jacobian_gram(sub, u, soft, size=(32, 32), fuse_channels=False, mode=mode, chunk=5, progress=False)
    assert g.meta["mode"] == mode and g.meta["rows"] == 3 * 32 * 32 and g.fg.shape == (12, 12)
    assert 0 < g.n_fg < 3 * 32 * 32 and g.n_fg != round(g.n_fg)  # soft weights really are soft
    _assert_close(g, ref_sub_soft_channels)


def test_matches_reverse_mode_jacobian(dcgan, z, mouth, soft):
    # The official route: the whole Jacobian by reverse mode (torch.autograd.functional.jacobian, one backward pass
    # per row), then the Grams. All 100 latent entries; a small grid keeps the reverse loop short (3*6*6 rows, one
    # Jacobian for both cases: the fused rows are the channel means of the per-channel rows).
    size = (6, 6)

    def rows(flat):
        return F.interpolate(dcgan.synthesize(flat[None]), size=size, mode="nearest")[0].reshape(-1)

    Jc = torch.autograd.functional.jacobian(rows, z[2]).double()  # (3*36, 100)
    Jf = Jc.view(3, 36, 100).mean(0)
    for region, fuse, J, reps in ((mouth, True, Jf, 1), (soft, False, Jc, 3)):
        m = region.mask(*size, dtype=torch.float64).reshape(-1).repeat(reps)
        g = jacobian_gram(dcgan, z[2], region, size=size, fuse_channels=fuse, progress=False)
        assert 0 < g.n_fg < J.shape[0]
        assert _rel(g.fg, (J * m[:, None]).T @ J / m.sum()) < TOL, (region, fuse)
        assert _rel(g.bg, (J * (1 - m)[:, None]).T @ J / (1 - m).sum()) < TOL, (region, fuse)


def test_batch_is_the_average(sub, mouth):
    us = torch.randn(2, 12, generator=torch.Generator().manual_seed(2))
    both = jacobian_gram(sub, us, mouth, progress=False)
    one = [jacobian_gram(sub, us[i], mouth, progress=False) for i in range(2)]
    assert both.meta["n_images"] == 2
    assert _rel(both.fg, (one[0].fg + one[1].fg) / 2) < 1e-6
    assert _rel(both.bg, (one[0].bg + one[1].bg) / 2) < 1e-6


class _NoForwardTanh(torch.autograd.Function):
    """tanh with a hand-written backward and no forward-mode rule, like the custom ops of StyleGAN2."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y * y)


class _CustomOpDCGAN:
    """The subspace DCGAN with its final tanh replaced by a custom autograd function (no forward-mode rule)."""

    def __init__(self, sub):
        self.sub, self.latent_shape = sub, sub.latent_shape

    def synthesize(self, u):
        z = self.sub.z0 + u @ self.sub.A.mT
        x = self.sub.G.main[:-1](z.reshape(-1, 100, 1, 1))
        return _NoForwardTanh.apply(x)


def test_auto_falls_back_to_double_vjp(sub, u, mouth, ref_sub_box):
    g = jacobian_gram(_CustomOpDCGAN(sub), u, mouth, progress=False)
    assert g.meta["mode"] == "double_vjp" and "forward mode failed" in g.meta["mode_reason"]
    _assert_close(g, ref_sub_box)
    with pytest.raises(RuntimeError):
        jacobian_gram(_CustomOpDCGAN(sub), u, mouth, mode="forward", progress=False)
    # Matrix-free with forward mode unavailable: J e_k from two VJPs, then J^T (w * J e_k).
    g = jacobian_gram(_CustomOpDCGAN(sub), u, mouth, mode="matrix_free", chunk=7, progress=False)
    assert g.meta["mode"] == "matrix_free" and g.meta["jvp"] == "double_vjp"
    _assert_close(g, ref_sub_box)


def test_public_name_and_save_load(dcgan, z, mouth, tmp_path):
    assert lowrankedit.jacobian_gram is jacobian_gram
    g = jacobian_gram(dcgan, z[0], mouth, size=16, chunk=64, progress=False)
    assert g.meta["chunk"] == 64
    g.save(tmp_path / "g.pt")
    h = lowrankedit.Gram.load(tmp_path / "g.pt")
    assert torch.equal(h.fg, g.fg) and h.meta["mode"] == "forward" and h.meta["size"] == [16, 16]


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"region": Region.from_mask(torch.zeros(64, 64))}, ValueError, "has no pixels inside"),
        ({"region": Region.from_mask(torch.ones(64, 64))}, ValueError, "has no pixels outside"),
        ({"latent": torch.zeros(99)}, ValueError, r"expected latent of shape \(100\) or \(n, 100\), got \(99,\)"),
        ({"latent": torch.zeros(2, 1, 100)}, ValueError, r"expected latent of shape"),
        ({"latent": torch.full((100,), float("nan"))}, ValueError, "expected latent to be finite, got 100 NaN"),
        ({"latent": torch.zeros(100, dtype=torch.int64)}, TypeError, "latent to be floating point, got dtype"),
        ({"region": torch.ones(64, 64)}, TypeError, "expected region to be a lowrankedit.Region"),
        ({"mode": "reverse"}, ValueError, "expected mode in"),
        ({"chunk": 0}, ValueError, r"expected chunk to be an int >= 1, got 0"),
        ({"size": (0, 4)}, ValueError, r"expected size to be a tuple of ints >= 1, got \(0, 4\)"),
        ({"max_memory": -1}, ValueError, "max_memory"),
    ],
)
def test_bad_input(dcgan, mouth, kwargs, exc, match):
    args = {"latent": torch.zeros(100), "region": mouth, **kwargs}
    with pytest.raises(exc, match=match):
        jacobian_gram(dcgan, args.pop("latent"), args.pop("region"), progress=False, **args)
