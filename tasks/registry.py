"""The one registry that maps ``uses:`` names to node kinds.

Kinds register themselves with ``@register``. Every module of the ``tasks`` package is imported on first listing
(a new kind is a new file, with no list to edit), and third-party packages can add kinds through the
``arcflow.kinds`` entry-point group, so a new kind never needs a change to the core. Looking one kind up imports
only its own module ``tasks/<name>.py`` when that registers it (so a process that runs a few kinds, a Dask worker
or a small pipeline, skips the others' heavy dependencies), else everything.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from importlib.metadata import entry_points

from tasks.base import Kind

NOT_KIND_MODULES = frozenset(
    {"base", "registry", "shard_worker", "doc_map"}
)  # and any module starting with "_"


def _kind_modules() -> list[str]:
    import tasks

    return sorted(
        f"tasks.{m.name}"
        for m in pkgutil.iter_modules(tasks.__path__)
        if m.name not in NOT_KIND_MODULES and not m.name.startswith("_")
    )


_KINDS: dict[str, type[Kind]] = {}
_loaded = False


class UnknownKindError(KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        self.name, self.close = name, close
        super().__init__(f"unknown kind {name!r}; {hint}valid kinds: {', '.join(sorted(known))}")

    def __str__(self) -> str:
        return self.args[0]


def register(cls: type[Kind]) -> type[Kind]:
    """Class decorator: make ``cls`` available as ``uses: cls.name``."""
    existing = _KINDS.get(cls.name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"kind {cls.name!r} registered twice: {existing.__module__} and {cls.__module__}")
    _KINDS[cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _kind_modules():
        importlib.import_module(module)
    for ep in entry_points(group="arcflow.kinds"):
        ep.load()


def kind_names() -> list[str]:
    _load()
    return sorted(_KINDS)


def _load_for(name: str) -> None:
    """Import what ``name`` needs: its own module ``tasks/<name>.py`` when that registers it (a Dask worker then
    imports only the kinds it runs, not every kind's dependencies), else every kind module."""
    if name in _KINDS or _loaded:
        return
    module = f"tasks.{name}"
    if module in _kind_modules():
        importlib.import_module(module)
    if name not in _KINDS:
        _load()


def get_kind(name: str) -> Kind:
    _load_for(name)
    try:
        return _KINDS[name]()
    except KeyError:
        raise UnknownKindError(name, sorted(_KINDS)) from None


def get_kind_class(name: str) -> type[Kind]:
    _load_for(name)
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownKindError(name, sorted(_KINDS)) from None
