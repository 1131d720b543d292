"""Chat / SFT records (docs/CHAT_CONTRACT.md) in the thinking and direct formats, and the dropped-sample rows.

A thinking record's assistant turn is ``<think>trace</think>`` then the visible answer; a direct record keeps
only the visible answer. Which one a kept sample becomes is a seeded hash of (problem id, sample index)
against ``thinking_ratio``, so the mix is exact in expectation and independent of sharding. A response with no
trace can only make a direct record.
"""

from __future__ import annotations

import hashlib
import json

import polars as pl

from data_pipes.reasoning.answers import split_think
from data_pipes.reasoning.rejection import Judged

MESSAGE = pl.Struct({"role": pl.String(), "content": pl.String()})
CHAT_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "messages": pl.List(MESSAGE),
    "mode": pl.String(),
    "tools": pl.String(),
    "problem_id": pl.String(),
    "domain": pl.String(),
    "difficulty": pl.String(),
    "teacher": pl.String(),
    "verified": pl.Boolean(),
    "meta": pl.String(),
}
DROPPED_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "problem_id": pl.String(),
    "sample_index": pl.Int64(),
    "domain": pl.String(),
    "difficulty": pl.String(),
    "teacher": pl.String(),
    "text": pl.String(),
    "finish_reason": pl.String(),
    "error": pl.String(),
    "verifier": pl.String(),
    "reason": pl.String(),
}


def pick_mode(seed: int, pid: str, idx: int, thinking_ratio: float) -> str:
    u = int(hashlib.sha256(f"mode:{seed}:{pid}:{idx}".encode()).hexdigest()[:13], 16) / float(1 << 52)
    return "thinking" if u < thinking_ratio else "direct"


def chat_record(problem: dict[str, str], j: Judged, mode: str, teacher: str, sampling: dict) -> dict:
    trace, visible = split_think(j.response.text)
    if trace is None:
        mode = "direct"
    content = f"<think>\n{trace}\n</think>\n\n{visible}" if mode == "thinking" else visible
    meta = {
        **sampling,
        "sample_index": j.index,
        "response_chars": len(j.response.text),
        "usage": j.response.usage,
        "attempts": j.response.attempts,
        "verifier": j.verdict,
    }  # no generation time here: rows hold no wall-clock data (the shard's total is in the manifest's shards)
    return {
        "id": f"{problem['id']}#{j.index}:{mode}",
        "messages": [
            {"role": "user", "content": problem["prompt"]},
            {"role": "assistant", "content": content},
        ],
        "mode": mode,
        "tools": "[]",
        "problem_id": problem["id"],
        "domain": problem["domain"],
        "difficulty": problem["difficulty"],
        "teacher": teacher,
        "verified": bool((j.verdict or {}).get("ok")),
        "meta": json.dumps(meta, sort_keys=True, default=str),
    }


def dropped_row(problem: dict[str, str], j: Judged, teacher: str, reason: str) -> dict:
    return {
        "id": f"{problem['id']}#{j.index}",
        "problem_id": problem["id"],
        "sample_index": j.index,
        "domain": problem["domain"],
        "difficulty": problem["difficulty"],
        "teacher": teacher,
        "text": j.response.text,
        "finish_reason": j.response.finish_reason,
        "error": j.response.error or "",
        "verifier": json.dumps(j.verdict) if j.verdict else "",
        "reason": reason,
    }


def frame(rows: list[dict], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame({c: [r[c] for r in rows] for c in schema}, schema=schema)
