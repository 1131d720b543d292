"""The engine: decide what is up to date, run nodes' shards, write manifests. No Prefect here.

``plan`` walks the DAG in order and resolves each node's fingerprint from its inputs' content hashes; a node whose
input will be recomputed has no fingerprint yet (its fate depends on whether the input's bytes change: early
cut-off). ``run_node`` computes one node: it skips shards whose markers exist (resume after a crash), runs the rest
on Dask, checks the accounting, writes the manifest last and records the node in the pipeline's refs. A forced rerun
of a stored output computes beside it (``<fingerprint>.new``) and replaces it only once complete.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from data_pipes.io.atomic import atomic_write_text
from data_pipes.io.shards import MARKERS, ShardResult, clean_partial_files, read_marker
from flows.dag import ancestors, descendants
from flows.errors import MissingInputError, SelectionError
from flows.executor import DaskExecutor
from flows.fingerprint import code_hashes, node_fingerprint, portable_params, sha, versions_for
from flows.outcome import all_quarantined, all_quarantined_error, blocked_input_advice, run_outcome
from flows.param_diff import param_changes
from flows.signature_diff import signature_changes
from flows.store import Store
from flows.validate import Pipeline, ResolvedNode
from tasks.base import InputRef, ProgressEvent, ProgressFn, RunContext, ShardTask
from tasks.loaded_code import CodeGuard
from tasks.param_error import ParamError
from tasks.shard_worker import execute_shard

Progress = ProgressFn  # called with a ProgressEvent: node, phase, done, total
PROGRESS_HOOKS: list[Progress] = []  # extra listeners (the CLI's progress bars)
BATCHES_PER_SLOT = 8
MAX_BATCH = 64


@dataclass
class NodePlan:
    node: str
    status: str  # up_to_date | stale | missing | pending
    fingerprint: str | None
    reasons: list[str] = field(default_factory=list)
    content_hash: str | None = None


@dataclass
class Selection:
    nodes: list[str]  # in topological order
    forced: set[str]


def select(
    pipeline: Pipeline,
    node: str | None = None,
    from_node: str | None = None,
    to_node: str | None = None,
    force: bool = False,
) -> Selection:
    """The nodes a run of ``--node`` / ``--from`` / ``--to`` covers, in order, and the ones it forces. Raises
    ``SelectionError`` for an unknown node (suggesting a close name) and for flags that conflict: ``--node``
    is one node by itself, so it takes neither ``--from`` nor ``--to``, and ``--from A --to B`` must have B
    downstream of A."""
    targets = [t.strip() for t in to_node.split(",") if t.strip()] if to_node else []
    for flag, name in (("--node", node), ("--from", from_node), *(("--to", t) for t in targets)):
        if name is not None and name not in pipeline.nodes:
            raise SelectionError(unknown_node_message(flag, name, pipeline.order))
    if node is not None and (from_node is not None or targets):
        other = " and ".join(f for f, v in (("--from", from_node), ("--to", to_node)) if v)
        raise SelectionError(
            f"--node {node} cannot be combined with {other}: --node reruns just that node; use --from/--to "
            f"for a range (--from {from_node or node} --to {to_node or node})"
        )
    chosen = set(pipeline.order)
    forced: set[str] = set()
    if node is not None:
        chosen, forced = {node}, {node}
    if from_node is not None:
        chosen &= {from_node} | descendants(pipeline.deps, from_node)
        forced |= {from_node}
    if targets:  # `--to a,b`: what any of them needs
        chosen &= set().union(*({t} | ancestors(pipeline.deps, t) for t in targets))
    if from_node is not None and targets and not chosen:
        raise SelectionError(
            f"--from {from_node} --to {to_node} selects nothing: {to_node} is not downstream of {from_node}"
        )
    if force:
        forced = set(chosen)
    return Selection([n for n in pipeline.order if n in chosen], forced)


def unknown_node_message(flag: str, name: str, nodes: Sequence[str]) -> str:
    """``--node 'x': no such node; did you mean 'y'?`` (difflib), or how to list the nodes."""
    import difflib

    close = difflib.get_close_matches(name, list(nodes), n=3, cutoff=0.6)
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    elif len(nodes) <= 12:
        hint = f"nodes are {', '.join(nodes)}"
    else:
        hint = f"`arcflow status` lists the {len(nodes)} nodes"
    return f"{flag} {name!r}: no such node; {hint}"


SHARD_TOTAL = "total.json"  # in _markers/: how many shards the node's last planned run has


def note_shard_total(out_dir: str, total: int) -> None:
    """Record how many shards a run of this output has, for ``shard_progress`` (written once per plan)."""
    path = os.path.join(out_dir, MARKERS, SHARD_TOTAL)
    try:
        with open(path, "rb") as fh:
            if json.loads(fh.read()).get("total") == total:
                return
    except (OSError, ValueError):
        pass
    atomic_write_text(path, json.dumps({"total": total}))


def shard_progress(out_dir: str) -> tuple[int, int | None]:
    """(finished shards, planned shards or None) of an output that has no manifest yet: a run that stopped."""
    folder = os.path.join(out_dir, MARKERS)
    try:
        names = os.listdir(folder)
    except OSError:
        return 0, None
    done = sum(1 for n in names if n.startswith("part-") and n.endswith(".json"))
    try:
        with open(os.path.join(folder, SHARD_TOTAL), "rb") as fh:
            total = int(json.loads(fh.read())["total"])
    except (OSError, ValueError, KeyError, TypeError):
        total = None
    return done, total


def node_seed(global_seed: int, node_id: str) -> int:
    return int(sha(str(global_seed), node_id)[:8], 16)


class Engine:
    def __init__(
        self, pipeline: Pipeline, store: Store | None = None, executor: DaskExecutor | None = None
    ) -> None:
        self.pipeline = pipeline
        self.store = store or Store(pipeline.workdir)
        self.executor = executor or DaskExecutor(pipeline.spec.executor)
        self._results: dict[str, tuple[str, str]] = {}  # node -> (fingerprint, content hash) decided this run
        # node -> the fingerprint it was computed at this run (kept in run.json when it failed)
        self._attempts: dict[str, str] = {}
        self._lock = threading.Lock()
        self._refs = self.store.read_refs(pipeline.spec.name)
        self.run_info: dict[str, Any] = {}  # who runs this (e.g. the Prefect flow run), kept in manifests

    # ---- fingerprints --------------------------------------------------------------------------------------
    def parts(self, node: ResolvedNode, inputs: list[tuple[str, str]]) -> dict[str, Any]:
        kind = node.kind
        return {
            "kind": kind.name,
            "code": code_hashes(type(kind).__module__),
            "params": portable_params(
                node.params.model_dump(mode="json"), kind.path_params, self.pipeline.file
            ),
            "versions": versions_for(kind.packages),
            "signature": kind.signature(node.params),
            "inputs": inputs,
            "seed": node_seed(self.pipeline.spec.seed, node.id),
        }

    @staticmethod
    def fingerprint_of(parts: dict[str, Any]) -> str:
        return node_fingerprint(
            parts["kind"],
            parts["code"],
            parts["params"],
            parts["versions"],
            parts["signature"],
            parts["inputs"],
            parts["seed"],
        )

    def _why(self, node_id: str, parts: dict[str, Any]) -> list[str]:
        old = self._refs.get(node_id)
        if old is None:
            return ["never run"]
        reasons = []
        if old.get("kind") != parts["kind"]:
            reasons.append(f"kind changed: {old.get('kind')} -> {parts['kind']}")
        reasons += [f"param {c}" for c in param_changes(old.get("params", {}), parts["params"])]
        oldc, newc = old.get("code", {}), parts["code"]
        changed = sorted(m for m in set(oldc) | set(newc) if oldc.get(m) != newc.get(m))
        if changed:
            reasons.append(f"code changed: {', '.join(changed)}")
        oldv, newv = old.get("versions", {}), parts["versions"]
        for key in sorted(set(oldv) | set(newv)):
            if oldv.get(key) != newv.get(key):
                reasons.append(f"version {key}: {oldv.get(key)} -> {newv.get(key)}")
        # a step's own code, a local model, the files a source reads ...: said by what changed
        changes = signature_changes(old.get("signature"), parts["signature"])
        reasons += [r for r in changes if r not in reasons]
        old_in = {n: h for n, h in old.get("inputs", [])}
        for name, h in parts["inputs"]:
            if old_in.get(name) != h:
                reasons.append(f"input {name!r} changed")
        if old.get("seed") != parts["seed"]:
            reasons.append("seed changed")
        if not reasons:
            reasons.append("stored output missing (removed by gc or never finished)")
        return reasons

    def plan(self, selection: Selection | None = None) -> list[NodePlan]:
        """What a run of ``selection`` would do, without running anything."""
        selection = selection or select(self.pipeline)
        known: dict[str, str] = {}  # node -> content hash, where decided without running
        plans: dict[str, NodePlan] = {}
        for node_id in self.pipeline.order:
            node = self.pipeline.nodes[node_id]
            pending = [i for i in node.inputs if i not in known]
            if pending:
                if node_id not in self._refs:
                    plans[node_id] = NodePlan(node_id, "missing", None, ["never run"])
                else:
                    plans[node_id] = NodePlan(
                        node_id, "pending", None, [f"input {i!r} will be recomputed" for i in pending]
                    )
                continue
            parts = self.parts(node, [(i, known[i]) for i in node.inputs])
            fp = self.fingerprint_of(parts)
            manifest = self.store.manifest(fp)
            forced = node_id in selection.forced
            if manifest is not None and not forced:
                known[node_id] = manifest["content_hash"]
                plans[node_id] = NodePlan(node_id, "up_to_date", fp, [], manifest["content_hash"])
            else:
                status = "missing" if node_id not in self._refs else "stale"
                reasons = ["forced"] if forced and manifest is not None else self._why(node_id, parts)
                if manifest is not None and forced:
                    status = "stale"
                plans[node_id] = NodePlan(node_id, status, fp, reasons)
        return [plans[n] for n in self.pipeline.order]

    # ---- running -------------------------------------------------------------------------------------------
    def _input_refs(self, node: ResolvedNode) -> list[InputRef]:
        refs = []
        for name in node.inputs:
            decided = self._results.get(name)
            if decided is None:
                decided = self._stored_input(name, node.id)
            fp, content = decided
            manifest = self.store.manifest(fp)
            assert manifest is not None, f"manifest of {name} vanished"
            if all_quarantined(manifest):  # e.g. `--node` over it: its run failed, so its rows are no input
                raise MissingInputError(
                    f"node {node.id!r} needs input {name!r}, whose stored output has no usable rows; fix "
                    f"{name!r} and run `arcflow run --to {node.id}`: "
                    f"{all_quarantined_error(name, manifest, self.store.location, self.pipeline.file)}"
                )
            out_dir = self.store.materialize(fp)  # an object store's input: read through the staging folder
            entries = self.store.shards(fp)
            shards = tuple(os.path.join(out_dir, s["file"]) for s in entries)
            rows = tuple(int(s.get("rows", s["kept"])) for s in entries)
            producer = self.pipeline.nodes[name].kind
            refs.append(InputRef(name, producer.output_type, out_dir, shards, rows, content))
        return refs

    def _check_input_shards(self, node_id: str, inputs: list[InputRef]) -> None:
        """Before a node computes: an input shard deleted by hand (a local file, or an object store's object) is
        one MissingInputError naming it and the fix, not a FileNotFoundError from a shard task. (A node that is
        reused reads no input, so it is not checked.)"""
        for ref in inputs:
            fp = os.path.basename(ref.path)
            gone = self.store.missing_files(fp, [os.path.relpath(s, ref.path) for s in ref.shards])
            if gone:
                more = f" and {len(gone) - 1} more" if len(gone) > 1 else ""
                file = "" if self.pipeline.file == "pipeline.yaml" else f" -f {self.pipeline.file}"
                raise MissingInputError(
                    f"node {node_id!r} needs input {ref.name!r}, whose stored output lost {len(gone)} of its "
                    f"{len(ref.shards)} shard(s): {gone[0]}{more} does not exist; recompute it with "
                    f"`arcflow run --from {ref.name}{file}`"
                )

    def _stored_input(self, name: str, consumer: str) -> tuple[str, str]:
        """An input outside this run's selection: its up-to-date output, else its last stored one."""
        for p in self.plan(Selection([], set())):
            if p.node == name and p.status == "up_to_date":
                return p.fingerprint, p.content_hash  # type: ignore[return-value]
        last = self.last_output(name)
        if last is not None:
            return last
        # never built: a node upstream of it that quarantined every row fails every run, which skips it; name that
        # node and its fix, not a `--to` that fails there again
        failed, blocked = run_outcome(
            self.plan(Selection([], set())), self.store.manifest, self.pipeline.deps
        )
        if blocked.get(name):
            advice = blocked_input_advice(
                consumer, name, {f: failed[f] for f in blocked[name]}, self.pipeline.file
            )
            raise MissingInputError(
                f"node {consumer!r} needs input {name!r}, which has no stored output: {advice}"
            )
        raise MissingInputError(
            f"node {consumer!r} needs input {name!r}, which has no stored output; "
            f"run `arcflow run --to {consumer}` to build its inputs first"
        )

    def last_output(self, name: str) -> tuple[str, str] | None:
        """(fingerprint, content hash) of the last output ``name`` stored (its ref), if that output is still there:
        what a run reads for an input outside its selection that is not up to date."""
        ref = self._refs.get(name)
        if ref and self.store.has_output(ref["fingerprint"]):
            return ref["fingerprint"], ref["content_hash"]
        return None

    def run_node(
        self, node_id: str, forced: bool = False, progress: Progress | None = None
    ) -> tuple[bool, dict]:
        """Compute ``node_id`` unless its output is stored. Returns (reused, manifest)."""
        node = self.pipeline.nodes[node_id]
        live_report = getattr(progress, "live_report", None)  # reports refreshed while the node runs
        progress = _fan_out(progress)
        inputs = self._input_refs(node)
        parts = self.parts(node, [(i.name, i.content_hash) for i in inputs])
        fp = self.fingerprint_of(parts)
        with self._lock:
            self._attempts[node_id] = fp
        # forcing recomputes. A finished output stays, whole and named by its ref, until the new one is complete:
        # the rerun computes into a folder beside it (``<fp>.new``) that replaces it only then, so a rerun that
        # fails leaves the store as it was. An unfinished output stays for a kind that resumes its own work
        # exactly (training: its last DeepSpeed state; the same computation, bit-identical on CPU), so `--node`
        # after a crash resumes instead of starting over; any other kind's starts over.
        resumes = bool(getattr(node.kind, "resume_when_forced", False))
        manifest = None if forced else self.store.manifest(fp)
        if manifest is None and self.store.finish_replacement(fp):  # a swap cut short: finished first
            manifest = None if forced else self.store.manifest(fp)
        replacing = forced and self.store.has_output(fp)
        key = self.store.replacement(fp) if replacing else fp  # the folder this run computes into
        if manifest is not None:
            self._finish(node_id, fp, manifest, parts)
            return True, manifest
        # the inputs are checked before anything stored is touched: a run that cannot compute (an input shard
        # deleted by hand) leaves the node's output and its ref as they were
        self._check_input_shards(node_id, inputs)
        if forced and not resumes:
            self.store.discard_output(key)
        try:
            manifest = self._compute(node, fp, key, parts, inputs, progress, live_report)
        except BaseException:
            # the old output stays; what the failed rerun wrote goes (the executor first waits for the shards
            # still running; one that outlasts its wait may yet write here: never complete without a manifest,
            # and gc or the next forced rerun removes it)
            if replacing and not resumes:
                self.store.discard_output(key)
            raise
        if replacing:  # complete: now it takes the old output's place (a swap cut short is finished by the
            self.store.replace_output(fp)  # next run or gc, when it takes the lock)
        self._finish(node_id, fp, manifest, parts)
        return False, manifest

    def _compute(
        self,
        node: ResolvedNode,
        fp: str,
        key: str,
        parts: dict[str, Any],
        inputs: list[InputRef],
        progress: Progress,
        live_report: Any,
    ) -> dict[str, Any]:
        """Compute ``node`` into the store's folder ``key`` (``fp``, or ``fp.new`` on a forced rerun of a stored
        output) and write its manifest there. Returns the manifest."""
        node_id = node.id
        out_dir = self.store.output_dir(key)
        self.store.stage_output(key)  # an object store: the shards a killed run finished, so they are skipped
        os.makedirs(os.path.join(out_dir, MARKERS), exist_ok=True)
        clean_partial_files(out_dir)
        started = time.time()
        seed = parts["seed"]
        reused_shards = 0

        kind_phases = node.kind.phases
        expected_code = {**parts["code"], **node.kind.code_sources(node.params)}

        def run_shards(tasks: Sequence[ShardTask], *, phase: str | None = None) -> list[ShardResult]:
            nonlocal reused_shards
            phase = phase or (kind_phases[-1] if kind_phases else "shards")
            results: list[ShardResult | None] = [read_marker(out_dir, t.index) for t in tasks]
            todo = [t for t, r in zip(tasks, results, strict=True) if r is None]
            note_shard_total(out_dir, len(tasks))  # so `status` can say "partial (6/16 shards)" after a crash
            reused_shards += len(tasks) - len(todo)
            done = len(tasks) - len(todo)
            ctx.progress(phase, done, len(tasks))
            position = {t.index: i for i, t in enumerate(tasks)}

            def on_done(_i: int, batch: list[ShardResult]) -> None:
                nonlocal done
                for res in batch:
                    done += 1
                    results[position[res.index]] = res
                ctx.progress(phase, done, len(tasks))

            fn = functools.partial(execute_shard, node.kind.name, node.params, out_dir=out_dir, seed=seed)
            fn = CodeGuard(fn, expected_code)  # a long-lived worker must hold the code fingerprinted here
            # an object store: the worker completes its host's copy of the inputs, then uploads, marker last
            fn = self.store.shard_runner(fn, out_dir, key, [os.path.basename(i.path) for i in inputs])
            cap = node.resources.get("max_parallel_shards")
            batches = [[t] for t in todo] if cap else self._batches(todo)
            self.executor.map(
                functools.partial(_run_batch, fn),
                batches,
                on_done=on_done,
                resources=self._resources(node),
                key_prefix=node_id,
                max_in_flight=node.resources.get("max_parallel_shards"),
            )
            self.store.pull_scratch(key)  # an object store: phase files the shards wrote on other machines
            return [r for r in results if r is not None]

        def ctx_map(
            fn: Callable[..., Any], items: Sequence[Any], *, phase: str | None = None, unit: str = "shards"
        ) -> list[Any]:
            name = phase or _phase_name(fn)
            total, done = len(items), 0
            ctx.progress(name, 0, total, unit)

            def on_done(_i: int, _result: Any) -> None:
                nonlocal done
                done += 1
                ctx.progress(name, done, total, unit)

            fn = CodeGuard(fn, expected_code)
            # an object store: each task first gets the phase files of earlier phases, then uploads its own
            fn = self.store.phase_runner(fn, out_dir, key, [os.path.basename(i.path) for i in inputs])
            out = self.executor.map(
                fn, items, on_done=on_done, resources=self._resources(node), key_prefix=node_id
            )
            self.store.pull_scratch(key)  # ... and the driver's side reads them here
            return out

        ctx = RunContext(
            node_id=node_id,
            params=node.params,
            inputs=inputs,
            out_dir=out_dir,
            seed=seed,
            map=ctx_map,
            run_shards=run_shards,
            phases=kind_phases,
            on_progress=progress,
            on_report=live_report,
            extra={"resources": dict(node.resources)},  # e.g. a training stage's gpus -> launcher ranks
        )
        try:
            results = sorted(node.kind.run(ctx), key=lambda r: r.index)
        except ParamError as exc:  # a param the input's data shows wrong: name its line in the pipeline file
            raise exc.locate(self.pipeline.file, node_id) from None
        manifest = self._manifest(node, fp, key, parts, inputs, results, started, reused_shards)
        manifest["reports"] = ctx.reports
        if ctx.timings:  # the kind's phase timings: here, never in its outputs or reports
            manifest["timings"]["phases"] = {k: round(v, 3) for k, v in ctx.timings.items()}
        self.store.write_manifest(key, manifest, self._shard_entries(key, results))
        return manifest

    def _batches(self, todo: list[ShardTask]) -> list[list[ShardTask]]:
        """Consecutive shards grouped into tasks when there are many more shards than worker slots: the
        scheduler's cost is per task. Guided sizes: each batch holds the shards still to group divided by
        ``BATCHES_PER_SLOT`` per slot (at most ``MAX_BATCH``), so batches shrink towards the end and the last
        ``BATCHES_PER_SLOT`` x slots tasks are single shards: the node's tail, when the workers run out of work
        one by one, is about one shard long instead of one batch (equal batches of 9 shards left the 16 workers
        of a 1,200-shard node idle 6 to 7% of its time). Each shard still has its own files and marker, so resume
        stays per shard."""
        per_round = max(1, self.executor.slots()) * BATCHES_PER_SLOT
        out: list[list[ShardTask]] = []
        i = 0
        while i < len(todo):
            size = max(1, min(MAX_BATCH, (len(todo) - i) // per_round))
            out.append(todo[i : i + size])
            i += size
        return out

    def _resources(self, node: ResolvedNode) -> dict[str, float] | None:
        res = node.resources
        out = {"CPU": min(float(res["cpus"]), float(self.pipeline.spec.executor.threads_per_worker))}
        if self.pipeline.spec.executor.address:
            out = {"CPU": float(res["cpus"])}
            if res["gpus"]:
                out["GPU"] = float(res["gpus"])
        if res.get("memory_gb"):  # a Dask resource: the workers offer their memory limit (flows/executor.py)
            out["MEMORY_GB"] = float(res["memory_gb"])
        return out

    def _manifest(
        self,
        node: ResolvedNode,
        fp: str,
        key: str,
        parts: dict,
        inputs: list[InputRef],
        results: list[ShardResult],
        started: float,
        reused: int,
    ) -> dict[str, Any]:
        counts = {"in": 0, "kept": 0, "dropped": 0, "quarantined": 0, "out": 0}
        reasons: dict[str, int] = {}
        errors: dict[str, int] = {}
        for r in results:
            r.check_balance()
            counts["in"] += r.rows_in
            counts["kept"] += r.kept
            counts["dropped"] += r.dropped
            counts["quarantined"] += r.quarantined
            counts["out"] += r.rows_out
            for k, v in r.drop_reasons.items():
                reasons[k] = reasons.get(k, 0) + v
            for k, v in r.errors.items():
                errors[k] = errors.get(k, 0) + v
        return {
            "node": node.id,
            "pipeline": self.pipeline.spec.name,
            "kind": node.kind.name,
            "output_type": node.kind.output_type.value,
            "fingerprint": fp,
            "content_hash": self.store.hash_output(key),  # every output file's bytes, not just the shards
            "inputs": [
                {"name": i.name, "fingerprint": os.path.basename(i.path), "content_hash": i.content_hash}
                for i in inputs
            ],
            "params": parts["params"],
            "code": parts["code"],
            "versions": parts["versions"],
            "seed": parts["seed"],
            "counts": counts,
            "drop_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
            "quarantine_errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])),
            "shards": len(results),
            "timings": {
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                "wall_s": round(time.time() - started, 3),
                "shard_s_total": round(sum(r.seconds for r in results), 3),
                "shards_reused_after_crash": reused,
            },
            "host": socket.gethostname(),
            **({"run": dict(self.run_info)} if self.run_info else {}),
        }

    def _shard_entries(self, key: str, results: list[ShardResult]) -> list[dict[str, Any]]:
        out_dir = self.store.output_dir(key)
        return [
            {
                "index": r.index,
                "file": os.path.relpath(r.path, out_dir),
                "in": r.rows_in,
                "kept": r.kept,
                "rows": r.rows_out,
                "dropped": r.dropped,
                "quarantined": r.quarantined,
                "content_hash": r.content_hash,
                "seconds": r.seconds,
                **({"extra": r.extra} if r.extra else {}),
            }
            for r in results
        ]

    def _finish(self, node_id: str, fp: str, manifest: dict, parts: dict) -> None:
        entry = {
            **parts,
            "fingerprint": fp,
            "content_hash": manifest["content_hash"],
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        with self._lock:
            self._results[node_id] = (fp, manifest["content_hash"])
            self.store.update_ref(self.pipeline.spec.name, node_id, entry)

    # ---- run records ---------------------------------------------------------------------------------------
    def resolved_config(self) -> dict[str, Any]:
        """The pipeline as it runs: defaults filled in, overrides applied, each node's params validated."""
        spec = self.pipeline.spec.model_dump(mode="json")
        spec["nodes"] = {}
        spec.pop("sources", None)
        for node_id in self.pipeline.order:
            n = self.pipeline.nodes[node_id]
            spec["nodes"][node_id] = {
                "uses": n.uses,
                "inputs": n.inputs,
                "params": n.params.model_dump(mode="json"),
                "resources": n.resources,
                "retries": n.retries,
                "retry_delay_s": n.retry_delay_s,
            }
        return spec

    def record_run_start(self, run_key: str, selection: Selection) -> str:
        """Write ``runs/<time>-<key>/pipeline.yaml``: the resolved config of this run, next to its outputs."""
        import yaml

        run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + run_key[:8]
        run_dir = self.store.run_dir(run_id)
        with open(os.path.join(run_dir, "pipeline.yaml"), "w", encoding="utf-8") as fh:
            fh.write(f"# resolved from {os.path.abspath(self.pipeline.file)}\n")
            yaml.safe_dump(self.resolved_config(), fh, sort_keys=False)
        with open(os.path.join(run_dir, "selection.json"), "w", encoding="utf-8") as fh:
            json.dump({"nodes": selection.nodes, "forced": sorted(selection.forced)}, fh, indent=1)
        self.store.publish_run(run_dir)
        return run_dir

    def record_run_end(
        self, run_dir: str, states: dict[str, str], errors: dict[str, str] | None = None
    ) -> None:
        """``run.json``: each node's final state and output fingerprint; for a node that did not complete, the
        fingerprint it was computed at (when the run got that far) and ``errors``' one-line error for it
        (``flows.last_run.error_line``), so that `arcflow status` can tell whether the failure still applies."""
        errors = errors or {}
        with self._lock:
            outputs = {
                n: {
                    "state": states.get(n),
                    "fingerprint": self._results.get(n, (self._attempts.get(n), None))[0],
                    "content_hash": self._results.get(n, (None, None))[1],
                    **({"error": errors[n]} if errors.get(n) else {}),
                }
                for n in states
            }
        with open(os.path.join(run_dir, "run.json"), "w", encoding="utf-8") as fh:
            json.dump(
                {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "nodes": outputs},
                fh,
                indent=1,
            )
        self.store.publish_run(run_dir)

    def close(self) -> None:
        self.executor.close()


def _fan_out(progress: Progress | None) -> Progress:
    def call(event: ProgressEvent) -> None:
        if progress is not None:
            progress(event)
        for hook in list(PROGRESS_HOOKS):
            hook(event)

    return call


def _phase_name(fn: Callable[..., Any]) -> str:
    """A phase named after the mapped function (``_EmbedTask`` -> ``embed``), when the kind names none."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__name__", None) or type(fn).__name__
    name = name.strip("_")
    for suffix in ("Task", "_task"):
        name = name.removesuffix(suffix)
    return name.lower() or "map"


def _run_batch(fn: Callable[..., ShardResult], batch: list[ShardTask]) -> list[ShardResult]:
    return [fn(task) for task in batch]


__all__ = ["Engine", "NodePlan", "Selection", "select"]
