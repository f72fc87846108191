"""Each method's defaults against its paper settings (``preset="official"``) on the shipped pretrained DCGAN.

Script:  python bench/bench_presets.py [--quick] [--threads N] [--out-dir DIR] [--samples N] [--seed N] [--sweep]
         (prints the tables, writes bench/results/presets.md; with --sweep, instead, settings around each default
         of LowRankGAN, ReSeFa and LELSD, scored alike, into bench/results/presets_sweep.md)

For each region (the report's eyes, mouth and nose boxes) and each method (LowRankGAN, ReSeFa, LELSD, PandA), the
direction is found twice, with ``preset="default"`` and with ``preset="official"``, exactly as the comparison
report finds it (:func:`lowrankedit.discover.discover`: the same Jacobian Grams over 8 faces for LowRankGAN and
ReSeFa, LELSD on the static box, PandA's parts at DCGAN ``block3`` with ranks (64, 8) and the part and appearance
chosen for the region). Both are then scored by one :func:`lowrankedit.evaluate` call per region: the same held-out
faces, each edit at its own calibrated strength (mean RMS change 0.1 inside the region), both signs, mean and
standard deviation over faces and signs.

Each method is judged on its own paper's main metric: LowRankGAN and ReSeFa on the masked MSE outside the region
(both papers' precision measure; at the calibrated strength the change inside is the same for every edit), LELSD on
the localization score (its objective), PandA on ROIR (its paper's ratio). A setting wins when its mean is better by
more than twice the standard error of the difference (``sqrt(s1^2 / n1 + s2^2 / n2)`` over the ``2 * samples``
values of each); otherwise the row says "tie".

The random-weight ``stylegan2`` generator is not measured: it has no pretrained weights, so no ranking on it says
anything about quality.
"""
import math
import time
import warnings

import harness

DEFAULT_THREADS = 1
REGIONS = ("eyes", "mouth", "nose")
METHODS = ("lowrankgan", "resefa", "lelsd", "panda")
PRESET_NAMES = ("default", "official")
#: The main metric of each method: (key in Evaluation rows, label, True when higher is better).
MAIN_METRIC = {
    "lowrankgan": ("mse_outside", "MSE outside", False),
    "resefa": ("mse_outside", "MSE outside", False),
    "lelsd": ("localization", "localization", True),
    "panda": ("roir", "ROIR", False),
}


def learn_panda_parts(G, preset, *, quick=False, progress=False, seed=0):
    """PandA's parts for ``preset`` as the report learns them (:func:`lowrankedit.discover.learn_parts`); ``quick``:
    a 20-iteration run of the preset's step rule."""
    import lowrankedit as le
    from lowrankedit.discover import PANDA_DEFAULTS, learn_parts

    if not quick:
        return learn_parts(G, seed=seed, progress=progress, preset=preset)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        parts = le.panda(G, PANDA_DEFAULTS["layer"], ranks=PANDA_DEFAULTS["ranks"], n_samples=64, iters=20,
                         preset=preset, seed=seed, progress=progress)
    parts.meta["seconds"] = time.perf_counter() - t0
    return parts


def winner(method, a, b):
    """``(name, text)`` of the better of evaluation rows ``a`` (default) and ``b`` (official) on the method's main
    metric, or ``"tie"`` when they differ by at most two standard errors."""
    key, label, higher = MAIN_METRIC[method]
    ma, mb = a[f"{key}_mean"], b[f"{key}_mean"]
    n = a["n_values"]
    se = math.sqrt((a[f"{key}_std"] ** 2 + b[f"{key}_std"] ** 2) / n)
    diff = (ma - mb) if higher else (mb - ma)  # > 0: the default is better
    if abs(diff) <= 2 * se:
        return "tie", f"tie on {label} ({ma:.4g} vs {mb:.4g}, 2 SE = {2 * se:.2g})"
    name = "default" if diff > 0 else "official"
    return name, f"**{name}** on {label} ({ma:.4g} vs {mb:.4g}, 2 SE = {2 * se:.2g})"


