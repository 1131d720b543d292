"""Why a node's kind signature (``Kind.signature``: fingerprint material beyond params and code) changed, in words
for ``arcflow plan`` / ``status``.

Most kinds' signatures are a digest of the files or model they read: a change there is "its input files changed".
The ``datatrove`` kind's is a JSON object (``data_pipes.datatrove_resolve.step_signature`` plus its local files),
so its reasons name what changed: the step's own code (``step code changed: steps.badstep``), a package version, the
step's class, a local model or word list.
"""

from __future__ import annotations

import json
from typing import Any

FILES_CHANGED = "its input files changed"


def _as_object(signature: Any) -> dict[str, Any] | None:
    if not isinstance(signature, str) or not signature.startswith("{"):
        return None
    try:
        value = json.loads(signature)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _changed_keys(old: Any, new: Any) -> list[str]:
    old = old if isinstance(old, dict) else {}
    new = new if isinstance(new, dict) else {}
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def signature_changes(old: Any, new: Any) -> list[str]:
    """The reasons ``old`` became ``new`` (both a kind's signature); ``[]`` when equal."""
    if old == new:
        return []
    before, after = _as_object(old), _as_object(new)
    if before is None or after is None:
        return [FILES_CHANGED]
    reasons: list[str] = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        if key == "source":
            reasons.append(f"step code changed: {', '.join(_changed_keys(a, b))}")
        elif key == "versions":
            olds, news = a if isinstance(a, dict) else {}, b if isinstance(b, dict) else {}
            reasons += [f"version {k}: {olds.get(k)} -> {news.get(k)}" for k in _changed_keys(a, b)]
        elif key == "class":
            reasons.append(f"step class changed: {a} -> {b}")
        elif key == "local_files":
            reasons.append(f"local file changed: {', '.join(_changed_keys(a, b))}")
        else:
            reasons.append(f"{key} changed")
    return reasons or [FILES_CHANGED]
