"""The safe file format: round trips, corruption, planted pickle payloads, legacy files, atomic saves."""
import math
import os
import pickle
import struct
import subprocess
import sys
import threading
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import lowrankedit as le
from lowrankedit import Directions, FileFormatError, Gram, PartsAppearances, fileformat

from hypothesis_cases import count

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------------------------------------------
# One valid object of each kind


def _directions(seed=0, k=3, shape=(6,)):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(k, *shape, generator=g, dtype=torch.float64)
    meta = {"method": "test", "seed": seed, "generator": "dcgan:000000000000", "latent_space": None,
            "params": {"lamb": 1 / 60, "tol": 1e-7}, "principal": torch.randn(2, *shape, generator=g),
            "history": [float("nan"), 1.0, float("inf")], "region": {"kind": "box", "size": (64, 64)}}
    return Directions(v, torch.arange(k, 0, -1).double(), meta, normalize=True)


def _gram(D=5):
    g = torch.Generator().manual_seed(1)
    Jf, Jb = torch.randn(2, 20, D, generator=g, dtype=torch.float64)
    return Gram(Jf.T @ Jf / 20, Jb.T @ Jb / 20, 20.0, 44.0, (D,), {"method": "jacobian_gram", "rows": 64})


def _parts():
    g = torch.Generator().manual_seed(2)
    return PartsAppearances(torch.randn(8, 3, generator=g), torch.rand(16, 2, generator=g), "block1", (8, 4, 4),
                            {"method": "panda", "generator": "dcgan:000000000000", "history": [3.0, 2.0]})


def _save_kind(kind, path):
    if kind == "directions":
        _directions().save(path)
    elif kind == "gram":
        _gram().save(path)
    elif kind == "parts_appearances":
        _parts().save(path)
    else:
        fileformat.save(path, "evaluation", {"roir": torch.rand(4, 2)}, {"method": "lowrankgan", "alphas": [-3, 3]})


def _load_kind(kind, path):
    if kind == "directions":
        return Directions.load(path)
    if kind == "gram":
        return Gram.load(path)
    if kind == "parts_appearances":
        return PartsAppearances.load(path)
    return fileformat.load(path, "evaluation")


KINDS = fileformat.KINDS


def _same(a, b):
    """Equal values of equal types, NaN equal to NaN, tensors bit for bit (dtype and shape included)."""
    if isinstance(a, torch.Tensor):
        if not (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape):
            return False
        if a.is_floating_point():
            return bool(((a == b) | (a.isnan() & b.isnan())).all())
        return torch.equal(a, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


# ----------------------------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_each_kind(tmp_path, kind):
    p = tmp_path / "sub" / f"{kind}.lre"
    _save_kind(kind, p)
    assert os.listdir(p.parent) == [p.name]  # no temporary file left behind
    got = _load_kind(kind, p)
    if kind == "directions":
        d = _directions()
        assert _same(got.vectors, d.vectors) and _same(got.scores, d.scores) and _same(got.meta, d.meta)
    elif kind == "gram":
        g = _gram()
        assert _same(got.fg, g.fg) and _same(got.bg, g.bg) and (got.n_fg, got.n_bg) == (g.n_fg, g.n_bg)
        assert got.latent_shape == g.latent_shape and got.meta == g.meta
    elif kind == "parts_appearances":
        pa = _parts()
        assert _same(got.appearances, pa.appearances) and _same(got.parts, pa.parts) and got.layer == pa.layer
        assert got.feature_shape == pa.feature_shape and got.meta == pa.meta
    else:
        tensors, meta = got
        assert set(tensors) == {"roir"} and meta == {"method": "lowrankgan", "alphas": [-3, 3]}


def test_file_is_plain_safetensors_with_json_metadata(tmp_path):
    """Any safetensors reader sees the tensors; the metadata is strict JSON with the documented fields."""
    import json

    import safetensors.torch

    p = tmp_path / "d.lre"
    _directions().save(p)
    raw = p.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    md = json.loads(raw[8:8 + n])["__metadata__"]
    assert md["format"] == "lowrankedit" and md["format_version"] == "1" and md["kind"] == "directions"
    assert md["library_version"] == le.__version__ and md["checksum"].startswith("sha256:")
    meta = json.loads(md["meta"])  # strict JSON: NaN/Inf are encoded, not emitted as bare NaN
    assert meta["meta"]["method"] == "test" and meta["latent_shape"] == [6]
    assert "NaN" not in md["meta"] and "Infinity" not in md["meta"]
    assert set(safetensors.torch.load(raw)) == {"t/vectors", "t/scores", "m/0"}


_keys = st.text(min_size=0, max_size=8).filter(lambda k: k != "__lowrankedit__")
_scalars = (st.none() | st.booleans() | st.integers(min_value=-2 ** 70, max_value=2 ** 70)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
_dtypes = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
                           torch.uint8, torch.bool])


