"""Issue / pull-request threads: schema, rendered text, and quarantine of malformed lines."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from data_pipes.code.issues_reader import read_threads
from data_pipes.code.issues_render import Thread, cut_diff, render_thread

ISSUE = {
    "repo": "acme/widgets",
    "number": 12,
    "type": "issue",
    "title": "Crash on empty input",
    "state": "closed",
    "user": {"login": "alice", "id": 1},
    "created_at": "2024-01-02T03:04:05Z",
    "body": "Steps:\n1. run it\n",
    "labels": [{"name": "bug"}, "good first issue"],
    "comments": [
        {"user": "carol", "created_at": "2024-01-04T00:00:00Z", "body": "Fixed in #13."},
        {"user": "bob", "created_at": "2024-01-03T00:00:00Z", "body": "Confirmed."},
    ],
    "reactions": {"+1": 3},
}
PR = {
    "repo": "acme/widgets",
    "number": 13,
    "type": "pull_request",
    "title": "Handle empty input",
    "state": "merged",
    "user": "carol",
    "body": None,
    "diff": "diff --git a/w.py b/w.py\n--- a/w.py\n+++ b/w.py\n@@ -1 +1,2 @@\n+if not x:\n+    return\n",
    "review_comments": [
        {
            "user": "alice",
            "path": "w.py",
            "line": 1,
            "diff_hunk": "@@ -1 +1,2 @@\n+if not x:",
            "body": "Nice.",
        }
    ],
}


def test_issue_text() -> None:
    assert render_thread(Thread.model_validate(ISSUE)) == (
        "Issue #12 in acme/widgets: Crash on empty input\n"
        "State: closed. Labels: bug, good first issue.\n"
        "\n"
        "alice opened on 2024-01-02T03:04:05Z:\n"
        "Steps:\n1. run it\n"
        "\n"
        "bob commented on 2024-01-03T00:00:00Z:\n"
        "Confirmed.\n"
        "\n"
        "carol commented on 2024-01-04T00:00:00Z:\n"
        "Fixed in #13.\n"
    )


def test_pull_request_text_with_diff_and_review() -> None:
    assert render_thread(Thread.model_validate(PR)) == (
        "Pull request #13 in acme/widgets: Handle empty input\n"
        "State: merged.\n"
        "\n"
        "carol opened:\n"
        "\n"
        "Diff:\n" + PR["diff"] + "\n"
        "alice reviewed w.py line 1:\n"
        "@@ -1 +1,2 @@\n+if not x:\n"
        "Nice.\n"
    )


def test_cut_diff_at_line_boundary() -> None:
    diff = "".join(f"+line {k}\n" for k in range(100))
    cut, truncated = cut_diff(diff, 50)
    assert truncated and cut.endswith("characters omitted]\n")
    head = cut.split("[diff truncated")[0]
    assert diff.startswith(head) and head.endswith("\n") and len(head) <= 50
    assert cut_diff(diff, None) == (diff, False)


def test_read_threads_quarantines_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps(ISSUE),
        "",
        "{not json",
        json.dumps([1, 2]),
        json.dumps({**ISSUE, "title": None}),
        json.dumps({**ISSUE, "type": "discussion"}),
        json.dumps(PR),
    ]
    path = tmp_path / "t.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    records = list(read_threads(str(path), "gh", "t.jsonl.gz"))
    good = [r for r in records if "error" not in r]
    bad = [r["error"].split(":")[0] for r in records if "error" in r]
    assert bad == ["issues_bad_json", "issues_bad_record", "issues_bad_record", "issues_bad_record"]
    assert [json.loads(r["meta"])["format"] for r in good] == ["issue", "pull_request"]
    meta = json.loads(good[1]["meta"])
    assert meta["repo"] == "acme/widgets" and meta["has_diff"] and meta["n_review_comments"] == 1
    assert good[0]["url"] == "repo://acme/widgets/issues/12"
    again = list(read_threads(str(path), "gh", "t.jsonl.gz"))
    assert [r["id"] for r in again] == [r["id"] for r in records]
