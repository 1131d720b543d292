"""The PNG reports fit their canvas: measured in matplotlib, and on a headless Chromium screenshot.

Every plot a kind draws for a report (histograms with labelled bounds, the SemDedup eps sweep, the dedup overlap
chart) is built here on data shaped like the default pipeline's, long method names included. Two measurements:

* matplotlib: after drawing, every drawn text and the figure's tight bounding box lie inside the canvas
  (``data_pipes.plots.clipped_texts``);
* Chromium (Debian's ``chromium``; skipped where it is absent): the PNGs laid out at their natural size on a
  magenta page and screenshotted; each image's screenshot region must equal the decoded PNG (so the browser showed
  all of it), and a band along each image's edges must be plain background (a clipped title or label leaves
  glyph pixels on the edge). A deliberately clipped chart (the old overlap chart's layout) must fail that check.

``ARCFLOW_PNG_STORE=<store>`` adds every ``reports/*.png`` under a store's outputs (e.g. a default-pipeline run)
to the page; ``ARCFLOW_PNG_SHOT=<file>`` keeps the screenshot.
"""

from __future__ import annotations

import glob
import io
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from PIL import Image

from data_pipes.dedup.overlap_plot import overlap_figure
from data_pipes.dedup.semdedup_sweep import sweep_figure, sweep_table
from data_pipes.plots import clipped_texts, png_bytes
from data_pipes.web.quality_plots import histogram, histogram_figure
from tasks.dedup_report import combinations

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
COVERED = {"histogram_png", "sweep_png", "overlap_png"}  # the PNG builders the figures below exercise
EDGE_PX = 3  # the band along each image's edges that must be background
GAP_PX = 12  # magenta between images on the page
MAGENTA = (255, 0, 255)


def report_figures() -> dict[str, Any]:
    """One figure per report plot, on data like the default pipeline's (and longer labels than it has)."""
    rng = np.random.default_rng(7)
    counts, edges = histogram(rng.beta(5, 2, 400))
    methods = ["web_exact", "web_minhash", "web_semdedup"]
    removed = pl.DataFrame(
        {
            "id": ["a", "b", "b", "c", "d", "d", "d"],
            "method": ["web_minhash", "web_exact", "web_semdedup", "web_semdedup", *methods],
            "reason": ["r"] * 7,
        }
    )
    long_methods = ["web_exact_dedup_of_the_whole_crawl", "web_minhash_5grams_14x8", "web_semdedup_eps_0_03"]
    long_removed = removed.with_columns(
        pl.col("method").replace(dict(zip(methods, long_methods, strict=True)))
    )
    return {
        "score_histogram": histogram_figure(counts, edges, title="web_scored: quality_score", xlabel="quality_score"),
        "bucket_histogram": histogram_figure(
            counts, edges, title="web_buckets: quality_score and bucket bounds", xlabel="quality_score",
            lines=[(0.42, "mid"), (0.61, "high"), (0.97, "top")],
        ),
        "teacher_histogram": histogram_figure(
            counts, edges, title="math_labels: teacher math_density", xlabel="teacher_score",
            lines=[(0.02, "lq"), (0.96, "hq")],
        ),
        "long_title_histogram": histogram_figure(
            counts, edges, title="a_node_with_a_very_long_name_for_its_histogram: quality_score_of_the_documents "
            "and bucket bounds", xlabel="quality_score",
        ),
        "eps_sweep": sweep_figure(sweep_table(rng.uniform(0.9, 1.0, 300), [0.01, 0.02, 0.03, 0.05, 0.07]), 0.03),
        "overlap": overlap_figure(combinations(removed, methods)),
        "overlap_long_names": overlap_figure(combinations(long_removed, long_methods)),
    }  # fmt: skip


def clipped_chart() -> bytes:
    """The old overlap chart's layout: a centred axes title over a narrow axes, cut off at the right edge."""
    from data_pipes.plots import new_figure

    fig = new_figure(7.0, 4.0)
    fig.set_layout_engine("tight")
    ax = fig.add_subplot()
    ax.barh(["web_exact and web_minhash and web_semdedup", "only web_exact"], [0, 1])
    ax.set_title("documents removed, by combination of methods")
    assert clipped_texts(fig), "the control figure should be clipped"
    return png_bytes(fig)


def test_every_png_report_builder_is_covered() -> None:
    used = set()
    for path in sorted((ROOT / "tasks").glob("*.py")):
        used |= set(re.findall(r"\b(\w+_png)\(", path.read_text()))
    assert used == COVERED, (
        f"PNG builders used by kinds: {sorted(used)}; checked here: {sorted(COVERED)}. Add a figure for each new "
        "one to report_figures() (and its name to COVERED), so its plot is checked for clipping too"
    )