@st.composite
def _tensors(draw):
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    dtype = draw(_dtypes)
    seed = draw(st.integers(0, 2 ** 16))
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g, dtype=torch.float64) * 100
    return t.to(dtype) if dtype != torch.bool else t > 0


_meta_values = st.recursive(_scalars | _tensors(), lambda inner: (
    st.lists(inner, max_size=4) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(_keys, inner, max_size=4)), max_leaves=12)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(meta=st.dictionaries(_keys, _meta_values, max_size=6),
       tensors=st.dictionaries(st.text(min_size=1, max_size=6), _tensors(), max_size=3),
       kind=st.sampled_from(KINDS))
def test_round_trip_random_metadata(meta, tensors, kind):
    count("round_trip_random_metadata")
    t2, m2 = fileformat.decode(fileformat.encode(kind, tensors, meta), kind)
    assert _same(m2, meta)
    assert _same(t2, tensors)


def test_unstorable_metadata_refused_and_nothing_written(tmp_path):
    p = tmp_path / "e.lre"
    for bad, match in [({"f": lambda: None}, r"cannot store meta\['f'\] of type function"),
                       ({1: "x"}, "expected str keys"), ({"a": [object()]}, r"meta\['a'\]\[0\]"),
                       ({"__lowrankedit__": 1}, "reserved")]:
        with pytest.raises((TypeError, ValueError), match=match):
            fileformat.save(p, "evaluation", {}, bad)
    with pytest.raises(ValueError, match="expected kind in"):
        fileformat.save(p, "pickle", {}, {})
    with pytest.raises(TypeError, match=r"tensors\['x'\] to be a torch.Tensor"):
        fileformat.save(p, "evaluation", {"x": [1, 2]}, {})
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------------------------
# Broken files: one clear error naming the file


@pytest.mark.parametrize("kind", KINDS)
def test_broken_files_raise_file_format_error(tmp_path, kind):
    good = tmp_path / "good"
    _save_kind(kind, good)
    raw = good.read_bytes()
    cases = {
        "empty": (b"", "empty file"),
        "truncated": (raw[: len(raw) // 2], "truncated|checksum"),
        "short": (raw[:5], "truncated"),
        "random": (os.urandom(4096), "truncated|not a lowrankedit|not valid JSON"),
        "text": (b"hello, this is not a lowrankedit file\n" * 4, "truncated|not a lowrankedit"),
        "foreign safetensors": (__import__("safetensors.torch").torch.save({"w": torch.ones(3)}),
                                "not a lowrankedit file"),
    }
    for name, (data, match) in cases.items():
        p = tmp_path / f"{name}.bin"
        p.write_bytes(data)
        with pytest.raises(FileFormatError, match=match) as info:
            _load_kind(kind, p)
        assert str(p) in str(info.value), name
        assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_kind_named(tmp_path, kind):
    other = KINDS[(KINDS.index(kind) + 1) % len(KINDS)]
    p = tmp_path / "f"
    _save_kind(other, p)
    with pytest.raises(FileFormatError, match=f"holds a '{other}' file, not '{kind}'"):
        _load_kind(kind, p)


def test_newer_format_version_refused(tmp_path):
    import safetensors.torch

    data = bytearray(fileformat.encode("evaluation", {}, {}))
    data = bytes(data).replace(b'"format_version":"1"', b'"format_version":"9"')
    with pytest.raises(FileFormatError, match="format version 9.*upgrade lowrankedit"):
        fileformat.decode(data, "evaluation")
    del safetensors


_valid = {kind: None for kind in KINDS}


def _valid_bytes(kind, tmp_path_factory):
    if _valid[kind] is None:
        p = tmp_path_factory.mktemp("valid") / kind
        _save_kind(kind, p)
        _valid[kind] = p.read_bytes()
    return _valid[kind]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), data=st.data())
