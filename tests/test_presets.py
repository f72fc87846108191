"""preset="default" (measured best) and preset="official" (the paper code's) fill the settings left unset."""
import pytest
import torch

import lowrankedit as le
from lowrankedit.segmenters import StaticRegion

pytestmark = pytest.mark.usefixtures("one_thread")


def test_lelsd_presets(dcgan, mouth):
    seg = StaticRegion(mouth)
    d = le.lelsd(dcgan, seg, steps=1, progress=False, eval_samples=1)
    p = d.meta["params"]
    assert p["layers"] == ["block3", "block4", "image"] and p["lr"] == 5e-2 and p["preset"] == "default"
    o = le.lelsd(dcgan, seg, steps=1, preset="official", progress=False, eval_samples=1)
    assert o.meta["params"]["layers"] == list(dcgan.layers) and o.meta["params"]["lr"] == 1e-3
    assert o.meta["params"]["steps"] == 1  # an explicit value wins over the preset
    assert le.methods.lelsd.PRESETS["official"]["steps"] == 300 and le.methods.lelsd.PRESETS["default"]["steps"] == 150
    with pytest.raises(ValueError, match=r"lelsd: expected preset in \('default', 'official'\), got 'paper'"):
        le.lelsd(dcgan, seg, preset="paper")


def _gram():
    g = torch.Generator().manual_seed(0)
    Jf, Jb = torch.randn(2, 40, 8, generator=g, dtype=torch.float64)
    return le.Gram(Jf.T @ Jf / 40, Jb.T @ Jb / 40, 40, 40)


def test_resefa_and_lowrankgan_presets():
    g = _gram()
    assert le.resefa(g).meta["tau"] == 1e-3 and le.resefa(g, preset="official").meta["tau"] == 0.0
    assert le.resefa(g, tau=0.5, preset="official").meta["tau"] == 0.5
    assert le.lowrankgan(g, lamb=1.0).meta["params"]["rpca_method"] == "ialm"
    assert le.lowrankgan(g, lamb=1.0, preset="official").meta["params"]["rpca_method"] == "official"
    for fn in (le.resefa, le.lowrankgan):
        with pytest.raises(ValueError, match="expected preset in"):
            fn(g, preset="nope")
