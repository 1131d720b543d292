"""`heuristic_filters`' drop reasons and datatrove's names for the same checks.

Our reasons keep the project's rule for drop reasons (ARCHITECTURE.md: snake_case, prefixed by the stage:
`gopher_quality_`, `gopher_repetition_`, `c4_`, `fineweb_`) instead of datatrove's strings, on purpose:

- datatrove's names are not unique across its filters: `GopherRepetitionFilter` and `FineWebQualityFilter` both drop
  an empty document as `empty`, and `heuristic_filters` runs both in one node, so the reason must say which check;
- most of datatrove's names carry no filter at all (`dup_line_frac`, `list_ratio`, `too_few_sentences`), so in a
  node's counts, or a store holding several filters' exclusions, they would not say where a row was dropped;
- `gopher_enough_stop_words` names the opposite of what happened (the document has *too few* stop words); ours,
  `gopher_quality_stop_words`, names the check, like the other `gopher_quality_*` reasons.

The `datatrove` kind passes datatrove's strings through verbatim (it runs datatrove's own code). Each module's
``DATATROVE_REASONS`` holds the pairs, which the agreement tests and benchmarks compare through; this module
puts them together, and docs/DATATROVE.md ("Drop reasons: heuristic_filters and datatrove") lists them.
"""

from __future__ import annotations

from data_pipes.web import c4, fineweb, gopher_quality, gopher_repetition

# our stage prefix -> (datatrove's filter class, our reason -> datatrove's reason)
FILTERS: dict[str, tuple[str, dict[str, str]]] = {
    "gopher_quality": ("GopherQualityFilter", gopher_quality.DATATROVE_REASONS),
    "gopher_repetition": ("GopherRepetitionFilter", gopher_repetition.DATATROVE_REASONS),
    "c4": ("C4QualityFilter", c4.DATATROVE_REASONS),
    "fineweb": ("FineWebQualityFilter", fineweb.DATATROVE_REASONS),
}
# reasons of ours without a datatrove counterpart, and why
OURS_ONLY = {
    "heuristic_unknown_language": "`unknown_lang: drop`: a document whose language has no tuned figures",
}


def datatrove_name(reason: str) -> str:
    """``GopherQualityFilter: gopher_enough_stop_words`` for ``gopher_quality_stop_words``; empty when the reason
    has no datatrove counterpart (``heuristic_unknown_language``) or is not one of ours."""
    for cls, names in FILTERS.values():
        if reason in names:
            return f"{cls}: {names[reason]}"
    return ""


def reason_pairs() -> list[tuple[str, str, str]]:
    """Every (our reason, datatrove's filter class, datatrove's reason), in check order per filter."""
    return [(ours, cls, theirs) for cls, names in FILTERS.values() for ours, theirs in names.items()]