def run(quick=False, samples=32, progress=True, seed=0):
    """Discover and evaluate every (region, method, preset); returns ``(rows, per_region_seconds)``."""
    import torch
    import lowrankedit as le
    from lowrankedit.discover import discover, region_gram

    G = le.models.dcgan_digiface()
    regions = REGIONS[1:2] if quick else REGIONS
    parts = {p: learn_panda_parts(G, p, quick=quick, progress=progress, seed=seed) for p in PRESET_NAMES}
    for p, pa in parts.items():
        print(f"panda parts ({p}): {pa.meta['seconds']:.1f} s, held-out unexplained "
              f"{pa.meta.get('held_out_end', float('nan')):.3f}", flush=True)
    rows, seconds = [], {}
    for name in regions:
        t_region = time.perf_counter()
        reg = le.models.dcgan_region(name)
        gram = region_gram(G, reg, faces=2 if quick else 8, seed=seed, progress=progress)
        edits, errors = {}, {}
        for method in METHODS:
            for preset in PRESET_NAMES:
                label = f"{method}:{preset}"
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        edits[label] = discover(G, method, reg, faces=2 if quick else 8, seed=seed, preset=preset,
                                                gram=gram, parts=parts[preset], progress=progress,
                                                lelsd_steps=3 if quick else None)
                except (ValueError, RuntimeError, torch.linalg.LinAlgError) as exc:
                    errors[label] = f"{type(exc).__name__}: {exc}"
                    print(f"{name} {label}: failed: {errors[label]}", flush=True)
        ev = le.evaluate(G, edits, reg, samples=4 if quick else samples, progress=progress)
        by_name = {r["name"]: r for r in ev.rows}
        for method in METHODS:
            pair = [by_name.get(f"{method}:{p}") for p in PRESET_NAMES]
            if all(pair):
                for r in pair:
                    r["n_values"] = 2 * ev.params["samples"]
                win, text = winner(method, *pair)
            else:
                win, text = "default" if pair[0] else "official", "the other setting failed"
            for preset, r in zip(PRESET_NAMES, pair):
                rows.append({"region": name, "method": method, "preset": preset, "row": r, "winner": win,
                             "verdict": text, "error": errors.get(f"{method}:{preset}"),
                             "params": _settings(edits.get(f"{method}:{preset}"))})
        seconds[name] = time.perf_counter() - t_region
        print(f"{name}: {seconds[name]:.1f} s", flush=True)
    return rows, seconds, {p: pa.meta.get("held_out_end") for p, pa in parts.items()}


def _settings(edit):
    """A short description of the settings an edit was found with."""
    if edit is None:
        return ""
    meta = edit.meta
    p = meta.get("params", {})
    method = meta.get("method")
    if method == "lelsd":
        return f"layers {'+'.join(p['layers'])}, lr {p['lr']:g}, {p['steps']} steps"
    if method == "resefa":
        return f"tau {meta['tau']:g}"
    if method == "lowrankgan":
        return f"rpca {p['rpca_method']}, lamb {p['lamb']:.4g}"
    if method == "panda":
        pm = edit.parts.meta
        lr = pm.get("lr")
        return (f"batch {pm.get('batch_size')}, {pm.get('iters')} iters, "
                f"lr {'line search' if lr is None else f'{lr:g}'}")
    return ""


def _cell(r, key, digits):
    return f"{r[key + '_mean']:.{digits}f} +- {r[key + '_std']:.{digits}f}"


