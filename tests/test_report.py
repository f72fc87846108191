"""The report: produced with tiny settings, every picture not blank, and it renders in headless Chromium."""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

import lowrankedit as le
from lowrankedit import discover as discover_mod
from lowrankedit.report import build_report

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def report(dcgan, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    saved = dict(discover_mod.PANDA_DEFAULTS)
    discover_mod.PANDA_DEFAULTS.update(iters=5, n_samples=16, appearances=2, ranks=(8, 4))
    try:
        path = build_report(dcgan, [le.models.dcgan_region("eyes")], list(discover_mod.METHODS), str(out), faces=1,
                            samples=3, strip_faces=2, progress=False, lelsd_steps=2)
    finally:
        discover_mod.PANDA_DEFAULTS.clear()
        discover_mod.PANDA_DEFAULTS.update(saved)
    return path


def test_report_is_written_with_everything(report):
    assert os.path.basename(report) == "report.html"
    page = open(report).read()
    for method in discover_mod.METHODS:
        assert f"<td>{method}</td>" in page
    assert "ROIR" in page and "localization" in page and "time (s)" in page and "&plusmn;" in page
    assert "Parameters" in page and "&quot;held_out_samples&quot;: 3" in page
    ev = le.Evaluation.load(os.path.join(os.path.dirname(report), "report_files", "eyes_evaluation.safetensors"))
    assert [r["name"] for r in ev.rows] == list(discover_mod.METHODS)
    assert all(r["seconds"] is not None and r["seconds"] > 0 for r in ev.rows)


def test_report_images_are_not_blank(report):
    srcs = re.findall(r"<img src='([^']+)'", open(report).read())
    assert len(srcs) == 2 * len(discover_mod.METHODS)  # a strip and a heatmap per method
    for src in srcs:
        img = np.asarray(Image.open(os.path.join(os.path.dirname(report), src)).convert("RGB")).astype(float)
        assert img.shape[0] >= 64 and img.shape[1] >= 64, src
        assert img.std() > 5, f"{src} is blank (std {img.std():.2f})"
    strip = np.asarray(Image.open(os.path.join(os.path.dirname(report), srcs[0])).convert("RGB")).astype(float)
    cells = [strip[4:4 + 128, 4 + i * 132: 4 + i * 132 + 128] for i in (0, 4)]  # -alpha and +alpha, first face
    assert np.abs(cells[0] - cells[1]).mean() > 1, "the strip's two ends are the same picture"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (scripts/setup.sh installs it)")
def test_report_renders_in_chromium(report, tmp_path):
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--window-size=1200,1400", f"--screenshot={shot}", "file://" + os.path.abspath(report)]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.is_file(), "Chromium wrote no screenshot"
    img = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    assert img.shape[:2] == (1400, 1200)
    # Rendered text and pictures: many distinct colours, not a blank or error page.
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3)[::97], axis=0)) > 200
