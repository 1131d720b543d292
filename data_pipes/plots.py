"""Report figures as PNG bytes, and a check that nothing in a figure is cut off by its canvas.

Every report plot is built on a bare ``matplotlib.figure.Figure`` (Agg canvas, no pyplot state, so kinds may plot
from several threads) with constrained layout, which makes room for titles, labels and tick labels. Constrained
layout cannot make a canvas wider, so a plot whose text may be long sizes its figure from that text, and
``clipped_texts`` measures, after drawing, every visible text's extent against the canvas (the tests use it on
every report figure). ``png_bytes`` saves the figure as it is, so the same inputs give the same bytes.
"""

from __future__ import annotations

import io
from typing import Any

BACKGROUND = "white"
TOLERANCE_PX = 0.5  # rounding of glyph extents
PAD_IN = 0.1  # constrained layout's margin around the axes' decorations (inches)


def new_figure(width_in: float, height_in: float, dpi: int = 100) -> Any:
    """A bare figure with constrained layout on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained", facecolor=BACKGROUND)
    fig.get_layout_engine().set(w_pad=PAD_IN, h_pad=PAD_IN)  # a margin, so no text touches the canvas edge
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Any) -> bytes:
    """The figure as PNG bytes, at its own size (no tight-bbox cropping: the layout already fits)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor=BACKGROUND, metadata={"Software": None})
    return buf.getvalue()


def clipped_texts(fig: Any) -> list[str]:
    """What of ``fig`` is cut off by its canvas, measured after drawing: every drawn text (titles, axis labels,
    tick labels inside the view, annotations, legend entries) whose extent leaves the canvas, and the figure's
    tight bounding box (all drawn artists) when it does, each as ``'what' [x0, y0, x1, y1] outside [0, 0, w, h]``
    in pixels. Empty when everything is inside."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.canvas.get_width_height()
    out = []
    for text in _drawn_texts(fig):
        box = text.get_window_extent(renderer)
        if not _inside(box, width, height):
            out.append(f"{text.get_text()!r} {_fmt(box)} outside [0, 0, {width}, {height}]")
    tight = fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans)
    if not _inside(tight, width, height):
        out.append(f"'figure content' {_fmt(tight)} outside [0, 0, {width}, {height}]")
    return out


def _drawn_texts(fig: Any) -> list[Any]:
    texts = list(fig.texts)
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        legend = ax.get_legend()
        if legend is not None:
            texts += list(legend.get_texts())
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks():
                if lo - 1e-9 * (hi - lo) <= tick.get_loc() <= hi + 1e-9 * (hi - lo):
                    texts += [t for t in (tick.label1, tick.label2) if t.get_visible()]
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def _inside(box: Any, width: float, height: float) -> bool:
    return (
        box.x0 >= -TOLERANCE_PX
        and box.y0 >= -TOLERANCE_PX
        and box.x1 <= width + TOLERANCE_PX
        and box.y1 <= height + TOLERANCE_PX
    )


def _fmt(box: Any) -> str:
    return f"[{box.x0:.0f}, {box.y0:.0f}, {box.x1:.0f}, {box.y1:.0f}]"


def text_width_in(texts: list[str], fontsize: float = 10.0) -> float:
    """A generous estimate of the widest of ``texts`` in inches (0.6 em per character), for sizing figures."""
    longest = max((len(t) for t in texts), default=0)
    return longest * fontsize * 0.6 / 72.0
