"""jacobian_gram within a memory bound: the plan fits max_memory, the routes it picks give the same Grams, a bound
that no plan can meet raises before anything large is allocated, the peak is measured, the bar has an ETA."""
import importlib

import pytest
import torch

from lowrankedit import reference
from lowrankedit.jacobian_gram import jacobian_gram

jg = importlib.import_module("lowrankedit.jacobian_gram")  # the module (the package exports the function's name)

R, D, E = 64 * 64, 12, 4  # rows (64x64 fused), latent dimension, float32 bytes


class _Affine(torch.nn.Module):
    """The real DCGAN on a 12-d affine slice of its latents (as in test_jacobian_gram.py): few columns, real net."""

    latent_shape = (D,)

    def __init__(self, G):
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.G = G
        self.register_buffer("z0", torch.randn(100, generator=g))
        self.register_buffer("A", torch.linalg.qr(torch.randn(100, D, generator=g))[0])

    def synthesize(self, u):
        return self.G.synthesize(self.z0 + u @ self.A.mT)


class _Unmeasured:
    """Stands in for the peak measurement so that the plan is deterministic (one image row per tangent)."""

    def __init__(self, device):
        self.bytes, self.source = None, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture(scope="module")
def sub(dcgan):
    return _Affine(dcgan)


@pytest.fixture(scope="module")
def u():
    return torch.randn(D, generator=torch.Generator().manual_seed(11))


@pytest.fixture(scope="module")
def ref(sub, u, mouth):
    return reference.jacobian_gram(sub, u, mouth)


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def _step(route, passes, chunk):
    """The step bound of one image's Gram (float64 accumulators only where partial Grams are summed)."""
    return jg._step_bytes(route, passes, R, D, E, R * E, chunk, accumulators=jg._accumulates(route, passes, 1))


