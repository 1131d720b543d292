"""A small real corpus built offline from what every Python installation has.

Parts (see ``demo_stdlib`` and ``demo_packages`` for what each holds and skips):

- ``stdlib_code``: the standard library's packages as code repositories, one document per file;
- ``pydoc_html``: pydoc's HTML pages of the stdlib modules (raw HTML, for the extraction stages);
- ``package_metadata``: the installed distributions' long descriptions as web pages;
- ``licenses``: the installed distributions' licence files, as text.

``list_demo_items`` is cheap and deterministic (sorted by part, then key) so a planner can cut it into shards;
``render_demo_items`` does the work for a shard's items and returns one record per item shaped like
``read_records``' (good, or quarantined with ``error``); ``render_demo_item`` does one. The corpus differs between
installations, never between processes, folders or runs of one installation: no record holds a path of this
machine or process state (pydoc pages are rendered in a clean interpreter, see ``demo_pydoc``).
``demo_signature`` hashes what decides the corpus (versions, the installed distributions' names, never paths or
``sys.path``), so fingerprints change exactly when the corpus may have.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import platform
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

from data_pipes.io.demo_items import DemoItem
from data_pipes.io.demo_packages import (
    list_licenses,
    list_package_metadata,
    metadata_folders,
    render_license,
    render_package_metadata,
)
from data_pipes.io.demo_pydoc import render_pydoc_pages
from data_pipes.io.demo_stdlib import (
    list_pydoc_html,
    list_stdlib_code,
    render_pydoc_html,
    render_stdlib_code,
)

__all__ = [
    "DEMO_PARTS",
    "DemoItem",
    "demo_signature",
    "list_demo_items",
    "render_demo_item",
    "render_demo_items",
]

# Bump when the rendering of any part changes, so cached demo corpora are rebuilt.
DEMO_CORPUS_VERSION = 2


class _Part(NamedTuple):
    lister: Callable[[], list[DemoItem]]
    renderer: Callable[[DemoItem], dict[str, str]]
    uses_distributions: bool


_PARTS: dict[str, _Part] = {
    "stdlib_code": _Part(list_stdlib_code, render_stdlib_code, False),
    "pydoc_html": _Part(list_pydoc_html, render_pydoc_html, False),
    "package_metadata": _Part(list_package_metadata, render_package_metadata, True),
    "licenses": _Part(list_licenses, render_license, True),
}
DEMO_PARTS = ("stdlib_code", "pydoc_html", "package_metadata", "licenses")


def _checked_parts(parts: Sequence[str]) -> list[str]:
    """The requested parts, validated, de-duplicated and in ``DEMO_PARTS`` order."""
    if isinstance(parts, str):
        raise TypeError(f"parts must be a sequence of part names, got the string {parts!r}")
    for part in parts:
        if part not in _PARTS:
            close = difflib.get_close_matches(part, DEMO_PARTS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"unknown demo part {part!r}; {hint}valid parts: {', '.join(DEMO_PARTS)}")
    return [part for part in DEMO_PARTS if part in parts]


def list_demo_items(parts: Sequence[str], max_items_per_part: int | None = None) -> list[DemoItem]:
    """Every item of ``parts``, sorted by part (in ``DEMO_PARTS`` order) then key; the first
    ``max_items_per_part`` of each part when given."""
    if max_items_per_part is not None and max_items_per_part < 0:
        raise ValueError(f"max_items_per_part must be >= 0 or None, got {max_items_per_part}")
    items: list[DemoItem] = []
    for part in _checked_parts(parts):
        listed = sorted(_PARTS[part].lister())
        items.extend(listed if max_items_per_part is None else listed[:max_items_per_part])
    return items


def render_demo_item(item: DemoItem) -> dict[str, str]:
    """One document record for ``item``; bad input gives a quarantined record, never an exception."""
    part = _PARTS.get(item.part)
    if part is None:
        raise ValueError(f"unknown demo part {item.part!r} in {item!r}; valid parts: {', '.join(DEMO_PARTS)}")
    return part.renderer(item)


def render_demo_items(items: Sequence[DemoItem]) -> list[dict[str, str]]:
    """``render_demo_item`` of each item, in order; the pydoc pages of the batch share one clean interpreter."""
    pages = iter(render_pydoc_pages([item for item in items if item.part == "pydoc_html"]))
    return [next(pages) if item.part == "pydoc_html" else render_demo_item(item) for item in items]


def demo_signature(parts: Sequence[str]) -> str:
    """sha256 of what determines the corpus for ``parts``: the interpreter's version and build, the corpus code
    version, and (for the package parts) the installed distributions' ``*.dist-info`` names (name and version).
    No path enters: not the standard library's folder, not ``sys.path`` (a deployment's worker and the CLI see
    different ones), so the same installation gives the same signature from any process and checkout."""
    checked = _checked_parts(parts)
    payload: dict[str, object] = {
        "demo_corpus_version": DEMO_CORPUS_VERSION,
        "parts": checked,
        "python": sys.version,
        "implementation": sys.implementation.cache_tag,
        "platform": sys.platform,
        "machine": platform.machine(),
    }
    if any(_PARTS[part].uses_distributions for part in checked):
        payload["distributions"] = metadata_folders()
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
