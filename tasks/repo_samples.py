"""`repo_samples`: each repository becomes one document (or a few parts): its files in dependency order under
path headers, optionally followed by its commits (format in docs/CODE_SAMPLES.md).

Each sample carries ``tier`` and ``epochs`` from its members' ``code_quality`` columns (``tier_rule``: the
character-weighted mean of the epochs, or the highest tier's), so the high tier's up-sampling reaches pack. A
repository longer than ``max_repo_chars`` is cut where the fewest imports cross, and a part starts with copies
of the small modules it imports from earlier parts (``meta.repeated``).

Grouping is global: a repository's files may sit in any input shard. A first pass (``ctx.map``, one task per
input shard) reads only ``meta`` and the text sizes and counts rows and bytes per repository. The driver
sorts the repository names and cuts them into output shards of about ``shard_mb``; each output shard then
reads its repositories' rows (a predicate on ``meta.repo``) from the input shards that hold them. The layout
depends only on the data, never on the input sharding or the number of workers.

Accounting (an N -> 1 kind, ``write_shard(kept_in=...)``): ``in`` counts input rows; ``kept`` counts the input
rows that went into an output document (``member_ids`` of each output row lists them, in order); ``out``
counts the output documents. Drops: ``repo_samples_no_repo`` (no ``meta.repo``), ``repo_samples_no_path``,
``repo_samples_duplicate_path`` (same path twice in a repository: the smallest id is used),
``repo_samples_other_format`` (``meta.format`` not in ``formats`` and not a commit) and
``repo_samples_commit_unused`` (``commits: drop``).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import ClassVar, Literal

import polars as pl
from pydantic import Field

from data_pipes.code.languages import language_of as code_language
from data_pipes.code.repo_order import dependency_edges, split_edges, topological_order
from data_pipes.code.repo_order_samples import Member, render_parts
from data_pipes.io.records import dump_meta, make_id
from data_pipes.io.shards import ShardResult, write_shard
from tasks.base import DataType, Kind, KindParams, RunContext, ShardTask
from tasks.registry import register

OUT_COLUMNS = ("id", "text", "source", "url", "lang", "meta", "member_ids", "tier", "epochs")
TIER_RANK = {"low": 0, "mid": 1, "high": 2}


class RepoSamplesParams(KindParams):
    max_repo_chars: int | None = Field(
        512_000, ge=1, description="cut longer repositories into parts at file boundaries (None: never)"
    )
    commits: Literal["append", "separate", "drop"] = Field(
        "append", description="commit documents: after the files, as their own documents, or dropped"
    )
    formats: list[str] = Field(default_factory=lambda: ["code"], description="meta.format values of files")
    shard_mb: float = Field(64.0, gt=0, description="input text per output shard")
    tier_rule: Literal["mean", "max"] = Field(
        "mean",
        description="a sample's epochs from its members' (code_quality tier / epochs): mean weighted by "
        "characters (tier: the one holding most characters), or the highest tier's",
    )
    repeat_max_chars: int = Field(
        4000, ge=0, description="when a repository is cut, repeat imported modules up to this size (0: never)"
    )


READ_COLUMNS = (
    "id",
    "text",
    "source",
    "url",
    "lang",
    "meta",
    "_repo",
    "_format",
    "_path",
    "_position",
    "_language",
    "tier",
    "epochs",
)


def _keys(lf: pl.LazyFrame) -> pl.LazyFrame:
    meta = pl.col("meta").str
    return lf.with_columns(
        meta.json_path_match("$.repo").alias("_repo"), meta.json_path_match("$.format").alias("_format")
    )


def scan_repos(path: str) -> dict[str, tuple[int, int]]:
    """First pass over one input shard: ``{repo: (rows, text bytes)}``; rows without a repo under ``""``."""
    frame = (
        _keys(pl.scan_parquet(path))
        .group_by(pl.col("_repo").fill_null(""))
        .agg(pl.len().alias("rows"), pl.col("text").str.len_bytes().sum().alias("bytes"))
        .collect()
    )
    return {r: (int(n), int(b or 0)) for r, n, b in frame.iter_rows()}


@register
class RepoSamples(Kind):
    name: ClassVar[str] = "repo_samples"
    Params = RepoSamplesParams
    input_types: ClassVar[tuple[DataType, ...]] = (DataType.DOCUMENTS,)
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = None
    packages = ("polars", "pyarrow")
    description = "repository-level samples: files in dependency order under path headers, plus commits"
    phases: ClassVar[tuple[str, ...]] = ("scan", "write")

    def run(self, ctx: RunContext) -> list[ShardResult]:
        params: RepoSamplesParams = ctx.params  # type: ignore[assignment]
        paths = [p for inp in ctx.inputs for p in inp.shards]
        scans = ctx.map(scan_repos, paths, phase="scan")
        totals: dict[str, list[int]] = {}
        for scan in scans:
            for repo, (n, b) in scan.items():
                t = totals.setdefault(repo, [0, 0])
                t[0], t[1] = t[0] + n, t[1] + b
        budget = params.shard_mb * 1024 * 1024
        chunks: list[list[str]] = [[]]
        size = 0.0
        for repo in sorted(r for r in totals if r):
            if chunks[-1] and size + totals[repo][1] > budget:
                chunks.append([])
                size = 0.0
            chunks[-1].append(repo)
            size += totals[repo][1]
        tasks = []
        for i, repos in enumerate(chunks):
            wanted = set(repos) | ({""} if i == 0 else set())  # shard 0 also accounts rows without a repo
            inputs = [p for p, scan in zip(paths, scans, strict=True) if wanted & scan.keys()]
            rows = sum(totals[r][0] for r in wanted if r in totals)
            tasks.append(
                ShardTask(
                    i,
                    {"repos": repos, "orphans": i == 0, "inputs": inputs, "rows": rows},
                    label=f"repos {repos[0] if repos else '-'}..",
                )
            )
        results = ctx.run_shards(tasks)
        self.summarize(ctx, results)
        return results

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        table = [{"shard": r.index, **r.extra, "rows_in": r.rows_in, "samples": r.kept} for r in results]
        ctx.add_report("Repository samples per shard", table=table)

    def run_shard(self, params: RepoSamplesParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        repos, orphans = task.payload["repos"], task.payload["orphans"]
        frames = []
        for path in task.payload["inputs"]:
            cond = pl.col("_repo").is_in(repos)
            if orphans:
                cond = cond | pl.col("_repo").is_null()
            meta = pl.col("meta").str
            lf = (
                _keys(pl.scan_parquet(path))
                .filter(cond)
                .with_columns(
                    meta.json_path_match("$.path").alias("_path"),
                    meta.json_path_match("$.position").cast(pl.Int64, strict=False).alias("_position"),
                )
            )
            names = pl.scan_parquet(path).collect_schema().names()
            lf = lf.with_columns(
                meta.json_path_match("$.language").alias("_language"),
                (pl.col("tier").cast(pl.String) if "tier" in names else pl.lit(None, pl.String)).alias(
                    "tier"
                ),
                (pl.col("epochs").cast(pl.Float64) if "epochs" in names else pl.lit(None, pl.Float64)).alias(
                    "epochs"
                ),
            )
            frames.append(lf.select(*READ_COLUMNS).collect())
        frame = pl.concat(frames) if frames else None
        samples, dropped, stats = build_samples(frame, params)
        rows_in = 0 if frame is None else frame.height
        kept_in = int(samples.get_column("member_ids").list.len().sum()) if samples.height else 0
        return write_shard(
            out_dir,
            task.index,
            samples,
            rows_in=rows_in,
            dropped=dropped,
            started=started,
            kept_in=kept_in,
            extra=stats,
        )


def _language(row: dict) -> str:
    """The file's language: its ``meta.language``, else from its path, else ``other``."""
    return row.get("_language") or code_language(row.get("_path") or "") or "other"


