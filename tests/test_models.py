import pytest
import torch

import lowrankedit as le
from lowrankedit.models import wrap

SHAPES = {"block1": (512, 4, 4), "block2": (256, 8, 8), "block3": (128, 16, 16), "block4": (64, 32, 32)}


def test_protocol(dcgan):
    assert isinstance(dcgan, le.models.Generator)
    assert tuple(dcgan.latent_shape) == (100,)
    assert list(dcgan.layers) == list(SHAPES)


def test_same_seed_same_image(dcgan):
    a = dcgan.synthesize(dcgan.sample_latents(3, seed=7))
    b = dcgan.synthesize(dcgan.sample_latents(3, seed=7))
    c = dcgan.synthesize(dcgan.sample_latents(3, seed=8))
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.1


def test_shapes_and_range(dcgan):
    z = dcgan.sample_latents(5, seed=1)
    assert z.shape == (5, 100)
    x = dcgan.synthesize(z)
    assert x.shape == (5, 3, 64, 64)
    assert x.min() >= -1 and x.max() <= 1
    # A trained generator, not a random one: faces have structure (adjacent pixels correlate strongly).
    flat = x.mean(1)
    corr = torch.corrcoef(torch.stack([flat[:, :, :-1].flatten(), flat[:, :, 1:].flatten()]))[0, 1]
    assert corr > 0.9


def test_weights_are_the_pretrained_ones(dcgan):
    import os

    import gan_face_generate

    path = os.path.join(os.path.dirname(gan_face_generate.__file__), "weights.tar")
    state = torch.load(path, map_location="cpu", weights_only=True)["netG_state_dict"]
    for k, v in dcgan.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("layer", list(SHAPES))
def test_features_shapes_and_resume(dcgan, layer):
    z = dcgan.sample_latents(4, seed=2)
    f = dcgan.features(z, layer)
    assert tuple(f.shape) == (4, *SHAPES[layer])
    torch.testing.assert_close(dcgan.synthesize_from(f, layer, z), dcgan.synthesize(z), rtol=0, atol=1e-6)


def test_differentiable_in_latents(dcgan):
    z = dcgan.sample_latents(2).requires_grad_(True)
    dcgan.synthesize(z).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_unknown_layer(dcgan):
    with pytest.raises(ValueError, match=r"no layer 'block9'; its layers are \['block1', 'block2', 'block3', 'block4'\]"):
        dcgan.features(dcgan.sample_latents(1), "block9")


def test_wrong_latent_shape(dcgan):
    with pytest.raises(ValueError, match=r"expected latents of shape \(n, 100\), got \(2, 50\)"):
        dcgan.synthesize(torch.zeros(2, 50))


def test_missing_wheel_names_install_command(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "gan_face_generate":
            raise ImportError("No module named 'gan_face_generate'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install --no-deps gan-face-generate==1\.1\.1"):
        le.models.dcgan_digiface()


def test_wrap_callable():
    W = torch.randn(3 * 8 * 8, 6, generator=torch.Generator().manual_seed(0))
    G = wrap(lambda z: torch.tanh(z @ W.T).view(-1, 3, 8, 8), (6,), name="linear")
    z = G.sample_latents(2, seed=3)
    assert z.shape == (2, 6) and torch.equal(z, G.sample_latents(2, seed=3))
    assert G.synthesize(z).shape == (2, 3, 8, 8)
    with pytest.raises(NotImplementedError, match="no features/synthesize_from"):
        G.features(z, "x")


def test_wrap_with_features():
    W1 = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    G = wrap(lambda z: torch.tanh(z @ W1.T).view(-1, 1, 4, 4).expand(-1, 3, 4, 4), (4,), layers=("mid",),
             features=lambda z, layer: (z @ W1.T).view(-1, 1, 4, 4),
             synthesize_from=lambda f, layer, z: torch.tanh(f).expand(-1, 3, 4, 4))
    z = G.sample_latents(3)
    torch.testing.assert_close(G.synthesize_from(G.features(z, "mid"), "mid", z), G.synthesize(z))
    with pytest.raises(ValueError, match="give both features and synthesize_from"):
        wrap(lambda z: z, (4,), features=lambda z, l: z)


def test_fingerprint_depends_on_weights(dcgan):
    fp = le.models.fingerprint(dcgan)
    other = le.models.DCGAN()
    assert fp == le.models.fingerprint(dcgan)
    assert fp != le.models.fingerprint(other)


def test_features_many_equals_features(dcgan):
    z = dcgan.sample_latents(3, seed=5)
    many = dcgan.features_many(z, ["block3", "block1"])
    assert set(many) == {"block1", "block3"}
    for layer, f in many.items():
        torch.testing.assert_close(f, dcgan.features(z, layer), rtol=0, atol=0)
