"""``instruction``: deterministic instruction-following checks (IFEval-style: length, format, keywords,
language).

The problem's ``meta.instructions`` lists the checks, e.g.
``[{"check": "max_words", "value": 50}, {"check": "keywords", "words": ["Paris"]},
{"check": "language", "code": "fr"}]``. Checks read the visible part of the completion (after ``</think>``).
``value`` is the share of checks passed (a dense signal), ``passed`` means all of them.

Checks (``CHECKS``, one function each): ``max_words`` / ``min_words`` / ``max_chars`` / ``min_chars``
(``value``), ``keywords`` / ``forbidden_words`` (``words``, case-insensitive whole words), ``starts_with`` /
``ends_with`` (``text``), ``lowercase``, ``uppercase``, ``no_commas``, ``json`` (the answer, fences allowed,
parses as JSON), ``bullets`` (exactly ``count`` lines starting with ``-`` or ``*``), ``language`` (``code``:
fastText lid.176's top language, as the ``langid`` kind uses).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from data_pipes.reasoning.answers import split_think
from data_pipes.reasoning.rewards.base import Problem, Reward, RewardResult, problem_meta, register

Check = Callable[[str, Mapping[str, Any]], tuple[bool, str]]
_FENCE = re.compile(r"^```(?:json)?\s*\n(.*?)\n?```\s*$", re.S)


def _words(text: str) -> int:
    return len(text.split())


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(str(word))}(?!\w)", text, re.I) is not None


def _json(text: str, _a: Mapping[str, Any]) -> tuple[bool, str]:
    m = _FENCE.match(text.strip())
    try:
        json.loads(m.group(1) if m else text)
    except ValueError as exc:
        return False, f"not JSON: {exc}"[:80]
    return True, "JSON"


def _bullets(text: str, a: Mapping[str, Any]) -> tuple[bool, str]:
    n = sum(1 for ln in text.splitlines() if re.match(r"^\s*[-*]\s", ln))
    return n == int(a["count"]), f"{n} bullets, want {a['count']}"


def _language(text: str, a: Mapping[str, Any]) -> tuple[bool, str]:
    from data_pipes.web.langid import LanguageIdentifier

    langs, scores = LanguageIdentifier(max_chars=2000).predict([text])
    return langs[0] == a["code"], f"language {langs[0] or '?'} ({scores[0]:.2f}), want {a['code']}"


CHECKS: dict[str, Check] = {
    "max_words": lambda t, a: (_words(t) <= int(a["value"]), f"{_words(t)} words, max {a['value']}"),
    "min_words": lambda t, a: (_words(t) >= int(a["value"]), f"{_words(t)} words, min {a['value']}"),
    "max_chars": lambda t, a: (len(t) <= int(a["value"]), f"{len(t)} chars, max {a['value']}"),
    "min_chars": lambda t, a: (len(t) >= int(a["value"]), f"{len(t)} chars, min {a['value']}"),
    "keywords": lambda t, a: (
        all(_has_word(t, w) for w in a["words"]),
        f"missing {[w for w in a['words'] if not _has_word(t, w)]}",
    ),
    "forbidden_words": lambda t, a: (
        not any(_has_word(t, w) for w in a["words"]),
        f"uses {[w for w in a['words'] if _has_word(t, w)]}",
    ),
    "starts_with": lambda t, a: (t.startswith(str(a["text"])), f"starts {t[:20]!r}"),
    "ends_with": lambda t, a: (t.endswith(str(a["text"])), f"ends {t[-20:]!r}"),
    "lowercase": lambda t, _a: (t == t.lower(), "lowercase"),
    "uppercase": lambda t, _a: (t == t.upper(), "uppercase"),
    "no_commas": lambda t, _a: ("," not in t, f"{t.count(',')} commas"),
    "json": _json,
    "bullets": _bullets,
    "language": _language,
}


def instructions(problem: Problem) -> list[dict[str, Any]]:
    items = problem_meta(problem).get("instructions")
    return [dict(i) for i in items] if isinstance(items, list) else []


@register
class InstructionReward(Reward):
    name = "instruction"
    description = (
        "share of the problem's deterministic instruction checks passed (length, format, keywords...)"
    )

    def check(self, problem: Problem) -> str | None:
        items = instructions(problem)
        if not items:
            return "reward_instruction_no_checks"
        if any(not isinstance(i.get("check"), str) or i["check"] not in CHECKS for i in items):
            return "reward_instruction_unknown_check"
        return None

    def score(self, problem: Problem, completion: str) -> RewardResult:
        _trace, visible = split_think(completion)
        items = instructions(problem)
        failed = []
        for item in items:
            ok, why = CHECKS[item["check"]](visible, item)
            if not ok:
                failed.append(f"{item['check']}: {why}")
        share = (len(items) - len(failed)) / len(items)
        detail = "; ".join(failed) if failed else f"all {len(items)} checks pass"
        return RewardResult(share, not failed, detail[:300])