def tables(rows, seconds, unexplained, samples):
    header = ["method", "region", "setting", "settings used", "alpha", "ROIR (lower better)", "MSE inside",
              "MSE outside", "localization (higher better)", "time s", "main metric: better setting"]
    body = []
    for x in rows:
        r = x["row"]
        if r is None:
            body.append([x["method"], x["region"], x["preset"], x["params"], "", f"failed: {x['error']}", "", "",
                         "", "", x["verdict"]])
            continue
        body.append([x["method"], x["region"], x["preset"], x["params"], f"{r['alpha']:.3g}", _cell(r, "roir", 3),
                     _cell(r, "mse_inside", 4), _cell(r, "mse_outside", 5), _cell(r, "localization", 3),
                     "" if r.get("seconds") is None else f"{r['seconds']:.1f}", x["verdict"]])
    summary = []
    for method in METHODS:
        verdicts = [x["winner"] for x in rows if x["method"] == method and x["preset"] == "default"]
        summary.append([method, MAIN_METRIC[method][1], verdicts.count("default"), verdicts.count("official"),
                        verdicts.count("tie")])
    text = ["# Defaults against the paper settings (`preset=\"official\"`), pretrained DCGAN", "",
            f"Each (method, region) found with `preset=\"default\"` and `preset=\"official\"` as the report finds it "
            f"(`lowrankedit.discover`), both scored by one `lowrankedit.evaluate` per region: {samples} held-out "
            "faces, the strength calibrated to a mean RMS change of 0.1 inside the region, both signs; mean +- "
            "standard deviation over faces and signs. Time: the method's wall time (with its Jacobian Grams over 8 "
            "faces for LowRankGAN and ReSeFa, its parts for PandA: learnt once per setting, counted for each "
            "region). The better setting is judged on each method's own main metric (LowRankGAN, ReSeFa: MSE "
            "outside; LELSD: localization; PandA: ROIR) and is a tie within two standard errors.", "",
            harness.markdown_table(header, body), "",
            "## Summary: regions where each setting wins on the method's main metric", "",
            harness.markdown_table(["method", "main metric", "default wins", "official wins", "tie"], summary), "",
            "PandA's parts, held-out unexplained energy (lower is better): " +
            ", ".join(f"{p} {v:.3f}" for p, v in unexplained.items() if v is not None) + ". "
            "Wall time per region (discovery of all eight, evaluation): " +
            ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ". "
            "The random-weight `stylegan2` generator is not measured: without pretrained weights no ranking on it "
            "says anything about edit quality."]
    return "\n".join(text)


#: Settings tried around each default by ``--sweep``: (label, keyword arguments); the first is the default.
SWEEP = {
    "lowrankgan": [("default (lamb 1/40)", {}), ("lamb 1/60 (the paper's)", {"lamb": 1 / 60}),
                   ("lamb 1/30", {"lamb": 1 / 30}), ("lamb 1/20", {"lamb": 1 / 20}), ("relax 2", {"relax": 2})],
    "resefa": [("default (tau 1e-3)", {}), ("tau 0", {"tau": 0.0}), ("tau 1e-4", {"tau": 1e-4}),
               ("tau 1e-2", {"tau": 1e-2}), ("tau 1e-1", {"tau": 1e-1})],
    "lelsd": [("default (block3+block4+image, lr 5e-2, 150 steps)", {}), ("lr 2e-2", {"lr": 2e-2}),
              ("lr 1e-1", {"lr": 1e-1}), ("300 steps", {"steps": 300}), ("image only", {"layers": ["image"]}),
              ("all layers + image", {"layers": ["block1", "block2", "block3", "block4", "image"]})],
}