def test_report_figures_fit_their_canvas() -> None:
    for name, fig in report_figures().items():
        assert clipped_texts(fig) == [], name


def test_the_clip_check_sees_a_cut_title() -> None:
    from data_pipes.plots import new_figure

    fig = new_figure(3.0, 2.0)
    fig.add_subplot().set_title("a title far wider than this small canvas can ever hold")
    (title, whole) = clipped_texts(fig)
    assert title.startswith("'a title far wider") and whole.startswith("'figure content'")


def _screenshot(
    pngs: dict[str, bytes], folder: Path
) -> tuple[np.ndarray, dict[str, tuple[int, int, int, int]]]:
    """Lay the PNGs out in one column on a magenta page, screenshot it in headless Chromium; returns the
    screenshot (RGB array) and each image's box (x, y, width, height)."""
    boxes: dict[str, tuple[int, int, int, int]] = {}
    tags = []
    y, width = GAP_PX, 0
    for i, (name, data) in enumerate(pngs.items()):
        w, h = Image.open(io.BytesIO(data)).size
        (folder / f"{i:02d}.png").write_bytes(data)
        boxes[name] = (GAP_PX, y, w, h)
        tags.append(
            f'<img src="{i:02d}.png" style="position:absolute; left:{GAP_PX}px; top:{y}px; '
            f'width:{w}px; height:{h}px">'
        )
        y += h + GAP_PX
        width = max(width, w + 2 * GAP_PX)
    page = folder / "page.html"
    page.write_text(
        "<!doctype html><html><head><style>html,body{margin:0;background:#ff00ff;overflow:hidden}"
        "img{image-rendering:pixelated}</style></head><body>" + "".join(tags) + "</body></html>"
    )
    shot = folder / "shot.png"
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={folder / 'profile'}",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--force-color-profile=srgb",
            f"--window-size={width},{y}",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return np.asarray(Image.open(shot).convert("RGB")).astype(int), boxes


def _problems(shot: np.ndarray, box: tuple[int, int, int, int], png: bytes) -> list[str]:
    x, y, w, h = box
    region = shot[y : y + h, x : x + w]
    want = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    out = []
    if region.shape != want.shape:
        return [f"shown at {region.shape[1]}x{region.shape[0]}, drawn at {want.shape[1]}x{want.shape[0]}"]
    if np.abs(region - want).max() > 3:
        out.append(f"the screenshot differs from the PNG by up to {np.abs(region - want).max()} levels")
    around = np.concatenate(
        [
            shot[y - GAP_PX // 2, x : x + w],
            shot[y + h + GAP_PX // 2 - 1, x : x + w],
            shot[y : y + h, x - GAP_PX // 2],
        ]
    )
    if not (around == MAGENTA).all():
        out.append("the page around the image is not the page's background (the image spills over)")
    edges = {
        "top": region[:EDGE_PX],
        "bottom": region[-EDGE_PX:],
        "left": region[:, :EDGE_PX],
        "right": region[:, -EDGE_PX:],
    }
    for side, band in edges.items():
        drawn = int((band.min(axis=-1) < 250).sum())
        if drawn:
            out.append(f"{drawn} drawn pixels on the {side} edge (something is cut off there)")
    return out


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_pngs_render_unclipped_in_chromium(tmp_path: Path) -> None:
    pngs = {name: png_bytes(fig) for name, fig in report_figures().items()}
    store = os.environ.get("ARCFLOW_PNG_STORE")
    if store:
        for path in sorted(glob.glob(os.path.join(store, "outputs", "*", "reports", "*.png"))):
            pngs[f"store:{Path(path).parent.parent.name[:10]}/{Path(path).name}"] = Path(path).read_bytes()
    pngs["control: clipped chart"] = clipped_chart()

    shot, boxes = _screenshot(pngs, tmp_path)
    if os.environ.get("ARCFLOW_PNG_SHOT"):
        shutil.copy(tmp_path / "shot.png", os.environ["ARCFLOW_PNG_SHOT"])

    found = {name: _problems(shot, boxes[name], data) for name, data in pngs.items()}
    control = found.pop("control: clipped chart")
    # the control: exactly one problem, glyphs of the cut title on the right edge
    assert len(control) == 1 and control[0].endswith(
        "drawn pixels on the right edge (something is cut off there)"
    )
    assert found == {name: [] for name in found}