def test_step_bytes_by_hand():
    grams = 2 * D * D * 8 + 2 * D * D * E
    # one image, one pass: the op's Gram pair is the result, no float64 accumulators
    assert _step("forward", 1, 3) == 2 * D * D * E + R * D * E + 3 * (D * E + R * E + R * E)
    assert _step("row_blocks", 2, 1) == grams + (R // 2) * D * E + (D * E + R * E + R * E)
    assert _step("matrix_free", 1, 2) == grams + R * E + 2 * (3 * R * E + 2 * D * E + 2 * R * E)
    # the chunk is the largest that fits
    limit = _step("forward", 1, 5) + 1

    def step(c):
        return jg._step_bytes("forward", 1, R, D, E, R * E, c, accumulators=False)

    assert jg._fit_chunk(step, 12, False, limit) == 5
    assert jg._fit_chunk(step, 12, True, limit) is None


@pytest.mark.parametrize("route,passes", [("forward", 1), ("row_blocks", 2), ("matrix_free", 1)])
def test_auto_picks_the_first_route_that_fits(monkeypatch, sub, u, mouth, ref, route, passes):
    monkeypatch.setattr(jg, "_PeakMemory", _Unmeasured)
    # a bound just above this route's one-tangent step and below every earlier route's
    limit = _step(route, passes, 1) + 10
    g = jacobian_gram(sub, u, mouth, max_memory=limit, progress=False)
    assert g.meta["mode"] == route and g.meta["row_passes"] == passes
    assert g.meta["planned_bytes"] <= limit and g.meta["chunk"] == 1
    assert g.meta["max_memory"] == limit
    assert _rel(g.fg, ref.fg) < 1e-4 and _rel(g.bg, ref.bg) < 1e-4
    if route != "forward":
        assert "max_memory" in g.meta["mode_reason"]


def test_row_blocks_mode_matches_reference(monkeypatch, sub, u, mouth, ref):
    monkeypatch.setattr(jg, "_PeakMemory", _Unmeasured)  # a bound of a few blocks: the plan must be the model's
    g = jacobian_gram(sub, u, mouth, mode="row_blocks", max_memory=_step("row_blocks", 2, 4) + 10, progress=False)
    assert g.meta["mode"] == "row_blocks" and g.meta["row_passes"] >= 2
    assert _rel(g.fg, ref.fg) < 1e-4 and _rel(g.bg, ref.bg) < 1e-4


def test_over_the_bound_fails_before_allocating(monkeypatch, sub, u, mouth):
    monkeypatch.setattr(jg, "_PeakMemory", _Unmeasured)
    calls = []
    real = torch.empty

    def spy(*shape, **kw):  # no Jacobian-sized buffer may be requested
        calls.append(shape)
        return real(*shape, **kw)

    monkeypatch.setattr(jg.torch, "empty", spy)
    with pytest.raises(MemoryError, match=r"no step of mode='auto' fits max_memory=1000 bytes.*\(4096, 12\) Jacobian"):
        jacobian_gram(sub, u, mouth, max_memory=1000, progress=False)
    assert all(s != (R, D) for s in calls)
    with pytest.raises(MemoryError, match="mode='forward'"):
        jacobian_gram(sub, u, mouth, mode="forward", max_memory=_step("forward", 1, 1) - 1, progress=False)
    with pytest.raises(MemoryError, match="chunk 7"):  # a chunk given by the user is not shrunk
        jacobian_gram(sub, u, mouth, mode="forward", chunk=7, max_memory=_step("forward", 1, 6), progress=False)


def test_peak_is_measured_and_reported(sub, u, mouth):
    g = jacobian_gram(sub, u, mouth, progress=False)
    if g.meta["peak_bytes"] is None:
        pytest.skip("no peak-memory source on this platform (/proc/self/clear_refs)")
    assert g.meta["peak_measured_by"] and g.meta["peak_bytes"] >= 0
    assert g.meta["activation_bytes_per_tangent"] >= R * E


def test_the_bound_holds_in_a_warm_process():
    # A process that ran a wide pass before keeps its freed heap resident: a probe that reads only the growth of
    # the resident peak saw almost none of its activations there, planned the widest chunk and broke the bound.
    from lowrankedit.models import stylegan2
    from lowrankedit.region import Region

    G = stylegan2(256, channel_base=512, channel_max=16, w_dim=8, num_mapping=2, seed=3)  # D = 14 x 8, 65536 rows
    w = G.sample_latents(1, seed=0)[0]
    flat = w.reshape(-1)
    with jg._PeakMemory("cpu") as warm:  # one wide pass: about 10 MiB of activations per tangent
        next(jg._columns(lambda z: G.synthesize(z.reshape(1, *w.shape))[0].mean(0).reshape(-1), flat, 32, "forward"))
    if warm.bytes is None:
        pytest.skip("no peak-memory source on this platform")
    limit = 120 << 20  # J is 28 MiB: room for a few tangents' activations, not for 32
    g = jacobian_gram(G, w, Region.box(16, 16, 32, 32), max_memory=limit, progress=False)
    assert g.meta["mode"] == "forward" and 1 < g.meta["chunk"] < 10, g.meta
    assert g.meta["activation_bytes_per_tangent"] > warm.bytes / 32 / 2  # half of what the wide pass showed
    assert g.meta["peak_bytes"] <= limit, g.meta


def test_measured_peak_tracks_a_large_allocation():
    # The kernel updates VmHWM lazily and a reclaim daemon may trim pages under memory pressure from other jobs, so
    # one of three tries must see the 64 MiB (a source that never moves reports None, tested below).
    seen = []
    for _ in range(3):
        with jg._PeakMemory("cpu") as peak:
            x = torch.ones(64 << 20, dtype=torch.uint8)  # 64 MiB, touched
            del x
        if peak.bytes is None:
            pytest.skip("no peak-memory source on this platform")
        seen.append(peak.bytes)
        if peak.bytes >= 60 << 20:
            break
    assert max(seen) >= 60 << 20, seen


def test_an_untracked_resident_peak_reports_none_not_zero(monkeypatch):
    # Some sandboxes accept the VmHWM reset but never move VmHWM: the probe must say "not measured" there.
    monkeypatch.setattr(jg, "_PEAK_TRACKED", None)
    monkeypatch.setattr(jg, "_proc_status", lambda key: 100 << 20)  # VmHWM frozen at VmRSS
    with jg._PeakMemory("cpu") as peak:
        x = torch.ones(1 << 20, dtype=torch.uint8)
        del x
    assert peak.bytes is None and peak.source is None


def test_progress_bar_has_a_total_and_an_eta():
    bar = jg._bar(7, "x", progress=True)
    try:
        bar.update(1)
        text = str(bar)  # e.g. "x:  14%|#4   | 1/7 [00:00<00:01, 5.0chunk/s]": elapsed<remaining
        assert bar.total == 7 and "1/7" in text and "<" in text and "chunk/s" in text
    finally:
        bar.close()