def sweep(quick=False, samples=32, progress=True, seed=0):
    """Each (method, setting) of :data:`SWEEP` on every region, one ``evaluate`` per region; rows of
    ``[method, setting, region, main metric mean +- std, default within 2 SE of the best?]``."""
    import lowrankedit as le
    from lowrankedit.discover import region_gram
    from lowrankedit.segmenters import StaticRegion

    G = le.models.dcgan_digiface()
    regions = REGIONS[1:2] if quick else REGIONS
    out = []
    for name in regions:
        reg = le.models.dcgan_region(name)
        gram = region_gram(G, reg, faces=2 if quick else 8, seed=seed, progress=progress)
        edits = {}
        for method, cases in SWEEP.items():
            for i, (label, kw) in enumerate(cases):
                key = f"{method}:{i}"
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    if method == "lowrankgan":
                        d = le.lowrankgan(gram, **kw)
                    elif method == "resefa":
                        d = le.resefa(gram, k=8, **kw)
                    else:
                        kw = {"steps": 3, **kw} if quick else kw
                        d = le.lelsd(G, StaticRegion(reg), num_directions=1, seed=seed, progress=progress, **kw)
                if len(d):
                    edits[key] = d
        ev = le.evaluate(G, edits, reg, samples=4 if quick else samples, progress=progress)
        by = {r["name"]: r for r in ev.rows}
        n = 2 * ev.params["samples"]
        for method, cases in SWEEP.items():
            metric, label_m, higher = MAIN_METRIC[method]
            got = {i: by[f"{method}:{i}"] for i in range(len(cases)) if f"{method}:{i}" in by}
            best = (max if higher else min)(got, key=lambda i: got[i][f"{metric}_mean"])
            for i, (label, _) in enumerate(cases):
                if i not in got:
                    out.append([method, label, name, "no direction", ""])
                    continue
                r, b = got[i], got[best]
                se = math.sqrt((r[f"{metric}_std"] ** 2 + b[f"{metric}_std"] ** 2) / n)
                near = abs(r[f"{metric}_mean"] - b[f"{metric}_mean"]) <= 2 * se
                mark = "best" if i == best else ("within 2 SE of the best" if near else "worse")
                out.append([method, label, name, f"{label_m} {_cell(r, metric, 5 if metric == 'mse_outside' else 3)}",
                            mark])
        print(f"{name}: done", flush=True)
    return out


def main(argv=None):
    ap = harness.parser(__doc__, default_threads=DEFAULT_THREADS)
    ap.add_argument("--samples", type=int, default=32, help="held-out faces scored (default 32)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--sweep", action="store_true", help="settings around each default instead (presets_sweep.md)")
    ap.add_argument("--seed", type=int, default=0, help="the discovery seed (Grams' faces, LELSD, PandA); a "
                    "non-zero seed writes presets_seed<N>.md / presets_sweep_seed<N>.md")
    args = ap.parse_args(argv)
    harness.pin_threads(args.threads, argv=[])
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if args.sweep:
        rows = sweep(quick=args.quick, samples=args.samples, progress=not args.quiet, seed=args.seed)
        text = "\n".join([
            "# Settings around each default, pretrained DCGAN", "",
            f"Scored as in presets.md ({4 if args.quick else args.samples} held-out faces, calibrated strength, both "
            "signs); each method on its main metric (LowRankGAN, ReSeFa: MSE outside; LELSD: localization). "
            f"LowRankGAN and ReSeFa share the Jacobian Grams of 8 faces (seed {args.seed}) per region; LELSD runs "
            f"with seed {args.seed}.", "",
            harness.markdown_table(["method", "setting", "region", "main metric (mean +- std)", "against the best"],
                                   rows), "", f"Whole run: {time.perf_counter() - t0:.0f} s."])
        print(text)
        harness.write_result("presets_sweep" + (f"_seed{args.seed}" if args.seed else ""), text, args.out_dir)
        return
    rows, seconds, unexplained = run(quick=args.quick, samples=args.samples, progress=not args.quiet,
                                     seed=args.seed)
    text = tables(rows, seconds, unexplained, 4 if args.quick else args.samples)
    text += f"\n\nDiscovery seed {args.seed}. Whole run: {time.perf_counter() - t0:.0f} s."
    print(text)
    harness.write_result("presets" + (f"_seed{args.seed}" if args.seed else ""), text, args.out_dir)


if __name__ == "__main__":
    main()
