"""The comparison report: every method on every region, evaluated alike, as one HTML page with its pictures.

:func:`build_report` runs :func:`lowrankedit.discover.discover` for each (region, method), scores the edits with
:func:`lowrankedit.evaluate` (held-out faces, calibrated strength, both signs), and writes into ``out``:

- ``report.html``: per region, the table (ROIR, masked MSE inside and outside, localization: mean +- std over
  samples and both signs; the strength; the time each method took), edit strips (held-out faces, alpha from
  ``-alpha`` to ``+alpha``) and difference heatmaps; then the parameters used;
- ``report_files/``: the pictures (PNG), ``<region>_evaluation.safetensors`` (the package's file format) and the
  directions files.
"""
import html
import json
import os
import platform
import time

import numpy as np
import torch
from PIL import Image

from . import viz
from .discover import discover, learn_parts, region_gram
from .evaluate import EVAL_SEED, evaluate, render

#: Strengths of the strips, as fractions of each edit's calibrated alpha.
STRIP_FRACTIONS = (-1.0, -0.5, 0.0, 0.5, 1.0)


def heatmap(change, mask, scale=2):
    """A PIL picture of a per-pixel change map ``(H, W)`` (>= 0), normalized to its maximum, with the region
    outlined: black (no change) through red and yellow to white (the largest change)."""
    c = change.detach().double().cpu()
    c = (c / c.max().clamp_min(1e-30)).numpy()
    rgb = np.stack([np.clip(3 * c, 0, 1), np.clip(3 * c - 1, 0, 1), np.clip(3 * c - 2, 0, 1)], -1)
    img = Image.fromarray((rgb * 255).round().astype(np.uint8))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return viz.outline_mask(img, mask, tuple(c.shape), 1, 1, pad=0, scale=scale, color=(80, 160, 255))


def _strip(G, source, z, alpha):
    images = render(G, source, z, [f * alpha for f in STRIP_FRACTIONS])  # (n, k, 3, H, W)
    k = images.shape[1]
    return viz.image_grid(images.flatten(0, 1), nrow=k, scale=2)


def _mean_change(G, source, z, alpha, chunk=16):
    total = 0
    with torch.no_grad():
        for zc in z.split(chunk):
            x0 = G.synthesize(zc)
            x = render(G, source, zc, [-alpha, alpha])
            total = total + (x - x0[:, None]).pow(2).mean(2).sum((0, 1))
    return total / (2 * z.shape[0])


