"""The code-sample kinds through the engine: repo_samples, fim, dedup_repos, issues_prs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest
import yaml

from data_pipes.code.fim import parse_fim
from data_pipes.code.repo_order import dependency_order
from data_pipes.code.repo_order_samples import parse_sample
from data_pipes.code.special_tokens import TOKENS
from flows.engine import Engine
from flows.validate import load_pipeline
from tasks.repo_samples import RepoSamplesParams, build_samples


def words(seed: int, n: int) -> str:
    """``n`` pseudo-random letter words (no digits: MinHash normalises numbers away)."""
    rng = random.Random(seed)
    return " ".join(
        "".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(3, 8))) for _ in range(n)
    )


BASE, OTHER, G0, G1 = words(0, 800), words(1, 800), words(2, 500), words(3, 500)


def _shards(out: Path, sub: str = "") -> pl.DataFrame:
    files = sorted((out / sub).glob("part-*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed") if files else pl.DataFrame()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, Path]]:
    root = tmp_path_factory.mktemp("repo_kinds")
    repos = [
        {"repo": "alpha", "text": BASE, "id": "a0"},
        {"repo": "alpha-fork", "text": BASE + " one extra line", "id": "f0"},
        {"repo": "beta", "text": OTHER, "id": "b0"},
        {"repo": "gamma", "text": G0, "id": "g0"},  # a repository in two parts ...
        {"repo": "gamma", "text": G1, "id": "g1"},
        {"repo": "delta", "text": G0 + " " + G1, "id": "d0"},  # ... and the same files in one
    ]
    (root / "repos.jsonl").write_text("".join(json.dumps(r) + "\n" for r in repos))
    threads = [
        {"repo": "o/r", "number": 1, "type": "issue", "title": "Bug", "body": "It breaks."},
        {"repo": "o/r", "number": 2, "type": "pull_request", "title": "Fix", "diff": "+x\n"},
        {"repo": "o/r", "number": 1, "type": "issue", "title": "Bug (again)"},
        {"number": 3, "type": "issue", "title": "no repo"},
    ]
    (root / "threads.jsonl").write_text("".join(json.dumps(t) + "\n" for t in threads) + "{oops\n")
    nodes = {
        "corpus": {
            "uses": "demo_corpus",
            "params": {"parts": ["stdlib_code"], "max_items_per_part": 60, "items_per_shard": 20},
        },
        "repos": {"uses": "repo_samples", "inputs": ["corpus"], "params": {"max_repo_chars": 150_000}},
        "fim": {"uses": "fim", "inputs": ["corpus"], "params": {"fim_rate": 0.5}},
        "repo_docs": {"uses": "files", "params": {"paths": ["repos.jsonl"], "id_field": "id"}},
        "dedup": {"uses": "dedup_repos", "inputs": ["repo_docs"]},
        "dedup_samples": {"uses": "dedup_repos", "inputs": ["repos"]},
        "threads": {"uses": "issues_prs", "params": {"paths": ["threads.jsonl"]}},
    }
    spec = {
        "name": "repo_kinds",
        "workdir": str(root / ".arcflow"),
        "nodes": nodes,
        "executor": {"n_workers": 1, "processes": False},
    }
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    engine = Engine(load_pipeline(str(root / "pipeline.yaml")))
    out = {}
    try:
        for node in nodes:
            _, manifest = engine.run_node(node)
            out[node] = (manifest, root / ".arcflow" / "outputs" / manifest["fingerprint"])
    finally:
        engine.close()
    return out


def test_repo_samples_in_dependency_order(run: dict[str, tuple[dict, Path]]) -> None:
    manifest, out = run["repos"]
    corpus = _shards(run["corpus"][1])
    samples = _shards(out)
    counts = manifest["counts"]
    assert counts["in"] == counts["kept"] == corpus.height == 60  # every file went into a sample
    assert counts["out"] == samples.height < 60
    assert manifest["drop_reasons"] == {}
    metas = [json.loads(m) for m in samples["meta"]]
    assert [(m["repo"], m["part"]) for m in metas] == sorted((m["repo"], m["part"]) for m in metas)
    assert any(m["n_parts"] > 1 for m in metas)  # asyncio is longer than max_repo_chars
    by_repo: dict[str, list[str]] = {}
    for text, meta in zip(samples["text"], metas, strict=True):
        assert len(text) <= 150_000 or len(meta["paths"]) == 1
        repo, files = parse_sample(text)
        assert repo == meta["repo"] and [p for p, _ in files] == meta["paths"]
        repeated = meta["repeated"]
        assert meta["paths"][: len(repeated)] == repeated  # copies of earlier parts' modules come first
        assert all(p in by_repo.get(repo, []) for p in repeated)
        by_repo.setdefault(repo, []).extend(meta["paths"][len(repeated) :])
        assert "other" not in meta["languages"] and meta["tiers"] == {
            "none": len(meta["paths"]) - len(repeated)
        }
    assert any(m["repeated"] for m in metas)  # asyncio's later part starts with small modules it imports
    corpus_meta = [json.loads(m) for m in corpus["meta"]]
    for repo, paths in by_repo.items():
        files = {m["path"]: t for m, t in zip(corpus_meta, corpus["text"], strict=True) if m["repo"] == repo}
        assert paths == dependency_order(files)
    assert samples["epochs"].to_list() == [1.0] * samples.height and set(samples["tier"]) == {""}
    members = [i for ids in samples["member_ids"] for i in ids]
    assert sorted(members) == sorted(corpus["id"])


def test_fim_kind(run: dict[str, tuple[dict, Path]]) -> None:
    manifest, out = run["fim"]
    docs = _shards(out).sort("id")
    corpus = _shards(run["corpus"][1]).sort("id")
    assert manifest["counts"] == {"in": 60, "kept": 60, "dropped": 0, "quarantined": 0, "out": 60}
    assert set(docs["fim"]) == {"psm", "spm", "none"}
    for text, mode, original in zip(docs["text"], docs["fim"], corpus["text"], strict=True):
        assert "".join(parse_fim(text, mode)) == original
        assert text.startswith(TOKENS.fim_prefix) == (mode != "none")


def test_dedup_repos_drops_forks(run: dict[str, tuple[dict, Path]]) -> None:
    manifest, out = run["dedup"]
    kept = [json.loads(m)["repo"] for m in _shards(out)["meta"]]
    dropped = _shards(out, "excluded")
    assert manifest["drop_reasons"] == {"repo_near_duplicate": 3}
    # the longest repository of a cluster is kept; gamma's two parts are compared as one repository
    assert sorted(kept) == ["alpha-fork", "beta", "delta"]
    assert sorted(zip(dropped["id"], dropped["duplicate_of"], strict=True)) == [
        ("repo_docs:a0", "alpha-fork"),
        ("repo_docs:g0", "delta"),
        ("repo_docs:g1", "delta"),
    ]
    samples_manifest, _ = run["dedup_samples"]
    assert samples_manifest["counts"]["dropped"] == 0  # distinct stdlib packages


def test_issues_prs_kind(run: dict[str, tuple[dict, Path]]) -> None:
    manifest, out = run["threads"]
    assert manifest["counts"] == {"in": 5, "kept": 2, "dropped": 1, "quarantined": 2, "out": 2}
    assert manifest["drop_reasons"] == {"issues_prs_duplicate": 1}
    assert manifest["quarantine_errors"] == {"issues_bad_record": 1, "issues_bad_json": 1}
    docs = _shards(out)
    assert docs["text"][0].startswith("Issue #1 in o/r: Bug\n")


def test_build_samples_commits_duplicates_and_parts() -> None:
    rows = [
        ("f1", "import b\n", "r", "code", "a.py", None),
        ("f2", "x = 1\n", "r", "code", "b.py", None),
        ("f3", "dup", "r", "code", "b.py", None),
        ("c2", "commit 22\n\nsecond", "r", "commit", None, 1),
        ("c1", "commit 11\n\nfirst", "r", "commit", None, 0),
        ("n1", "orphan", None, "code", "z.py", None),
        ("m1", "notes", "r", "markdown_page", "notes.md", None),
    ]
    frame = pl.DataFrame(
        [(i, t, "src", f"u/{i}", "", "{}", r, f, p, pos) for i, t, r, f, p, pos in rows],
        schema=["id", "text", "source", "url", "lang", "meta", "_repo", "_format", "_path", "_position"],
        orient="row",
    )
    samples, dropped, _ = build_samples(frame, RepoSamplesParams())
    sep, name = TOKENS.file_sep, TOKENS.repo_name
    assert samples["text"].to_list() == [
        f"{name}r\n{sep}b.py\nx = 1\n{sep}a.py\nimport b\n{sep}commit 11\n\nfirst\n{sep}commit 22\n\nsecond\n"
    ]
    assert samples["member_ids"].to_list() == [["f2", "f1", "c1", "c2"]]
    reasons = dict(zip(dropped["id"], dropped["reason"], strict=True))
    assert reasons == {
        "f3": "repo_samples_duplicate_path",
        "n1": "repo_samples_no_repo",
        "m1": "repo_samples_other_format",
    }
    assert samples["member_ids"].list.len().sum() + dropped.height == frame.height
    parts, _, _ = build_samples(frame, RepoSamplesParams(max_repo_chars=30, commits="drop"))
    assert [json.loads(m)["paths"] for m in parts["meta"]] == [["b.py"], ["a.py"]]
    separate, _, _ = build_samples(frame, RepoSamplesParams(commits="separate"))
    assert separate["id"].to_list()[1:] == ["c1", "c2"]
