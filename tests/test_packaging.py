"""Packaging and the benchmark harness: pyproject metadata, no pointers outside the repository, harness behaviour."""
import importlib.util
import os
import re
import tomllib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _harness():
    """bench/harness.py, loaded by path (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_harness", os.path.join(ROOT, "bench", "harness.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pyproject_builds_with_setuptools_and_ships_the_build_record():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        meta = tomllib.load(fh)
    requires = " ".join(meta["build-system"]["requires"])
    for pkg in ("setuptools", "wheel", "torch", "pybind11", "ninja"):
        assert pkg in requires, pkg
    assert meta["build-system"]["build-backend"] == "setuptools.build_meta"
    assert meta["project"]["name"] == "lowrankedit"
    assert set(meta["project"]["dynamic"]) == {"version", "dependencies"}  # both given by setup.py
    assert "_build_info.json" in meta["tool"]["setuptools"]["package-data"]["lowrankedit"]


def test_nothing_points_outside_the_repository():
    # What users need about the official codes lives in docs/, not in documents beside the repository.
    bad = re.compile(r"\.\./shared|/work/shared|OFFICIAL\.md|CONTRACT\.md|STYLEGAN\.md")
    hits = []
    for top in ("python", "csrc", "pyext", "docs", "bench", "scripts", "tests"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith((".py", ".cpp", ".h", ".cu", ".md", ".sh")) and name != "test_packaging.py":
                    path = os.path.join(dirpath, name)
                    with open(path, encoding="utf-8") as fh:
                        hits += [f"{path}:{i + 1}" for i, line in enumerate(fh) if bad.search(line)]
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        hits += [f"README.md:{i + 1}" for i, line in enumerate(fh) if bad.search(line)]
    assert not hits, hits
    assert os.path.isfile(os.path.join(ROOT, "docs", "official.md"))


def test_time_routes_alternates_and_spreads_runs():
    h = _harness()
    order = []
    t = h.time_routes({"a": (lambda: order.append("a") or 1, 4), "b": (lambda: order.append("b") or 2, 2)},
                      warmup=1)
    assert order[:2] == ["a", "b"]  # the warm-up calls
    assert order[2:] == ["a", "b", "a", "a", "b", "a"]  # b's two runs spread over the rounds (1 and 3)
    assert (t["a"].runs, t["b"].runs) == (4, 2) and (t["a"].output, t["b"].output) == (1, 2)
    assert t["a"].min <= t["a"].median


def test_harness_rejects_bad_input_by_name():
    h = _harness()
    with pytest.raises(ValueError, match="route 'x' needs a positive integer number of runs, got 0"):
        h.time_routes({"x": (lambda: None, 0)})
    with pytest.raises(ValueError, match="row 0 has 1 cells, the header 2"):
        h.markdown_table(["a", "b"], [[1]])
    with pytest.raises(ValueError, match="--threads expects a positive integer, got 'two'"):
        h.pin_threads(argv=["x", "--threads", "two"])


def test_peak_memory_is_measured():
    torch = pytest.importorskip("torch")
    h = _harness()
    m = h.peak_memory(lambda: torch.empty(1 << 20, dtype=torch.float32).fill_(1))  # 4 MiB held at the peak
    assert 4 << 20 <= m.torch_bytes < 5 << 20, m
