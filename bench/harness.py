"""The one timing harness every ``bench/bench_<op>.py`` uses.

What it gives a benchmark script:

- ``pin_threads(default)``: the thread count, from ``--threads N`` or the default, set for torch, OpenMP and the BLAS
  libraries. Call it before NumPy or torch is imported when the BLAS thread pools must see it.
- ``time_routes({"ours": (fn, runs), "baseline": (fn, runs)})``: warm-up calls, then the routes run *alternately*
  (round-robin, the runs of a route spread evenly over the rounds), so a busy spell of a shared machine hits every
  route alike; each result is a ``Timing`` with ``min``, ``median`` and the runs. ``time_pair(ours, baseline)`` is
  the two-route case with a minimum total duration, for calls too short to time a few times.
- ``peak_memory(fn)``: the measured peak bytes one call allocated above the level at its start, from the torch CPU
  allocator's own records (``torch.profiler`` with ``profile_memory=True``: every allocation and free of ATen,
  including those inside our C++ ops) and from ``tracemalloc`` (NumPy's arrays and Python objects). BLAS-internal
  scratch is invisible to both, for every route alike. ``peak_rss(fn)`` is the resident-set growth of the process
  (``VmHWM - VmRSS`` after a peak reset; Linux), which sees everything but only where fresh pages are touched.
- ``machine_note()``: torch and NumPy versions, thread count, CPU count, the load average before and after the run,
  and which code was measured (the ``lowrankedit`` package imported and its git commit).
- ``markdown_table(header, rows)`` and ``write_result(op, text, out_dir)`` (writes ``bench/results/<op>.md``
  atomically, or into ``--out-dir``).

Every bench script runs from any folder (``python /abs/path/bench/bench_x.py``: Python puts the script's folder on
the path, so ``import harness`` finds this file) and under pytest-benchmark (``python -m pytest bench/bench_x.py
--benchmark-only``: pytest's rootdir-relative import puts ``bench/`` on the path). ``lowrankedit`` itself is imported
from the environment (the editable install of ``scripts/setup.sh``, a ``pip install``, or ``PYTHONPATH``).
"""
import argparse
import dataclasses
import math
import os
import statistics
import subprocess
import sys
import time
import tracemalloc

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
_LOAD_AT_START = os.getloadavg() if hasattr(os, "getloadavg") else None
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def pin_threads(default=None, argv=None):
    """The benchmark's thread count: ``--threads N`` from ``argv`` (``sys.argv``) or ``default``.

    Sets ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` (read by the BLAS libraries when they
    load, so call this before importing NumPy or torch) and, when torch is already imported, its intra-op threads.

    Parameters
    ----------
    default : int or None
        Threads when ``--threads`` is not given; ``None`` keeps the environment's setting (torch's default).

    Returns
    -------
    int or None
        The thread count set, or ``None`` when nothing was set.
    """
    argv = sys.argv if argv is None else argv
    n = default
    if "--threads" in argv:
        i = argv.index("--threads")
        if i + 1 >= len(argv):
            raise ValueError("pin_threads: --threads needs a positive integer after it, got nothing")
        try:
            n = int(argv[i + 1])
        except ValueError:
            raise ValueError(f"pin_threads: --threads expects a positive integer, got {argv[i + 1]!r}") from None
    if n is None:
        return None
    if n < 1:
        raise ValueError(f"pin_threads: the thread count must be a positive integer, got {n}")
    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n