def sample_tier(rows: list[dict], rule: str) -> tuple[str, float]:
    """``(tier, epochs)`` of a sample of ``rows`` (members with ``tier`` / ``epochs``; absent epochs are 1.0,
    absent tiers ``""``). ``mean``: epochs weighted by characters (so the expected tokens of every member are
    kept), tier the one with most characters; ``max``: the highest tier and its largest epochs."""
    chars = [max(1, len(r["text"] or "")) for r in rows]
    epochs = [1.0 if r.get("epochs") is None else float(r["epochs"]) for r in rows]
    tiers = [r.get("tier") or "" for r in rows]
    if not rows:
        return "", 1.0
    if rule == "max":
        top = max(tiers, key=lambda t: TIER_RANK.get(t, -1))
        return top, max(e for e, t in zip(epochs, tiers, strict=True) if t == top)
    by_tier: Counter[str] = Counter()
    for t, c in zip(tiers, chars, strict=True):
        by_tier[t] += c
    tier = max(sorted(by_tier), key=lambda t: by_tier[t])
    return tier, round(sum(e * c for e, c in zip(epochs, chars, strict=True)) / sum(chars), 6)


def build_samples(
    frame: pl.DataFrame | None, params: RepoSamplesParams
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """Repository samples of ``frame``'s rows (columns as read by ``run_shard``), the dropped rows, and
    counts for the shard's marker."""
    out: dict[str, list] = {c: [] for c in OUT_COLUMNS}
    drops: dict[str, list] = {c: [] for c in ("id", "source", "url", "reason")}
    stats: Counter[str] = Counter()

    def drop(row: dict, reason: str) -> None:
        for c, v in (("id", row["id"]), ("source", row["source"]), ("url", row["url"]), ("reason", reason)):
            drops[c].append(v)

    if frame is not None and frame.height:
        for col, dtype in (("_language", pl.String), ("tier", pl.String), ("epochs", pl.Float64)):
            if col not in frame.columns:
                frame = frame.with_columns(pl.lit(None, dtype).alias(col))
        frame = frame.sort("_repo", "_path", "id", nulls_last=True)
        for (repo,), group in frame.group_by("_repo", maintain_order=True):
            rows = group.to_dicts()
            if repo is None:
                for row in rows:
                    drop(row, "repo_samples_no_repo")
                continue
            files: dict[str, dict] = {}
            commits: list[dict] = []
            for row in rows:
                if row["_format"] == "commit":
                    if params.commits == "drop":
                        drop(row, "repo_samples_commit_unused")
                    else:
                        commits.append(row)
                elif row["_format"] not in params.formats:
                    drop(row, "repo_samples_other_format")
                elif not row["_path"]:
                    drop(row, "repo_samples_no_path")
                elif row["_path"] in files:
                    drop(row, "repo_samples_duplicate_path")
                else:
                    files[row["_path"]] = row
            commits.sort(key=lambda r: (r["_position"] if r["_position"] is not None else 1 << 62, r["id"]))
            texts = {p: r["text"] or "" for p, r in files.items()}
            edges = dependency_edges(texts)
            strong, weak = split_edges(edges)
            order = topological_order(strong, weak)
            members = [Member(files[p]["id"], files[p]["text"] or "", path=p) for p in order]
            if params.commits == "append":
                members += [Member(c["id"], c["text"] or "") for c in commits]
            by_id = {r["id"]: r for r in rows}
            parts = (
                render_parts(repo, members, params.max_repo_chars, strong, params.repeat_max_chars)
                if members
                else []
            )
            stats["repos"] += 1
            stats["files"] += len(files)
            for k, part in enumerate(parts):
                doc_id = make_id("repo_samples", repo, k)
                first = by_id[part.members[0].id]
                shown = [*part.repeated, *part.members]
                tier, epochs = sample_tier([by_id[m.id] for m in shown], params.tier_rule)
                langs = Counter(_language(by_id[m.id]) for m in shown if m.path)
                meta = {
                    "format": "repo",
                    "repo": repo,
                    "part": k,
                    "n_parts": len(parts),
                    "paths": [m.path for m in shown if m.path],
                    "repeated": [m.path for m in part.repeated],
                    "n_commits": sum(1 for m in part.members if not m.path),
                    "languages": dict(sorted(langs.items())),
                    "tiers": dict(
                        sorted(Counter(by_id[m.id].get("tier") or "none" for m in part.members).items())
                    ),
                }
                for c, v in (
                    ("id", doc_id),
                    ("text", part.text),
                    ("source", first["source"]),
                    ("url", f"repo://{repo}"),
                    ("lang", ""),
                    ("meta", dump_meta(meta)),
                    ("member_ids", [m.id for m in part.members]),
                    ("tier", tier),
                    ("epochs", epochs),
                ):
                    out[c].append(v)
            if params.commits == "separate":
                for c in commits:
                    for col, v in (
                        ("id", c["id"]),
                        ("text", c["text"]),
                        ("source", c["source"]),
                        ("url", c["url"]),
                        ("lang", c["lang"]),
                        ("meta", c["meta"]),
                        ("member_ids", [c["id"]]),
                        ("tier", c.get("tier") or ""),
                        ("epochs", 1.0 if c.get("epochs") is None else float(c["epochs"])),
                    ):
                        out[col].append(v)
    schema = {
        **{c: pl.String() for c in OUT_COLUMNS},
        "member_ids": pl.List(pl.String()),
        "epochs": pl.Float64(),
    }
    samples = pl.DataFrame(out, schema=schema)
    return samples, pl.DataFrame(drops, schema={c: pl.String() for c in drops}), dict(stats)
