"""The lowrankedit command end to end (subprocess, tiny settings) and every bad-input exit: status 2, one line."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import lowrankedit as le
from lowrankedit.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python"), "OMP_NUM_THREADS": "1"}


def run(*args):
    return subprocess.run([sys.executable, "-m", "lowrankedit", *args], capture_output=True, text=True, env=ENV,
                          timeout=300)


def test_end_to_end(tmp_path):
    out = str(tmp_path)
    r = run("info")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"]
    r = run("discover", "--method", "resefa", "--region", "22,14,12,36", "--faces", "1", "--out", out, "--quiet",
            "--threads", "1")
    assert r.returncode == 0, r.stderr
    path = r.stdout.strip().splitlines()[-1]
    assert path == os.path.join(out, "resefa_box22_14_12_36.directions") and os.path.isfile(path)
    d = le.Directions.load(path)
    assert d.meta["method"] == "resefa" and d.meta["region"]["top"] == 22
    r = run("edit", "--directions", path, "--faces", "2", "--alphas=-2,0,2", "--out", out, "--threads", "1")
    assert r.returncode == 0, r.stderr
    png = r.stdout.strip().splitlines()[-1]
    img = np.asarray(Image.open(png))
    assert img.shape[0] > 2 * 64 and img.shape[1] > 3 * 64 and img.std() > 10  # 2 faces x 3 strengths, not blank
    r = run("evaluate", "--directions", path, "--samples", "2", "--out", out, "--quiet", "--threads", "1")
    assert r.returncode == 0, r.stderr
    ev = le.Evaluation.load(r.stdout.strip().splitlines()[-1])
    assert ev.rows[0]["name"] == "resefa_box22_14_12_36" and ev.params["region"]["top"] == 22
    assert "ROIR" in r.stdout


def test_discover_on_two_processes_equals_one(tmp_path):
    """--nproc 2 launches two gloo ranks under torchrun (loopback); the directions equal the one-process run's."""
    common = ("discover", "--method", "resefa", "--region", "22,14,12,36", "--faces", "2", "--quiet",
              "--threads", "1")
    one = run(*common, "--out", str(tmp_path / "one"))
    two = run(*common, "--out", str(tmp_path / "two"), "--nproc", "2")
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    paths = [r.stdout.strip().splitlines()[-1] for r in (one, two)]
    d1, d2 = (le.Directions.load(p) for p in paths)
    cos = torch.nn.functional.cosine_similarity(d1.vectors[:3].double(), d2.vectors[:3].double(), dim=1).abs()
    assert bool((cos > 1 - 1e-6).all()), cos


def test_error_exits_in_a_process(tmp_path):
    for args in (("discover", "--method", "resefa", "--region", "1,2,3", "--out", str(tmp_path)),
                 ("edit", "--directions", str(tmp_path / "missing.directions"))):
        r = run(*args)
        assert r.returncode == 2
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stdout == ""


@pytest.fixture
def foreign(tmp_path):
    """A directions file made for another generator, and a file that is no directions file at all."""
    d = le.Directions(torch.eye(100)[:1], torch.ones(1), {"generator": "other:0123456789ab"})
    d.save(tmp_path / "other.directions")
    (tmp_path / "junk.directions").write_text("hello")
    return tmp_path


def _mask_png(path, value=255):
    m = np.zeros((64, 64), np.uint8)
    m[40:56, 20:44] = value
    Image.fromarray(m).save(path)
    return str(path)


