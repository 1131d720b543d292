"""The training plot of a stage: loss (and MTP loss), learning rate, raw gradient norm, tokens/s and expert load
(MaxVio, the largest over the MoE layers) against the step, one panel each, as PNG bytes."""

from __future__ import annotations

from typing import Any

from data_pipes.plots import new_figure

PANELS = (
    ("loss", "loss"),
    ("lr", "learning rate"),
    ("grad_norm", "grad norm (raw)"),
    ("tok_s", "tokens/s"),
    ("max_vio", "expert load MaxVio"),
)


def metrics_figure(rows: list[dict[str, Any]], title: str) -> Any:
    """A figure of the metrics ``rows`` (``step`` and the columns of :data:`PANELS`)."""
    fig = new_figure(11.0, 5.5)
    fig.suptitle(title)
    axes = fig.subplots(2, 3)
    steps = [r["step"] for r in rows]
    for ax, (key, label) in zip(axes.flat, PANELS, strict=False):
        values = [r.get(key) for r in rows]
        pts = [(s, v) for s, v in zip(steps, values, strict=True) if v is not None]
        if pts:
            ax.plot([s for s, _ in pts], [v for _, v in pts], marker="." if len(pts) < 40 else None)
        if key == "loss" and any(r.get("mtp_loss") for r in rows):
            ax.plot(steps, [r.get("mtp_loss") or 0.0 for r in rows], label="MTP", alpha=0.7)
            ax.plot([], [], label="LM", color="C0")
            ax.legend(fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    axes.flat[-1].set_visible(False)
    return fig
