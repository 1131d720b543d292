"""The GRPO plot: reward and pass rate, temperature, the share of filtered groups, response length, KL to the
starting policy and the policy loss against the step, one panel each, as a figure for PNG bytes."""

from __future__ import annotations

from typing import Any

from data_pipes.plots import new_figure

PANELS = (
    ("reward", "reward (mean of samples)"),
    ("pass_rate", "pass rate (samples)"),
    ("temperature", "temperature"),
    ("filtered_share", "share of filtered groups"),
    ("response_len", "response length (tokens)"),
    ("kl_to_start", "KL to start (k3)"),
)


def rl_figure(rows: list[dict[str, Any]], title: str) -> Any:
    """A figure of the metrics ``rows`` (``step`` and the columns of :data:`PANELS`); validation pass rates, where
    measured, are drawn on the pass-rate panel."""
    fig = new_figure(11.0, 5.5)
    fig.suptitle(title)
    axes = fig.subplots(2, 3)
    for ax, (key, label) in zip(axes.flat, PANELS, strict=True):
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax.plot(
                [s for s, _ in pts], [v for _, v in pts], marker="." if len(pts) < 40 else None, label="train"
            )
        if key == "pass_rate":
            val = [(r["step"], r["val_pass_rate"]) for r in rows if r.get("val_pass_rate") is not None]
            if val:
                ax.plot([s for s, _ in val], [v for _, v in val], marker="o", label="validation")
                ax.legend(fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    return fig
