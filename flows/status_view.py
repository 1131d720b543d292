"""How `arcflow status` and `arcflow plan` show the nodes whose last run failed (:mod:`flows.last_run`): the
failed node as failed, with its run and error, the nodes downstream as blocked by it (the words used for a stored
output that quarantined every row), and a node changed since its failed run (at another fingerprint now) as one a
run computes again; `arcflow show` gives the failed run's time and error (:func:`show_lines`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flows import last_run as lr
from flows.outcome import unless_fails_again


@dataclass
class Mark:
    """What `status` or `plan` shows for a node instead of its plain state: ``label`` (None: keep the plain one),
    the reasons said first, the style key (``STATUS_STYLE``; None: keep), extra fields for `plan --json`, and
    whether the plain reasons' ``never run`` stays (a blocked node never ran; a failed one did)."""

    label: str | None
    reasons: list[str]
    style: str | None
    extra: dict[str, Any] = field(default_factory=dict)
    never_run: bool = False

    def compose(self, plain: list[str]) -> list[str]:
        """These reasons, then the plain ones (without ``never run`` for a node that ran)."""
        return [*self.reasons, *(r for r in plain if self.never_run or r != "never run")]


def _outcome(
    engine: Any, plans: list[Any], stops: Mapping[str, str], selected: Iterable[str] | None
) -> lr.LastRunOutcome:
    p = engine.pipeline
    return lr.last_run_outcome(
        plans,
        p.deps,
        engine.resolved_config(),
        engine.store.root,
        stops=stops,
        node_lines=lr.node_lines(p.file),
        selected=selected,
        path_params={n: tuple(node.kind.path_params) for n, node in p.nodes.items()},
        pipeline_file=p.file,
    )


def status_marks(engine: Any, plans: list[Any], quarantined: Mapping[str, Any]) -> dict[str, Mark]:
    """`arcflow status`: a mark for each node failed in its last run (``failed (last run)``), blocked by one
    (``blocked``), or changed since its failed run; ``quarantined`` are the nodes whose stored output quarantined
    every row (``flows.outcome.run_outcome``), which keep their own words."""
    stops = {n: lr.EVERY_ROW for n in quarantined}
    o = _outcome(engine, plans, stops, None)
    file = engine.pipeline.file
    marks: dict[str, Mark] = {}
    for x in plans:
        if x.node in o.blocked and not set(o.blocked[x.node]) <= set(quarantined):
            ups = o.blocked[x.node]
            marks[x.node] = Mark("blocked", [lr.blocked_by_reason(ups, stops)], "blocked", never_run=True)
        elif x.node in o.failed:
            f = o.failed[x.node]
            marks[x.node] = Mark(lr.failed_label(f), lr.failed_reasons(f, file), "failed")
        elif x.node in o.again:
            why = lr.again_reason(o.again[x.node], o.recomputed[x.node], file)
            marks[x.node] = Mark(None, [why], None)
        elif x.node in o.cleared:
            marks[x.node] = Mark(None, [o.cleared[x.node]], None)
    return marks


def plan_marks(
    engine: Any,
    plans: list[Any],
    selected: list[str],
    stops: Mapping[str, str],
    decided: Iterable[str],
    actions: Mapping[str, str],
) -> dict[str, Mark]:
    """`arcflow plan`: a mark for each selected node that a run computes and that failed in its last run
    (``compute; else fails again``), that such a node blocks (``skip (blocked)``), that fails again if its
    recomputed input comes out unchanged (and the nodes after it: ``compute (unless 'bad' fails again)``), or that
    changed since its failed run. ``stops``: the nodes already known to fail the run (node -> why); ``decided``: the
    nodes `plan` already says something of its own about (failing, fails again, ...), left as they are, as is a
    node blocked by ``stops`` alone; ``actions``: each node's plain action."""
    o = _outcome(engine, plans, stops, selected)
    file = engine.pipeline.file
    done = set(decided)
    marks: dict[str, Mark] = {}
    for x in plans:
        if x.node in done:
            continue
        if x.node in o.blocked:
            ups = o.blocked[x.node]
            if set(ups) <= set(stops):  # `plan` says it in its own words
                continue
            why = lr.blocked_by_reason(ups, stops)
            marks[x.node] = Mark("skip (blocked)", [why], "blocked", {"blocked_by": ups}, never_run=True)
        elif x.node in o.failed:
            f = o.failed[x.node]
            extra = {"failed_last_run": {"run": f.run_id, "state": f.state, "error": f.error}}
            marks[x.node] = Mark(lr.plan_failed_action(f), lr.failed_reasons(f, file), "failed", extra)
        elif x.node in o.again:
            f, inputs = o.again[x.node], o.recomputed[x.node]
            extra = {"failed_last_run": {"run": f.run_id, "state": f.state, "error": f.error}}
            why = lr.again_reason(f, inputs, file)
            marks[x.node] = Mark(None, [why], None, extra)
        elif x.node in o.unless:
            action = unless_fails_again(actions[x.node], o.unless[x.node])
            marks[x.node] = Mark(action, [], None, {"unless_fails_again": o.unless[x.node]}, never_run=True)
        elif x.node in o.cleared:
            marks[x.node] = Mark(None, [o.cleared[x.node]], None)
    return marks