def test_corruption_fuzz(tmp_path_factory, kind, data):
    """A random truncation, or 1-3 random byte flips anywhere (header, metadata, checksum, tensor data), always
    raises FileFormatError: the checksum covers every byte of the file."""
    count("corruption_fuzz")
    raw = bytearray(_valid_bytes(kind, tmp_path_factory))
    if data.draw(st.booleans(), label="truncate"):
        cut = data.draw(st.integers(0, len(raw) - 1), label="keep bytes")
        bad = bytes(raw[:cut])
    else:
        for _ in range(data.draw(st.integers(1, 3), label="flips")):
            at = data.draw(st.integers(0, len(raw) - 1), label="offset")
            raw[at] ^= data.draw(st.integers(1, 255), label="xor")
        bad = bytes(raw)
        if bad == _valid[kind]:  # two flips cancelled out: the file is intact again
            return
    with pytest.raises(FileFormatError):
        fileformat.decode(bad, kind, "fuzzed")


# ----------------------------------------------------------------------------------------------------------------
# Planted pickle payloads and old files


class _Payload:
    """Unpickling this creates ``marker``: proof that code embedded in a file ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _legacy_file(kind, path, marker):
    """A file of the old format (torch.save, a pickle) of ``kind`` with a payload hidden in its metadata."""
    payload = _Payload(str(marker))
    if kind == "directions":
        d = _directions()
        obj = {"vectors": d.vectors, "scores": d.scores, "meta": {"method": "x", "note": payload},
               "format": "lowrankedit.Directions/1"}
    elif kind == "gram":
        g = _gram()
        obj = {"fg": g.fg, "bg": g.bg, "n_fg": 1.0, "n_bg": 1.0, "latent_shape": [5], "meta": {"note": payload}}
    elif kind == "parts_appearances":
        pa = _parts()
        obj = {"appearances": pa.appearances, "parts": pa.parts, "layer": "block1", "feature_shape": [8, 4, 4],
               "meta": {"note": payload}}
    else:
        obj = {"roir": torch.ones(2), "meta": {"note": payload}}
    torch.save(obj, path)


@pytest.mark.parametrize("kind", KINDS)
def test_planted_payload_never_runs(tmp_path, kind, monkeypatch):
    marker = tmp_path / "PAYLOAD_RAN"
    # 1. An old-format file with a payload: refused, naming the converter; the payload does not run.
    legacy = tmp_path / "legacy.pt"
    _legacy_file(kind, legacy, marker)
    with pytest.raises(FileFormatError, match=r"old-format .*convert_legacy\(src, dst, trust=True\)"):
        _load_kind(kind, legacy)
    # The same pickle without torch's zip wrapper.
    raw_pickle = tmp_path / "legacy.pkl"
    raw_pickle.write_bytes(pickle.dumps({"meta": _Payload(str(marker))}, protocol=4))
    with pytest.raises(FileFormatError, match="old-format"):
        _load_kind(kind, raw_pickle)
    # 2. Pickle bytes of a payload planted inside a valid safe file: in its metadata they are an inert string;
    #    written over the tensor data they break the checksum. Nothing unpickles either way.
    p = tmp_path / "safe"
    _save_kind(kind, p)
    raw = bytearray(p.read_bytes())
    blob = pickle.dumps(_Payload(str(marker)), protocol=2)
    raw[-len(blob):] = blob
    p.write_bytes(bytes(raw))
    with pytest.raises(FileFormatError, match="checksum|header"):  # small files: the blob reaches the header
        _load_kind(kind, p)
    fileformat.save(p, kind if kind == "evaluation" else "evaluation", {}, {"blob": blob.decode("latin-1")})
    assert fileformat.load(p, "evaluation")[1]["blob"].encode("latin-1") == blob
    # 3. Loading a valid file of each kind never reaches a pickle loader.
    def forbidden(*a, **k):
        raise AssertionError("a pickle loader was called")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    _save_kind(kind, p)
    _load_kind(kind, p)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["directions", "gram", "parts_appearances"])
def test_convert_legacy_needs_trust(tmp_path, kind):
    old, new = tmp_path / "old.pt", tmp_path / "new.lre"
    if kind == "directions":
        d = _directions()
        torch.save({"vectors": d.vectors, "scores": d.scores, "meta": {"method": "x"},
                    "format": "lowrankedit.Directions/1"}, old)
    elif kind == "gram":
        g = _gram()
        torch.save({"fg": g.fg, "bg": g.bg, "n_fg": 20.0, "n_bg": 44.0, "latent_shape": [5], "meta": {}}, old)
    else:
        pa = _parts()
        torch.save({"appearances": pa.appearances, "parts": pa.parts, "layer": "block1", "feature_shape": [8, 4, 4],
                    "meta": {}}, old)
    with pytest.raises(ValueError, match="refusing to unpickle .* without trust=True"):
        fileformat.convert_legacy(old, new)
    assert not new.exists()
    assert fileformat.convert_legacy(old, new, trust=True) == kind
    got = _load_kind(kind, new)
    if kind == "directions":
        assert torch.equal(got.vectors, d.vectors)
    elif kind == "gram":
        assert torch.equal(got.fg, g.fg) and got.n_bg == 44.0
    else:
        assert torch.equal(got.parts, pa.parts)


# ----------------------------------------------------------------------------------------------------------------
# Saves that cannot lose data


def test_failed_save_leaves_previous_file(tmp_path, monkeypatch):
    p = tmp_path / "d.lre"
    _directions(seed=1).save(p)
    before = p.read_bytes()
    bad = _directions(seed=2)
    bad.meta["fn"] = print
    with pytest.raises(TypeError, match="cannot store"):
        bad.save(p)
    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        _directions(seed=3).save(p)
    monkeypatch.undo()
    assert p.read_bytes() == before and os.listdir(tmp_path) == ["d.lre"]
    assert Directions.load(p).meta["seed"] == 1


def test_planted_symlinks_are_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    p = tmp_path / "d.lre"
    # The old code's temporary name, and the target itself, as links to another file.
    os.symlink(victim, f"{p}.tmp.{os.getpid()}")
    _directions().save(p)
    assert victim.read_text() == "precious"
    link = tmp_path / "link.lre"
    os.symlink(victim, link)
    _directions().save(link)  # replaces the link itself, never writes through it
    assert victim.read_text() == "precious" and not link.is_symlink()
    assert Directions.load(link).meta["method"] == "test"


_WRITER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import torch
from lowrankedit import Directions
path, wid = sys.argv[2], int(sys.argv[3])
print("ready", flush=True)
until = float(sys.stdin.readline())  # the parent starts the clock once every process is ready
i = 0
while i == 0 or time.time() < until:
    seed = wid * 1_000_000 + i
    v = torch.randn(4, 64, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    Directions(v, torch.arange(4.0), {"seed": seed}, normalize=True).save(path)
    d = Directions.load(path)
    s = d.meta["seed"]
    w = torch.randn(4, 64, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
    assert torch.equal(d.vectors, w / w.norm(dim=1, keepdim=True)), f"mixed file: seed {s}"
    i += 1
print(i)
"""


