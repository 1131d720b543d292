"""The store's layout version: ``store.json`` at its root, ``{"format": N, "arcflow": "<version>"}``.

Every store, local or on an object store, carries it: written when a run or gc first takes the store's lock (a store
made before the marker existed gets it then, as format 1: its layout is format 1). Every command that reads a store
(``run``, ``gc``, ``status``, ``plan``, ``show``, ``trace``) refuses one whose format is higher than
``STORE_FORMAT``, naming the arcflow that wrote it, before it reads anything else: an older arcflow must not
misread, or write into, a layout it does not know. A store without the marker reads as format 1.
"""

from __future__ import annotations

import json
from typing import Any

from flows.errors import StoreLockedError

STORE_FORMAT = 1  # the layout version this arcflow writes; a store of a higher one is refused
STORE_INFO = "store.json"


class StoreFormatError(StoreLockedError):
    """The store was written by a newer arcflow. A ``StoreLockedError`` so every command that takes the lock
    reports it the same way; ``final``: waiting (``--wait``) cannot help."""

    final = True


def store_info() -> bytes:
    """The marker this arcflow writes."""
    return json.dumps({"format": STORE_FORMAT, "arcflow": arcflow_version()}).encode()


def check_format(info: dict[str, Any] | None, location: str) -> None:
    """Raise ``StoreFormatError`` when the marker ``info`` (None: none) is of a newer layout than this arcflow's."""
    info = info or {}
    try:
        found = int(info.get("format", 0))
    except (TypeError, ValueError):
        found = STORE_FORMAT + 1  # not a format this arcflow ever wrote
    if found > STORE_FORMAT:
        raise StoreFormatError(
            f"the store {location} was written by a newer arcflow ({info.get('arcflow', '?')}, store format "
            f"{info.get('format')}; this arcflow {arcflow_version()} reads format {STORE_FORMAT}); upgrade arcflow "
            f"(pip install -U arcflow, or pull this checkout), or point `workdir:` at another store"
        )


def arcflow_version() -> str:
    try:
        from importlib.metadata import version

        return version("arcflow")
    except Exception:  # noqa: BLE001 - an uninstalled checkout
        return "unknown"
