"""preset="default" (measured best) and preset="official" (the paper code's) fill the settings left unset."""
import importlib.util
import os
import re
import sys
import warnings

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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # this tiny Gram has no low-rank part at lamb 1/40: no matter
        assert le.lowrankgan(g).meta["params"]["lamb"] == 1 / 40
        assert le.lowrankgan(g, preset="official").meta["params"]["lamb"] == 1 / 60
    assert le.lowrankgan(g, lamb=0.5, preset="official").meta["params"]["lamb"] == 0.5
    assert le.lowrankgan(g, lamb=1.0, preset="official").meta["params"]["rpca_method"] == "official"
    for fn in (le.resefa, le.lowrankgan):
        with pytest.raises(ValueError, match="expected preset in"):
            fn(g, preset="nope")


# What each method's two presets set differently: the table "Defaults and preset="official"" of docs/evaluation.md.
# The official values are the paper codes' (docs/official.md).
DOCUMENTED = {
    "lelsd": {"default": {"layers": "deepest2+image", "steps": 150, "lr": 5e-2},
              "official": {"layers": "all", "steps": 300, "lr": 1e-3}},
    "resefa": {"default": {"tau": 1e-3}, "official": {"tau": 0.0}},
    "lowrankgan": {"default": {"method": "ialm", "lamb": 1 / 40}, "official": {"method": "official", "lamb": 1 / 60}},
    "panda": {"default": {"batch_size": 16, "iters": 1000, "lr": None, "average": 0.5, "reinit_dead": True,
                          "init": "svd"},
              "official": {"batch_size": 1, "iters": 10000, "lr": 1e-8, "average": 0.0, "reinit_dead": False,
                           "init": "random"}},
}


@pytest.mark.parametrize("method", sorted(DOCUMENTED))
def test_presets_differ_where_documented(method):
    presets = getattr(le.methods, method).PRESETS
    assert sorted(presets) == ["default", "official"]
    for name in ("default", "official"):
        assert presets[name] == DOCUMENTED[method][name], (method, name)
    # every documented setting really differs between the two (none is a no-op entry)
    for key in presets["default"]:
        assert presets["default"][key] != presets["official"][key], (method, key)


def _call_with_preset(method, dcgan, preset):
    if method == "lelsd":
        return le.lelsd(dcgan, StaticRegion(le.models.dcgan_mouth_region()), preset=preset, progress=False)
    if method == "panda":
        return le.panda(dcgan, "block3", preset=preset, progress=False)
    return getattr(le, method)(_gram(), preset=preset)


@pytest.mark.parametrize("method", sorted(DOCUMENTED))
@pytest.mark.parametrize("bad", ["paper", "Default", "", None, 1])
def test_unknown_preset_names_argument_and_value(method, bad, dcgan):
    # the message names the argument, the accepted names and what was received; nothing runs first
    with pytest.raises(ValueError, match=rf"{method}: expected preset .*'default'.*'official'.*got {re.escape(repr(bad))}$"):
        _call_with_preset(method, dcgan, bad)


def _bench_presets():
    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
    sys.path.insert(0, bench)
    try:
        spec = importlib.util.spec_from_file_location("bench_presets", os.path.join(bench, "bench_presets.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(bench)
    return mod


def _row(metric, mean, std, n=64):
    return {f"{metric}_mean": mean, f"{metric}_std": std, "n_values": n}


@pytest.mark.parametrize("method,a,b,expected", [
    # LELSD: higher localization wins; 2 SE = 2 * sqrt((0.1^2 + 0.1^2) / 64) = 0.0354
    ("lelsd", ("localization", 0.40, 0.1), ("localization", 0.20, 0.1), "default"),
    ("lelsd", ("localization", 0.20, 0.1), ("localization", 0.40, 0.1), "official"),
    ("lelsd", ("localization", 0.40, 0.1), ("localization", 0.37, 0.1), "tie"),
    # ReSeFa / LowRankGAN: lower MSE outside wins
    ("resefa", ("mse_outside", 0.001, 0.001), ("mse_outside", 0.002, 0.001), "default"),
    ("lowrankgan", ("mse_outside", 0.0029, 0.001), ("mse_outside", 0.0026, 0.001), "tie"),  # 2 SE 3.5e-4
    # PandA: lower ROIR wins
    ("panda", ("roir", 0.8, 0.2), ("roir", 0.2, 0.2), "official"),
])
def test_bench_winner_rule(method, a, b, expected):
    name, text = _bench_presets().winner(method, _row(*a), _row(*b))
    assert name == expected, text
    assert text.startswith("tie" if expected == "tie" else f"**{expected}**")


@pytest.mark.parametrize("preset", ["default", "official"])
def test_discover_hands_the_preset_to_panda_and_lowrankgan(preset, dcgan, monkeypatch):
    # discover / report learn PandA's parts and start LowRankGAN's lamb with the preset asked for
    from lowrankedit import discover as discover_mod
    from lowrankedit.methods import lowrankgan as lowrankgan_mod

    seen = {}

    def fake_panda(G, layer, **kw):
        seen.update(kw)
        raise RuntimeError("stop here")

    monkeypatch.setattr(le, "panda", fake_panda)
    with pytest.raises(RuntimeError, match="stop here"):
        discover_mod.discover(dcgan, "panda", le.models.dcgan_mouth_region(), preset=preset)
    assert seen["preset"] == preset
    assert seen["iters"] == (discover_mod.PANDA_DEFAULTS["iters"] if preset == "default" else None)
    with pytest.raises(ValueError, match=r"learn_parts: expected preset in \('default', 'official'\), got 'x'"):
        discover_mod.learn_parts(dcgan, preset="x")

    lambs = []
    monkeypatch.setattr(le, "lowrankgan", lambda gram, lamb, preset: lambs.append((lamb, preset)) or ["a direction"])
    discover_mod._lowrankgan_nonempty(_gram(), preset)
    assert lambs == [(lowrankgan_mod.PRESETS[preset]["lamb"], preset)]