def build_report(G, regions, methods, out, *, faces=8, seed=0, preset="default", samples=32, target=0.1,
                 strip_faces=4, progress=True, lelsd_steps=None, generator_spec="dcgan"):
    """Run, evaluate and write ``out/report.html``; returns its path (see the module docstring)."""
    from .models.protocol import fingerprint

    files = os.path.join(out, "report_files")
    os.makedirs(files, exist_ok=True)
    t_start = time.perf_counter()
    z_strip = G.sample_latents(strip_faces, seed=EVAL_SEED)  # held-out faces: the evaluation's first ones
    z_eval = G.sample_latents(samples, seed=EVAL_SEED)
    parts = None
    sections, all_params = [], {}
    for reg in regions:
        gram, edits = None, {}
        for method in methods:
            if method in ("lowrankgan", "resefa") and gram is None:
                gram = region_gram(G, reg, faces=faces, seed=seed, progress=progress)
            if method == "panda" and parts is None:
                parts = learn_parts(G, seed=seed, progress=progress, preset=preset)
            edit = discover(G, method, reg, faces=faces, seed=seed, preset=preset, gram=gram, parts=parts,
                            progress=progress, lelsd_steps=lelsd_steps)
            edit.save(os.path.join(files, f"{method}_{reg.name}.directions"))
            edits[method] = edit
            all_params[f"{reg.name}/{method}"] = _params_of(edit)
        ev = evaluate(G, edits, reg, samples=samples, target=target, progress=progress)
        ev.save(os.path.join(files, f"{reg.name}_evaluation.safetensors"))
        H, W = G.synthesize(z_strip[:1]).shape[-2:]
        mask = reg.mask(H, W)
        pics = []
        for method, edit in edits.items():
            alpha = ev.row(method)["alpha"]
            strip = os.path.join(files, f"strip_{reg.name}_{method}.png")
            viz.save_png(_strip(G, edit, z_strip, alpha), strip)
            heat = os.path.join(files, f"heat_{reg.name}_{method}.png")
            viz.save_png(heatmap(_mean_change(G, edit, z_eval, alpha), mask), heat)
            pics.append((method, alpha, os.path.relpath(strip, out), os.path.relpath(heat, out)))
        sections.append((reg, ev, pics))
    total = time.perf_counter() - t_start
    settings = {"generator": generator_spec, "fingerprint": fingerprint(G), "faces": faces, "seed": seed,
                "preset": preset, "held_out_samples": samples, "held_out_seed": EVAL_SEED,
                "target_rms_inside": target, "strip_fractions_of_alpha": list(STRIP_FRACTIONS),
                "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "total_seconds": round(total, 1)}
    page = _html(sections, settings, all_params)
    path = os.path.join(out, "report.html")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(page)
    os.replace(tmp, path)
    return path


def _params_of(edit):
    meta = edit.meta
    keep = {k: v for k, v in meta.items() if k in ("method", "params", "region", "generator", "seconds", "layer",
                                                   "rank_f", "rank_b", "null_dim")}
    if hasattr(edit, "part"):
        keep["selection"] = {"part": edit.part, "appearance": edit.appearance}
    return json.loads(json.dumps(keep, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


_CSS = """body{font-family:sans-serif;margin:24px;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}
th{background:#eee}td:first-child{text-align:left}.pics{display:flex;flex-wrap:wrap;gap:16px}
.pic{border:1px solid #ddd;padding:6px;flex:0 0 auto}.pic small{display:block;max-width:800px}
.row{display:flex;gap:8px;align-items:flex-start}.row img{flex:0 0 auto}.pic img{image-rendering:pixelated;display:block}
pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:12px}.best{font-weight:bold}"""


def _fmt(r, key, digits):
    return f"{r[key + '_mean']:.{digits}f} &plusmn; {r[key + '_std']:.{digits}f}"


def _html(sections, settings, params):
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>lowrankedit: four methods compared</title>",
           f"<style>{_CSS}</style></head><body>",
           "<h1>Local edits compared: LowRankGAN, ReSeFa, LELSD, PandA</h1>",
           f"<p>Generator <b>{e(settings['generator'])}</b> ({e(settings['fingerprint'])}). Every edit is applied to "
           f"the same {settings['held_out_samples']} held-out faces (seed {settings['held_out_seed']}, never used "
           "by a method) at the strength &alpha; that makes the mean RMS change inside the region "
           f"{settings['target_rms_inside']:g} (images in [-1, 1]), in both signs. Mean &plusmn; standard "
           "deviation over faces and both signs. ROIR = MSE outside / MSE inside (lower is better); localization "
           "= share of the change inside the region (higher is better). Time: the method's wall time, including "
           "its Jacobian Grams (LowRankGAN, ReSeFa) or its parts (PandA: learnt once, counted for each region).</p>"]
    for reg, ev, pics in sections:
        out.append(f"<h2>Region: {e(str(reg.name))}</h2><p>{e(json.dumps(reg.to_dict()))}</p>")
        out.append("<table><tr><th>method</th><th>&alpha;</th><th>ROIR</th><th>ROIR at -&alpha; / +&alpha;</th>"
                   "<th>MSE inside</th><th>MSE outside</th><th>localization</th><th>time (s)</th></tr>")
        best_roir = min(r["roir_mean"] for r in ev.rows)
        best_loc = max(r["localization_mean"] for r in ev.rows)
        for r in ev.rows:
            sec = "" if r.get("seconds") is None else f"{r['seconds']:.1f}"
            cls_r = " class='best'" if r["roir_mean"] == best_roir else ""
            cls_l = " class='best'" if r["localization_mean"] == best_loc else ""
            out.append(f"<tr><td>{e(r['name'])}</td><td>{r['alpha']:.3g}</td><td{cls_r}>{_fmt(r, 'roir', 3)}</td>"
                       f"<td>{r['roir_minus']:.3f} / {r['roir_plus']:.3f}</td><td>{_fmt(r, 'mse_inside', 4)}</td>"
                       f"<td>{_fmt(r, 'mse_outside', 5)}</td><td{cls_l}>{_fmt(r, 'localization', 3)}</td>"
                       f"<td>{sec}</td></tr>")
        out.append("</table><div class='pics'>")
        fr = ", ".join(f"{f:+g}" for f in STRIP_FRACTIONS)
        for method, alpha, strip, heat in pics:
            out.append(f"<div class='pic'><b>{e(method)}</b> (&alpha; = {alpha:.3g})<div class='row'>"
                       f"<img src='{e(strip)}' alt='{e(method)} edit strip'>"
                       f"<img src='{e(heat)}' alt='{e(method)} change heatmap'></div><small>left: held-out faces "
                       f"(rows) at {fr} &times; &alpha; (columns); right: mean squared change over the held-out faces "
                       "and both signs, region outlined</small></div>")
        out.append("</div>")
    out.append("<h2>Parameters</h2><pre>" + e(json.dumps(settings, indent=1)) + "</pre>")
    out.append("<pre>" + e(json.dumps(params, indent=1)) + "</pre></body></html>")
    return "\n".join(out)