def test_concurrent_saves_threads_and_processes(tmp_path):
    """8 threads and 2 processes save and load one path for LOWRANKEDIT_STRESS_SECONDS (default 20) seconds; every
    load must see one complete file (vectors consistent with the seed in its metadata), never a missing one."""
    seconds = float(os.environ.get("LOWRANKEDIT_STRESS_SECONDS", "20"))
    p = str(tmp_path / "shared.lre")
    _directions().save(p)
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, os.path.join(ROOT, "python"), p, str(w)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in (100, 101)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()[-2000:]
    until = time.time() + seconds
    for proc in procs:
        proc.stdin.write(f"{until}\n")
        proc.stdin.flush()
    errors, counts = [], [0] * 8

    def worker(wid):
        i = 0
        try:
            while i == 0 or time.time() < until:
                seed = wid * 1_000_000 + i
                v = torch.randn(4, 64, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
                Directions(v, torch.arange(4.0), {"seed": seed}, normalize=True).save(p)
                d = Directions.load(p)  # FileNotFoundError or FileFormatError here = a lost or mixed file
                s = d.meta.get("seed")
                if s is not None:
                    w = torch.randn(4, 64, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
                    if not torch.equal(d.vectors, w / w.norm(dim=1, keepdim=True)):
                        errors.append(f"mixed file: seed {s}")
                i += 1
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"thread {wid}: {type(exc).__name__}: {exc}")
        counts[wid] = i

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outs = [proc.communicate(timeout=seconds + 300) for proc in procs]
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err[-2000:]
    assert not errors, errors[:5]
    assert min(counts) > 0 and all(int(out.strip() or 0) > 0 for out, _ in outs)
    assert sorted(os.listdir(tmp_path)) == ["shared.lre"]  # no temporary file left
    print(f"concurrent saves: threads {sum(counts)} rounds, processes {[int(o.strip()) for o, _ in outs]} rounds "
          f"in {seconds:g} s")
