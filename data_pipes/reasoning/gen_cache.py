"""The resumable generation cache: one append-only JSONL file per shard under ``<out_dir>/_work/``.

A response is appended (and flushed) the moment it arrives, keyed by ``(problem id, sample index)``, and its
verdict when it has been checked. After a crash the file is read back (a torn last line is ignored) and only
the missing samples are requested again. A request that failed after its retries is stored as failed too: the
shard's outcome then depends only on the cache, whichever phase or resumed run reads it.
"""

from __future__ import annotations

import json
import os
import threading

from data_pipes.reasoning.teachers.base import GenResponse

Key = tuple[str, int]


class GenCache:
    def __init__(self, path: str) -> None:
        self.path = path
        self.responses: dict[Key, GenResponse] = {}
        self.verdicts: dict[Key, dict] = {}
        self._lock = threading.Lock()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            self._load()
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def _load(self) -> None:
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                    key = (str(rec["key"][0]), int(rec["key"][1]))
                except (ValueError, KeyError, IndexError, TypeError):
                    continue  # the line a crash cut short
                if rec.get("type") == "verdict":
                    self.verdicts[key] = rec["verdict"]
                else:
                    self.responses[key] = GenResponse.from_json({k: v for k, v in rec.items() if k != "type"})

    def _append(self, rec: dict) -> None:
        with self._lock:
            self._fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            self._fh.flush()

    def add(self, resp: GenResponse) -> None:
        """Store a response as it arrives."""
        with self._lock:
            self.responses[resp.key] = resp
        self._append({"type": "response", **resp.to_json()})

    def add_verdict(self, key: Key, verdict: dict) -> None:
        self.verdicts[key] = verdict
        self._append({"type": "verdict", "key": list(key), "verdict": verdict})

    def close(self) -> None:
        self._fh.close()


def cache_path(out_dir: str, index: int) -> str:
    return os.path.join(out_dir, "_work", f"generations-{index:05d}.jsonl")