def parser(description, default_threads=None):
    """An ``argparse`` parser with the options every bench script shares: ``--quick`` (small sizes, a few runs: to
    check the script works), ``--threads N`` (see ``pin_threads``) and ``--out-dir`` (where the table goes)."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes and few runs (checks the script works)")
    ap.add_argument("--threads", type=int, default=default_threads,
                    help=f"intra-op / BLAS threads (default: {default_threads or 'torch default'})")
    ap.add_argument("--out-dir", default=RESULTS_DIR, help="folder for <op>.md (default: bench/results)")
    return ap


@dataclasses.dataclass
class Timing:
    """Wall-clock seconds of each timed run of one route, and what its last run returned."""

    times: list
    output: object = None

    @property
    def runs(self):
        return len(self.times)

    @property
    def min(self):
        return min(self.times)

    @property
    def median(self):
        return statistics.median(self.times)

    def ms(self, digits=2):
        """``"median (min)"`` in milliseconds."""
        return f"{self.median * 1e3:.{digits}f} ({self.min * 1e3:.{digits}f})"

    def s(self, digits=3):
        """``"median (min)"`` in seconds."""
        return f"{self.median:.{digits}f} ({self.min:.{digits}f})"


def _check_route(name, route):
    if not (isinstance(route, tuple) and len(route) == 2 and callable(route[0])):
        raise ValueError(f"time_routes: route {name!r} must be a (callable, runs) pair, got {route!r}")
    fn, runs = route
    if not isinstance(runs, int) or runs < 1:
        raise ValueError(f"time_routes: route {name!r} needs a positive integer number of runs, got {runs!r}")
    return fn, runs


def time_routes(routes, *, warmup=1):
    """Time several routes alternately.

    Parameters
    ----------
    routes : dict
        ``name -> (fn, runs)``: ``fn()`` is called ``runs`` times (after ``warmup`` untimed calls). The routes take
        turns: in each of ``max(runs)`` rounds a route runs when its share of the rounds so far says so, so a route
        with fewer runs has them spread over the whole measurement rather than bunched at the start.
    warmup : int
        Untimed calls of every route first (library loading, caches, first-call allocations).

    Returns
    -------
    dict
        ``name -> Timing`` (``Timing.output``: what the route's last run returned, to check after timing).
    """
    if not isinstance(routes, dict) or not routes:
        raise ValueError(f"time_routes: routes must be a non-empty dict name -> (fn, runs), got {routes!r}")
    checked = {name: _check_route(name, r) for name, r in routes.items()}
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"time_routes: warmup must be a non-negative integer, got {warmup!r}")
    for fn, _ in checked.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in checked}
    outputs = {}
    rounds = max(runs for _, runs in checked.values())
    for r in range(1, rounds + 1):
        for name, (fn, runs) in checked.items():
            while len(times[name]) < math.ceil(runs * r / rounds):
                outputs.pop(name, None)  # free the previous output before the next run
                t0 = time.perf_counter()
                outputs[name] = fn()
                times[name].append(time.perf_counter() - t0)
    return {name: Timing(t, outputs[name]) for name, t in times.items()}


def time_pair(ours, baseline, *, min_runs=5, min_seconds=0.5, max_runs=10000, warmup=1):
    """``ours()`` and ``baseline()`` timed alternately: at least ``min_runs`` runs each and at least ``min_seconds``
    in all (so a call of a millisecond gets hundreds of runs), at most ``max_runs`` each.

    Returns
    -------
    (Timing, Timing)
        Ours and the baseline's.
    """
    if not (callable(ours) and callable(baseline)):
        raise ValueError(f"time_pair: ours and baseline must be callables, got {ours!r} and {baseline!r}")
    if min_runs < 1 or max_runs < min_runs:
        raise ValueError(f"time_pair: need 1 <= min_runs <= max_runs, got min_runs={min_runs}, max_runs={max_runs}")
    for _ in range(warmup):
        ours(), baseline()
    ta, tb = [], []
    while len(ta) < max_runs and (len(ta) < min_runs or sum(ta) + sum(tb) < min_seconds):
        for fn, times in ((ours, ta), (baseline, tb)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return Timing(ta), Timing(tb)


def _torch_allocator_peak(prof):
    """Peak bytes the torch CPU allocator held above the start level, from a profile's allocation records."""
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    level = peak = 0
    for _, nbytes in events:  # allocations are +bytes, frees -bytes, in time order
        level += nbytes
        peak = max(peak, level)
    return peak


@dataclasses.dataclass
class Memory:
    """Measured peak bytes of one call above the level at its start."""

    torch_bytes: int  # the torch CPU allocator (tensors, including those made inside our C++ ops)
    python_bytes: int  # tracemalloc: NumPy arrays and Python objects

    @property
    def total(self):
        """Sum of the two peaks (an upper bound on the joint peak when they do not coincide)."""
        return self.torch_bytes + self.python_bytes

    def mib(self, digits=1):
        return f"{self.total / 2 ** 20:.{digits}f}"


def peak_memory(fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` once and measure its peak allocation above the start level.

    Returns
    -------
    Memory
        ``torch_bytes`` from the torch CPU allocator's records (``torch.profiler``, ``profile_memory=True``) and
        ``python_bytes`` from ``tracemalloc`` (NumPy data and Python objects). The output counts (it is alive when
        the peak is reached) and is freed before returning.
    """
    import torch

    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
            # Reset inside the profile: the profiler's own start-up and tear-down objects are not the call's.
            tracemalloc.reset_peak()
            start, _ = tracemalloc.get_traced_memory()
            out = fn(*args, **kwargs)
            del out
            _, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return Memory(_torch_allocator_peak(prof), max(0, peak - start))


def _status_kib(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(f"peak_rss: {key} not in /proc/self/status")


def peak_rss(fn, *args, **kwargs):
    """Resident-memory growth of this process during one call, in bytes, and how it was measured.

    Resets the kernel's peak-RSS counter (``/proc/self/clear_refs`` = 5), runs ``fn``, and returns ``VmHWM`` minus
    the ``VmRSS`` before the call. Sees every allocation (BLAS scratch too) but only pages newly touched: memory freed
    earlier and reused is not counted, so run it in a fresh process for a clean figure. Where the reset is not
    possible or ``VmHWM`` does not move (not Linux, no permission, a sandbox) it falls back to the growth of ``ru_maxrss``, a lower bound.

    Returns
    -------
    (int, str)
        Bytes and ``"VmHWM"`` or ``"ru_maxrss"``.
    """
    import resource

    # The package's probe decides whether VmHWM can be reset and really moves here (some sandboxes freeze it).
    from lowrankedit.jacobian_gram import _reset_resident_peak, _resident_peak_is_tracked

    if _resident_peak_is_tracked():
        _reset_resident_peak()
        method, before = "VmHWM", _status_kib("VmRSS")
    else:
        method, before = "ru_maxrss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = fn(*args, **kwargs)
    after = _status_kib("VmHWM") if method == "VmHWM" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del out
    return max(0, after - before) * 1024, method


def _code_measured():
    """Which lowrankedit was imported, and its git commit (with '+dirty' when the tree has changes)."""
    try:
        import lowrankedit
    except ImportError as exc:
        return f"lowrankedit not importable ({exc})"
    where = os.path.dirname(os.path.abspath(lowrankedit.__file__))
    version = getattr(lowrankedit, "__version__", "?")
    try:
        root = subprocess.run(["git", "-C", where, "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                              check=True).stdout.strip()
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return f"lowrankedit {version} at commit {commit}{'+dirty' if dirty else ''} ({where})"
    except (OSError, subprocess.CalledProcessError):
        return f"lowrankedit {version} (installed at {where}, not a git checkout)"


def machine_note():
    """One paragraph: versions, threads, CPUs, load average at the start and now, and the code measured."""
    import torch

    parts = [f"torch {torch.__version__}"]
    if "numpy" in sys.modules:
        parts.append(f"numpy {sys.modules['numpy'].__version__}")
    parts.append(f"{torch.get_num_threads()} intra-op thread(s) (OMP_NUM_THREADS="
                 f"{os.environ.get('OMP_NUM_THREADS', 'unset')}) on {os.cpu_count()} CPU(s), CPU only")
    if _LOAD_AT_START is not None:
        now = os.getloadavg()
        busy = "busy: other jobs share the machine" if max(_LOAD_AT_START[0], now[0]) > 0.5 else "quiet"
        parts.append(f"load average {_LOAD_AT_START[0]:.2f} at the start, {now[0]:.2f} at the end ({busy})")
    return "Machine: " + "; ".join(parts) + ". Code measured: " + _code_measured() + "."


def command_line():
    """The command that ran this benchmark, with the script relative to the repository root."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), os.path.dirname(os.path.dirname(RESULTS_DIR)))
    return "`python " + " ".join([script] + sys.argv[1:]) + "`"


def markdown_table(header, rows):
    """A markdown table from a header (list of str) and rows (lists of values, formatted with ``str``)."""
    header = list(header)
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"markdown_table: row {i} has {len(row)} cells, the header {len(header)}: {row!r}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(op, text, out_dir=RESULTS_DIR):
    """Write ``<out_dir>/<op>.md`` atomically (a failed run leaves the old table) with the command and the machine
    note appended, and return its path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{op}.md")
    footer = f"\n\nCommand: {command_line()}\n\n{machine_note()}\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text.rstrip("\n") + footer)
    os.replace(tmp, path)
    print(f"wrote {path}")
    return path