@pytest.mark.parametrize("args, match", [
    (["discover", "--method", "resefa", "--region", "1,2,3"], r"--region: expected four integers top,left,h,w"),
    (["discover", "--method", "resefa", "--region", "a,b,c,d"], r"--region: expected four integers"),
    (["discover", "--method", "resefa", "--region", "60,60,10,10"], r"do not lie inside the 64x64 image"),
    (["discover", "--method", "resefa", "--region=-1,0,4,4"], r"do not lie inside the 64x64 image"),
    (["discover", "--method", "resefa", "--region", "-1,0,4,4"], r"--region: expected one argument"),
    (["discover", "--method", "fancy", "--region", "eyes"], r"invalid choice: 'fancy' \(choose from 'lowrankgan'"),
    (["discover", "--method", "resefa", "--region", "NOFILE.png"], r"'NOFILE.png' is no file; expected four"),
    (["discover", "--method", "resefa", "--region", "EMPTY"], r"the mask is empty"),
    (["discover", "--method", "resefa", "--region", "NOTIMAGE"], r"not an image PIL can read"),
    (["discover", "--method", "resefa", "--region", "eyes", "--faces", "0"], r"--faces: expected a positive"),
    (["discover", "--method", "resefa", "--region", "eyes", "--bogus"], r"unrecognized arguments: --bogus"),
    (["discover", "--region", "eyes"], r"the following arguments are required: --method"),
    (["discover", "--method", "resefa", "--region", "eyes", "--space", "wplus"], r"--space: the DCGAN has only"),
    (["discover", "--method", "resefa", "--region", "eyes", "--device", "tpu"], r"--device: expected cpu or cuda"),
    (["discover", "--method", "resefa", "--region", "eyes", "--generator", "NOFILE.ckpt"],
     r"--generator: expected dcgan, stylegan2 or an existing checkpoint path"),
    (["edit", "--directions", "MISSING"], r"--directions: no such file"),
    (["edit", "--directions", "JUNK"], r"is not a lowrankedit directions file"),
    (["edit", "--directions", "OTHER"], r"was made for generator other:0123456789ab, not dcgan:"),
    (["edit", "--directions", "OTHER_OK", "--alphas", "1,x"], r"--alphas: expected comma-separated numbers"),
    (["edit", "--directions", "OTHER_OK", "--index", "3"], r"--index: expected 0 <= index < 1"),
    (["evaluate", "--directions", "OTHER_OK"], r"--region: the directions files record no box region"),
    (["evaluate", "--directions", "OTHER_OK", "--region", "eyes", "--target", "-1"], r"--target: expected a positive"),
    (["report", "--methods", "resefa,magic"], r"--methods: expected a comma-separated subset of lowrankgan"),
    ([], r"the following arguments are required"),
])
def test_bad_input_one_line(args, match, foreign, capsys, tmp_path, dcgan):
    ok = le.Directions(torch.eye(100)[:1], torch.ones(1), {"generator": le.models.fingerprint(dcgan)})
    ok.save(tmp_path / "ok.directions")
    (tmp_path / "notimage.png").write_text("no pixels")
    subst = {"MISSING": str(tmp_path / "missing"), "JUNK": str(foreign / "junk.directions"),
             "OTHER": str(foreign / "other.directions"), "OTHER_OK": str(tmp_path / "ok.directions"),
             "EMPTY": _mask_png(tmp_path / "empty.png", 0), "NOTIMAGE": str(tmp_path / "notimage.png")}
    argv = [subst.get(a, a) for a in args] + (["--out", str(tmp_path / "o")] if args and args[0] != "info" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("lowrankedit")
    import re
    assert re.search(match, err), err


def test_stylegan2_name_is_accepted_or_explained(capsys, tmp_path):
    rc = main(["discover", "--method", "resefa", "--region", "eyes", "--generator", "stylegan2", "--out",
               str(tmp_path), "--faces", "1", "--quiet"])
    if not hasattr(le.models, "stylegan2"):
        assert rc == 2
        assert "this installation has no lowrankedit.models.stylegan2; use --generator dcgan" in capsys.readouterr().err


def test_mask_image_region(tmp_path, capsys):
    mask = _mask_png(tmp_path / "mouth.png")
    assert main(["discover", "--method", "resefa", "--region", mask, "--faces", "1", "--out", str(tmp_path),
                 "--quiet", "--threads", "1"]) == 0
    path = capsys.readouterr().out.strip().splitlines()[-1]
    assert path.endswith("resefa_mouth.directions")
    assert le.Directions.load(path).meta["region"]["kind"] == "mask"
