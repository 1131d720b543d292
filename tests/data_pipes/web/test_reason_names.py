"""`heuristic_filters`' drop reasons against datatrove's: every pair names a reason the installed datatrove filter
really returns, our names are unique and carry their stage's prefix (the documented reason for not taking
datatrove's), and docs/DATATROVE.md lists exactly the pairs of the code."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from data_pipes.web.reason_names import FILTERS, OURS_ONLY, datatrove_name, reason_pairs

DOC = Path(__file__).resolve().parents[3] / "docs" / "DATATROVE.md"


def _returned_reasons(cls_name: str) -> list[re.Pattern[str]]:
    """The reasons datatrove's ``cls_name.filter`` returns, read from its source: each ``return False, "..."``
    literal, and an f-string's ``{n}`` as a number."""
    filters = pytest.importorskip("datatrove.pipeline.filters")
    source = inspect.getsource(getattr(filters, cls_name).filter)
    literals = re.findall(r'return False, (f?)"([^"]+)"', source)
    assert literals, f"no `return False, reason` in {cls_name}.filter"
    return [
        re.compile(re.sub(r"\\\{\w+\\\}", r"\\d+", re.escape(text)) if f else re.escape(text) + "$")
        for f, text in literals
    ]


def test_every_datatrove_name_is_one_the_installed_filter_returns() -> None:
    for cls_name, names in FILTERS.values():
        patterns = _returned_reasons(cls_name)
        for ours, theirs in names.items():
            assert any(p.fullmatch(theirs) for p in patterns), (ours, cls_name, theirs)
    assert datatrove_name("gopher_quality_stop_words") == "GopherQualityFilter: gopher_enough_stop_words"
    assert datatrove_name("fineweb_empty") == "FineWebQualityFilter: empty"
    assert datatrove_name("heuristic_unknown_language") == "" and "heuristic_unknown_language" in OURS_ONLY


def test_our_names_are_unique_and_prefixed_where_datatrove_names_collide() -> None:
    pairs = reason_pairs()
    ours = [o for o, _, _ in pairs]
    assert len(ours) == len(set(ours))
    for prefix, (_cls, names) in FILTERS.items():
        assert all(o.startswith(prefix + "_") for o in names), prefix
    # the documented reason: datatrove's `empty` is two filters' reason, so its names cannot be ours
    theirs = [t for _, _, t in pairs]
    assert theirs.count("empty") == 2


def test_the_docs_table_lists_exactly_the_pairs_of_the_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Drop reasons: `heuristic_filters` and datatrove") :]
    rows = re.findall(r"^\| `([a-z0-9_{}]+)`[^|]* \| (\w+) \| `([a-z0-9_{}]+)` \|$", section, flags=re.M)
    assert rows, "no table rows found"
    listed: set[tuple[str, str, str]] = set()
    for ours, cls, theirs in rows:
        if "{n}" not in ours:
            listed.add((ours, cls, theirs))
            continue
        for n in range(1, 21):  # a family of n-gram reasons: every n the code maps
            listed.add((ours.replace("{n}", str(n)), cls, theirs.replace("{n}", str(n))))
    code = set(reason_pairs())
    assert code <= listed, sorted(code - listed)
    assert {r for r in listed if r[0] in {o for o, _, _ in code}} == code
