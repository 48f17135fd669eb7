"""`snakemake --report` on the finished demo: one self-contained HTML page with the plots, tables and captions."""
from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.workflow.conftest import snakemake

TARGET = "results/demo/fold1/metrics.json"
CONFUSION = "results/demo/fold1/star-dagger/confusion.png"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr"]
# Added to a copy of the report: opens the confusion matrix the way the report's own "view" button does (the
# app's setView with the embedded data URI), then records what the browser decoded in an attribute of <body>.
# React 18's createRoot renders asynchronously, so the global `app` may not exist yet at "load": poll for it, then
# for the decoded image (under --virtual-time-budget the polling costs no wall time).
PROBE = """<script>
function probeWhenReady(tries) {
  if (typeof app === "undefined" || !app) {
    if (tries > 0) { setTimeout(() => probeWhenReady(tries - 1), 100); } else { document.body.dataset.probe = "no app"; }
    return;
  }
  const path = Object.keys(results).find((p) => p.endsWith("/confusion.png"));
  app.setView({content: "img", contentPath: results[path].data_uri, resultPath: path});
  waitForImage(path, 50);
}
function waitForImage(path, tries) {
  const img = [...document.querySelectorAll("#app img")].find((i) => i.src.startsWith("data:image/png"));
  if (img && img.complete && img.naturalWidth > 0) {
    document.body.dataset.probe = `${path} ${img.naturalWidth}x${img.naturalHeight}`;
  } else if (tries > 0) {
    setTimeout(() => waitForImage(path, tries - 1), 100);
  } else {
    document.body.dataset.probe = "no image";
  }
}
window.addEventListener("load", () => probeWhenReady(50));
</script>"""


def embedded_files(html: str) -> dict[str, bytes]:
    """File name -> bytes of every result the report embeds as a base64 data URI."""
    found = re.findall(r"data:[\w/+.-]+;charset=[\w-]+;filename=([^;]+);base64,([A-Za-z0-9+/=]+)", html)
    return {name: base64.b64decode(data) for name, data in found}


@pytest.fixture(scope="module")
def report(demo_run, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    snakemake(demo_run, TARGET, "--report", str(path))
    return path


def test_the_report_embeds_the_confusion_matrix_and_the_other_results(report, demo_run):
    html = report.read_text()
    files = embedded_files(html)
    assert files["confusion.png"] == (demo_run / CONFUSION).read_bytes()
    assert {"training_curves.png", "metrics.json", "refinement_report.md", "sheet.csv"} <= set(files)
    # Captions from workflow/report/ are rendered with the job's wildcards.
    assert "Confusion matrix of model <strong>star-dagger</strong>" in html
    assert "FineCLIPER / DFER-CLIP pipeline" in html


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (`make system-deps` installs it; CI does)")
def test_the_report_shows_the_confusion_matrix_in_headless_chromium(report, demo_run, tmp_path):
    driven = tmp_path / "driven.html"
    html = report.read_text()
    cut = html.rindex("</body>")
    driven.write_text(html[:cut] + PROBE + html[cut:])
    proc = subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
         "--dump-dom", driven.as_uri()],
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    probe = re.search(r'data-probe="([^"]*)"', proc.stdout)
    width, height = Image.open(demo_run / CONFUSION).size
    console = "\n".join(line for line in proc.stderr.splitlines() if "CONSOLE" in line)
    assert probe and probe.group(1) == f"{CONFUSION} {width}x{height}", (probe and probe.group(1), console[-3000:])
    # The app itself rendered: its navigation names the report's categories.
    assert "Captions" in re.sub(r"<script.*?</script>", "", proc.stdout, flags=re.S)
