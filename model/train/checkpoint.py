"""DeepSpeed checkpoints of a run: one tag folder per saved step, and a ``latest`` file written last.

Layout of ``checkpoint.dir``::

    step00000010/            DeepSpeed's engine state (module, optimizer) + our client state
    step00000010/metrics.parquet   the metrics rows up to that step
    latest                   the tag of the last complete checkpoint (written atomically after the tag folder)

Only the newest ``checkpoint.keep`` complete tags stay (:func:`prune`, after ``latest`` moved). A run killed while
saving leaves ``latest`` naming the previous complete tag; the half-written folder is rewritten
when that step is saved again. The client state holds the step, the tokens and samples seen, the loader state
(:meth:`model.train.data.PackedLoader.state_dict`) and a digest of the spec fields that must not change on resume.
"""

from __future__ import annotations

import os
from typing import Any

from data_pipes.io.atomic import atomic_write_text

LATEST = "latest"
METRICS = "metrics.parquet"


def tag_of(step: int) -> str:
    return f"step{step:08d}"


def latest_tag(ckpt_dir: str) -> str | None:
    """The last complete checkpoint's tag, or None."""
    path = os.path.join(ckpt_dir, LATEST)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        tag = fh.read().strip()
    return tag if tag and os.path.isdir(os.path.join(ckpt_dir, tag)) else None


def mark_latest(ckpt_dir: str, tag: str) -> None:
    atomic_write_text(os.path.join(ckpt_dir, LATEST), tag)


def save(engine: Any, ckpt_dir: str, step: int, client_state: dict[str, Any]) -> str:
    """Save the engine at ``step`` (every rank calls this); returns the tag. ``latest`` is not moved here: the
    caller marks it once the tag folder is complete (metrics included)."""
    tag = tag_of(step)
    engine.save_checkpoint(ckpt_dir, tag=tag, client_state=client_state, save_latest=False)
    return tag


def load(engine: Any, ckpt_dir: str) -> tuple[str, dict[str, Any]] | None:
    """Load the latest checkpoint into ``engine``; returns (tag, client state) or None when there is none."""
    tag = latest_tag(ckpt_dir)
    if tag is None:
        return None
    path, client = engine.load_checkpoint(ckpt_dir, tag=tag, load_optimizer_states=True)
    if path is None:
        raise RuntimeError(
            f"{ckpt_dir}/{tag}: DeepSpeed could not load this checkpoint; remove it to restart"
        )
    return tag, client


def prune(ckpt_dir: str, keep: int) -> list[str]:
    """Remove all but the newest ``keep`` complete checkpoints (never the one ``latest`` names); returns the
    removed tags. Call after every rank has finished writing."""
    import shutil

    current = latest_tag(ckpt_dir)
    tags = sorted(
        t for t in os.listdir(ckpt_dir) if t.startswith("step") and os.path.isdir(os.path.join(ckpt_dir, t))
    )
    done = [t for t in tags if current is not None and t <= current]
    old = [t for t in done[: max(0, len(done) - keep)] if t != current]
    for t in old:
        shutil.rmtree(os.path.join(ckpt_dir, t), ignore_errors=True)
    return old