def missing_input_notes(
    engine: Any, plans: list[Any], missing: Mapping[str, Mapping[str, Any]]
) -> dict[str, list[str]]:
    """`arcflow plan --node X` over an input that has no stored output because it (or a node upstream of it) failed
    in its last run: a reason for each such input of each node in ``missing`` (node -> its inputs without output),
    naming that failed run."""
    o = _outcome(engine, plans, {}, None)
    file = engine.pipeline.file
    notes: dict[str, list[str]] = {}
    for node_id, inputs in missing.items():
        for name in inputs:
            if name in o.failed:
                f = o.failed[name]
                note = f"input {name!r} {lr.failed_reasons(f, file)[0]}: fix it, then `arcflow run --to {node_id}`"
            elif name in o.blocked:
                note = f"input {name!r} is {lr.blocked_by_reason(o.blocked[name], {})}"
            else:
                continue
            notes.setdefault(node_id, []).append(note)
    return notes


def show_lines(engine: Any, plans: list[Any], node: str, quarantined: Mapping[str, Any]) -> list[str]:
    """`arcflow show NODE`: what its failed last run says (when it ended, its one-line error, whether a run fails
    there again or computes it again), or that a node upstream failed in its last run; empty otherwise.
    ``quarantined``: the nodes whose stored output quarantined every row (`show` says those in its own words)."""
    if node in quarantined:
        return []
    stops = {n: lr.EVERY_ROW for n in quarantined}
    o = _outcome(engine, plans, stops, None)
    if node in o.blocked:  # `show` names the all-quarantined ones itself
        ups = o.blocked[node]
        return [] if set(ups) <= set(quarantined) else [lr.blocked_by_reason(ups, stops)]
    return lr.last_run_lines(o, node, engine.pipeline.file)


# the work folders of the training kinds (tasks._train_run.WORK: pretrain, midtrain, sft; tasks._grpo_run.WORK:
# grpo), named here so that `status` imports no training code; tests/flows/test_status_training.py checks them
TRAIN_WORK = ("_train", "_grpo")


@dataclass
class TrainingProgress:
    """What a stopped run of a training stage left in its output folder: the step of its last complete DeepSpeed
    checkpoint (None: it stopped before its first one, so the next run starts over), the steps it runs and how
    often it saves (``checkpoint_every``; 0: only at the end)."""

    step: int | None
    total: int | None
    every: int | None = None

    def label(self, plain: str) -> str:
        """``partial (step 4/40)``; a run that stopped before its first checkpoint keeps the plain label (nothing
        of it is resumed)."""
        if self.step is None:
            return plain
        return f"partial (step {self.step}/{self.total})" if self.total else f"partial (step {self.step})"

    def reason(self, running: str | None) -> str:
        of = f" of {self.total}" if self.total else ""
        if self.step is None:
            when = " (checkpoint_every is 0: it saves only at the end)" if self.every == 0 else ""
            then = f"a run is training it now ({running})" if running else "the next run starts it over"
            return f"a run started it and stopped before its first checkpoint{when}; {then}"
        then = f"a run is computing the rest now ({running})" if running else "the next run resumes there"
        return f"checkpoint at step {self.step}{of}; {then}"


def training_progress(out_dir: str, params: Any = None) -> TrainingProgress | None:
    """The checkpoint a stopped training stage left under ``out_dir`` (``_train/ckpt/`` or ``_grpo/ckpt/``, whose
    ``latest`` names the last complete ``stepNNNNNNNN``: what the next run resumes from), with the total steps
    from the spec the launcher ran (``spec.json`` beside it) or else the node's ``params.steps``; None when no
    training run left anything there."""
    from model.train.checkpoint import latest_tag

    for work in TRAIN_WORK:
        folder = os.path.join(out_dir, work)
        ckpt = os.path.join(folder, "ckpt")
        if not os.path.isdir(ckpt) and not os.path.isfile(os.path.join(folder, "spec.json")):
            continue
        try:
            with open(os.path.join(folder, "spec.json"), "rb") as fh:
                spec = json.loads(fh.read())
        except (OSError, ValueError):
            spec = {}
        steps = spec.get("steps") if isinstance(spec, dict) else None
        if not isinstance(steps, int):
            steps = getattr(params, "steps", None)
        every = (spec.get("checkpoint") or {}).get("every") if isinstance(spec, dict) else None
        if not isinstance(every, int):
            every = getattr(params, "checkpoint_every", None)
        try:
            tag = latest_tag(ckpt)
        except OSError:
            tag = None
        step = int(tag[4:]) if tag and tag.startswith("step") and tag[4:].isdigit() else None
        return TrainingProgress(
            step, steps if isinstance(steps, int) else None, every if isinstance(every, int) else None
        )
    return None
