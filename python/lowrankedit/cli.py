"""The ``lowrankedit`` command: ``info``, ``discover``, ``edit``, ``evaluate``, ``report``.

Every bad input (a region that is not four integers or lies outside the image, an unknown method, a missing or
foreign file, a bad option) ends the command with exit status 2 and one line on stderr saying what is wrong and
what would be right; no traceback.

Examples
--------
``lowrankedit discover --method resefa --region 22,14,12,36 --out out/``
``lowrankedit edit --directions out/resefa_box.directions --out out/``
``lowrankedit report --regions eyes,mouth,nose --out out/``
"""
import argparse
import json
import os
import re
import sys
import warnings

USAGE_ERROR = 2


class UsageError(Exception):
    """A bad input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message; we keep to one line
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


# ------------------------------------------------------------------------------------------------ parsing helpers

def _ints(text, n=None):
    parts = [p.strip() for p in text.split(",")]
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = None
    if vals is None or (n is not None and len(vals) != n):
        return None
    return vals


def _floats(text, what):
    try:
        vals = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UsageError(f"{what}: expected comma-separated numbers such as --alphas=-3,-1.5,0,1.5,3, got {text!r}") from None
    if not vals:
        raise UsageError(f"{what}: expected at least one number, got {text!r}")
    return vals


_DCGAN = {}


def generator(spec, space=None, device="cpu"):
    """The generator named by ``--generator``: ``dcgan``, ``stylegan2`` or a checkpoint path (through the adapters)."""
    import torch
    import lowrankedit as le

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device: {device!r} asked for but no CUDA device is usable here; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"--device: expected cpu or cuda[:N], got {device!r}")
    if spec == "dcgan":
        if space not in (None, "z"):
            raise UsageError(f"--space: the DCGAN has only its z space (R^100); expected z, got {space!r}")
        if device not in _DCGAN:  # frozen weights: one copy per process serves every command run in it
            _DCGAN[device] = le.models.dcgan_digiface(device=device)
        return _DCGAN[device]
    if spec == "stylegan2":
        make = getattr(le.models, "stylegan2", None)
        if make is None:
            raise UsageError("--generator stylegan2: this installation has no lowrankedit.models.stylegan2; "
                             "use --generator dcgan")
        space = space or "wplus"
        if space not in ("z", "w", "wplus"):
            raise UsageError(f"--space: expected z, w or wplus for StyleGAN2, got {space!r}")
        G = make(256, space=space)
        return G.to(device) if hasattr(G, "to") else G
    if not os.path.exists(spec):
        raise UsageError(f"--generator: expected dcgan, stylegan2 or an existing checkpoint path, got {spec!r} "
                         "(no such file)")
    load = getattr(le.models, "from_checkpoint", None)
    if load is None:
        raise UsageError(f"--generator {spec}: loading a checkpoint needs the adapters "
                         "(lowrankedit.models.from_checkpoint), not in this installation; use --generator dcgan")
    try:
        return load(spec, space=space or "wplus", device=device)
    except (ValueError, TypeError, KeyError, OSError) as exc:
        raise UsageError(f"--generator {spec}: not a checkpoint the adapters can read ({exc})") from None


def image_size(G):
    import torch

    with torch.no_grad():
        return tuple(G.synthesize(G.sample_latents(1, seed=0)).shape[-2:])


def region(spec, G):
    """``--region``: ``top,left,h,w`` (a box on the image), a mask image, or a DCGAN region name."""
    import torch
    import lowrankedit as le

    H, W = image_size(G)
    names = sorted(le.models.dcgan.DCGAN_BOXES)
    right = (f"four integers top,left,h,w inside the {H}x{W} image (e.g. 42,20,14,24), a mask image (.png) or a "
             f"region name ({', '.join(names)})")
    if spec in names:
        if (H, W) != (64, 64):
            raise UsageError(f"--region {spec}: the named regions are boxes on 64x64 DCGAN faces; give {right}")
        return le.models.dcgan_region(spec)
    if "," in spec or re.fullmatch(r"[-+\d\s]+", spec):
        box = _ints(spec, 4)
        if box is None:
            raise UsageError(f"--region: expected {right}, got {spec!r}")
        top, left, h, w = box
        if h <= 0 or w <= 0 or top < 0 or left < 0 or top + h > H or left + w > W:
            raise UsageError(f"--region {spec}: the box rows [{top}, {top + h}) and columns [{left}, {left + w}) "
                             f"do not lie inside the {H}x{W} image; expected 0 <= top, top + h <= {H}, 0 <= left, "
                             f"left + w <= {W}, h, w > 0")
        return le.Region.box(top, left, h, w, size=(H, W), name=f"box{top}_{left}_{h}_{w}")
    if not os.path.isfile(spec):
        raise UsageError(f"--region: {spec!r} is no file; expected {right}")
    try:
        from PIL import Image
        import numpy as np

        m = np.asarray(Image.open(spec).convert("L"), dtype=np.float64) / 255.0
    except Exception as exc:  # PIL raises several kinds for a non-image
        raise UsageError(f"--region {spec}: not an image PIL can read ({type(exc).__name__}); expected {right}") \
            from None
    if m.max() <= 0:
        raise UsageError(f"--region {spec}: the mask is empty (all black); white marks the region")
    if m.min() >= 1:
        raise UsageError(f"--region {spec}: the mask covers the whole image; white marks the region, black the rest")
    name = os.path.splitext(os.path.basename(spec))[0]
    return le.Region.from_mask(torch.from_numpy(m), name=re.sub(r"[^A-Za-z0-9_-]", "_", name))


def region_from_meta(meta, G):
    spec = (meta or {}).get("region") or {}
    if spec.get("kind") == "box":
        import lowrankedit as le

        return le.Region.box(spec["top"], spec["left"], spec["height"], spec["width"], size=tuple(spec["size"]),
                             name=spec.get("name"))
    return None


def load_edit(path, G):
    """A directions file written by ``discover``: ``Directions`` or a PandA ``PartEdit``; checks the generator."""
    import lowrankedit as le
    from .models.protocol import fingerprint

    if not os.path.isfile(path):
        raise UsageError(f"--directions: no such file {path!r}; expected a file written by lowrankedit discover")
    source = None
    for loader in (lambda: le.Directions.load(path), lambda: le.PartEdit.load(path, generator=G)):
        try:
            source = loader()
            break
        except Exception:  # a foreign file fails each loader in its own way
            continue
    if source is None:
        raise UsageError(f"--directions: {path} is not a lowrankedit directions file; expected one written by "
                         "lowrankedit discover --out DIR")
    made_for = source.meta.get("generator")
    if made_for and made_for != fingerprint(G):
        raise UsageError(f"--directions: {path} was made for generator {made_for}, not {fingerprint(G)}; pass the "
                         "--generator it was made with")
    return source


# ------------------------------------------------------------------------------------------------ commands

def cmd_info(args):
    import lowrankedit as le

    print(json.dumps(le.info(), indent=1, default=str))


def _common_setup(args):
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return generator(args.generator, args.space, args.device)


def _without_nproc(argv):
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def cmd_discover(args):
    from . import distributed
    from .discover import discover

    if args.nproc > 1 and not distributed.launched():  # start the ranks under torchrun; each runs this command
        return distributed.launch(_without_nproc(args.argv), args.nproc)
    if distributed.launched():
        distributed.init()
    G = _common_setup(args)
    reg = region(args.region, G)
    out = discover(G, args.method, reg, faces=args.faces, seed=args.seed, preset=args.preset,
                   progress=not args.quiet, lelsd_steps=args.lelsd_steps)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{args.method}_{reg.name or 'region'}.directions")
    distributed.atomic_write_if_all_finished(path, out.save, tag="discover")  # nothing unless every rank finished
    if distributed.rank() == 0:
        print(path)


def cmd_edit(args):
    import torch
    from . import viz
    from .evaluate import render

    G = _common_setup(args)
    source = load_edit(args.directions, G)
    alphas = _floats(args.alphas, "--alphas")
    if hasattr(source, "vectors"):
        if not 0 <= args.index < len(source):
            raise UsageError(f"--index: expected 0 <= index < {len(source)} (the file holds {len(source)} "
                             f"directions), got {args.index}")
        source = source.vectors[args.index]
    z = G.sample_latents(args.faces, seed=args.seed)
    images = render(G, source, z, alphas)  # (n, k, 3, H, W)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.splitext(os.path.basename(args.directions))[0]
    path = os.path.join(args.out, f"edit_{stem}.png")
    viz.save_png(viz.image_grid(images.flatten(0, 1), nrow=len(alphas), scale=3), path)
    print(path)


def cmd_evaluate(args):
    import lowrankedit as le

    G = _common_setup(args)
    edits, reg = {}, None
    for path in args.directions:
        source = load_edit(path, G)
        name = os.path.splitext(os.path.basename(path))[0]
        edits[name] = source
        reg = reg or region_from_meta(source.meta, G)
    if args.region is not None:
        reg = region(args.region, G)
    if reg is None:
        raise UsageError("--region: the directions files record no box region; pass --region top,left,h,w or a mask")
    ev = le.evaluate(G, edits, reg, samples=args.samples, target=args.target, progress=not args.quiet)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "evaluation.safetensors")
    ev.save(path)
    print(ev.table())
    print(path)


def cmd_report(args):
    from .report import build_report

    G = _common_setup(args)
    names = [r.strip() for r in args.regions.split(";" if ";" in args.regions else ",") if r.strip()] \
        if not re.fullmatch(r"\d+,\d+,\d+,\d+", args.regions) else [args.regions]
    regions = [region(r, G) for r in names]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    from .discover import METHODS

    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise UsageError(f"--methods: expected a comma-separated subset of {','.join(METHODS)}, got {args.methods!r}")
    path = build_report(G, regions, methods, args.out, faces=args.faces, seed=args.seed, preset=args.preset,
                        samples=args.samples, target=args.target, progress=not args.quiet,
                        lelsd_steps=args.lelsd_steps, generator_spec=args.generator)
    print(path)


# ------------------------------------------------------------------------------------------------ the parser

def _positive(name):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
        return v
    parse.__name__ = name
    return parse


def _positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return v


def build_parser():
    from .discover import METHODS

    p = _Parser(prog="lowrankedit", description="Local image editing with pretrained GANs: find, apply, evaluate "
                "and compare latent directions (LowRankGAN, ReSeFa, LELSD, PandA).")
    sub = p.add_subparsers(dest="command", metavar="{info,discover,edit,evaluate,report}", parser_class=_Parser)
    sub.required = True

    def common(sp, out_default="out"):
        sp.add_argument("--generator", default="dcgan", help="dcgan (default), stylegan2 or a checkpoint path")
        sp.add_argument("--space", default=None, help="latent space: z for the DCGAN; z, w or wplus for StyleGAN2")
        sp.add_argument("--faces", type=_positive("faces"), default=8,
                        help="latents the method learns from / faces shown (default 8)")
        sp.add_argument("--seed", type=int, default=0, help="seed of the method and of the faces shown (default 0)")
        sp.add_argument("--device", default="cpu", help="cpu (default) or cuda")
        sp.add_argument("--threads", type=_positive("threads"), default=None, help="torch CPU threads")
        sp.add_argument("--out", default=out_default, help=f"output folder (default {out_default})")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    sub.add_parser("info", help="what this installation can do (JSON)")

    d = sub.add_parser("discover", help="find directions for a region; writes DIR/<method>_<region>.directions")
    d.add_argument("--method", required=True, choices=METHODS, help="the method")
    d.add_argument("--region", required=True, help="top,left,h,w | MASK.png | eyes | nose | mouth")
    d.add_argument("--preset", default="default", choices=("default", "official"),
                   help="the method's settings: measured defaults, or the paper code's")
    d.add_argument("--lelsd-steps", type=_positive("lelsd-steps"), default=None, help=argparse.SUPPRESS)
    d.add_argument("--nproc", type=_positive("nproc"), default=1,
                   help="local processes sharing the work under torchrun (torch.distributed; default 1)")
    common(d)

    e = sub.add_parser("edit", help="render edits along a directions file; writes DIR/edit_<file>.png")
    e.add_argument("--directions", required=True, help="a file written by discover")
    e.add_argument("--alphas", default="-3,-1.5,0,1.5,3", help="comma-separated strengths; write --alphas=-3,0,3 "
                   "(with =) when the first is negative")
    e.add_argument("--index", type=int, default=0, help="which direction of the file (default 0, the best)")
    common(e)

    v = sub.add_parser("evaluate", help="score directions files on held-out faces at a calibrated strength")
    v.add_argument("--directions", required=True, nargs="+", help="files written by discover")
    v.add_argument("--region", default=None, help="default: the box recorded in the files")
    v.add_argument("--samples", type=_positive("samples"), default=32, help="held-out faces (default 32)")
    v.add_argument("--target", type=_positive_float, default=0.1,
                   help="mean RMS change inside the region the strength is calibrated to (default 0.1)")
    common(v)

    r = sub.add_parser("report", help="run every method on every region, evaluate, write DIR/report.html")
    r.add_argument("--regions", default="eyes,mouth,nose", help="names, or boxes/masks separated by ';'")
    r.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of the methods")
    r.add_argument("--preset", default="default", choices=("default", "official"))
    r.add_argument("--samples", type=_positive("samples"), default=32, help="held-out faces scored (default 32)")
    r.add_argument("--target", type=_positive_float, default=0.1, help="calibration target (default 0.1)")
    r.add_argument("--lelsd-steps", type=_positive("lelsd-steps"), default=None, help=argparse.SUPPRESS)
    common(r)
    return p


COMMANDS = {"info": cmd_info, "discover": cmd_discover, "edit": cmd_edit, "evaluate": cmd_evaluate,
            "report": cmd_report}


def main(argv=None):
    """Entry point of the console script; returns the exit status."""
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch's own deprecation notices at import
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        status = COMMANDS[args.command](args)
    except UsageError as exc:
        msg = str(exc)
        print(msg if msg.startswith("lowrankedit") else f"lowrankedit: error: {msg}", file=sys.stderr)
        return USAGE_ERROR
    except (ValueError, TypeError, FileNotFoundError) as exc:
        if os.environ.get("LOWRANKEDIT_DEBUG"):
            raise
        # A library check tripped on what the user gave: its message names the argument and what was expected.
        print(f"lowrankedit: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("lowrankedit: interrupted", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
