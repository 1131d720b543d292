"""Find, before anything runs, every datatrove asset a step would fetch on first use, without fetching anything.

Some datatrove steps download lazily: `LanguageFilter` fetches fastText's lid.176 (or GlotLID) on its first
document, `FastTextClassifierFilter` its model, `C4BadWordsFilter` the word list of the document's language. The
`datatrove` kind refuses every download (``datatrove_resolve.no_downloads``), so such a step would fail its node at
run time. ``missing_assets`` finds that at validate instead, naming each asset that is missing: while datatrove's
``cached_asset_path_or_download`` is replaced by a function that only looks in datatrove's asset cache and stops the
calling code there, before any model is read,

1. the step is run on one probe document (the asset its own method asks for first), and
2. every object the step holds (its attributes, and theirs, in lists and mappings too) whose class calls that
   function has each of its properties and argument-free methods that call it run once: a step holding several
   components (a language-ID model and a quality classifier, say) has each component's asset found, whichever the
   probe document reaches first.

Nothing is downloaded and no model is loaded; the only effect is the cache folder datatrove itself would create.
Steps whose code (nor the code of what they hold) never calls the function are not run.

Limits: one method that asks for two assets one after the other is seen up to its first (the second is still caught
at run time), since going past the first would load it; an asset chosen per document (`C4BadWordsFilter`: the
document's language) is checked for the probe document's choice, the step's default (`default_language`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

ASSET_FUNCTION = "cached_asset_path_or_download"
MAX_ITEMS = 64  # of one list, tuple or mapping a step holds, looked into for components that fetch assets
PROBE_TEXT = (
    "This sentence is here so that arcflow can check which files the step reads on its first document. "
    "It has several words, and it ends with a full stop."
)


@dataclass(frozen=True)
class Asset:
    """One asset a step asked for: where datatrove fetches it from and the file it keeps it in; for a local
    file (``local``: a plain path or ``file://`` URL, read in place), that file."""

    remote: str
    local_path: str
    local: bool = False
    reader: str = ""  # the module of the code that asked for it (``datatrove.utils.lid``)
    via: str = ""  # how the step reaches it, when not through the probe document (``self.lid.model``)

    @property
    def cached(self) -> bool:
        # datatrove's own test (``safely_create_file``): the `.completed` marker beside the file
        return os.path.exists(self.local_path + ".completed")

    @property
    def problem(self) -> str | None:
        """Why a local file cannot be read (``does not exist``, or not a fastText model for a fastText reader), or
        why a remote asset's file in the cache cannot serve (no ``.completed`` marker, or not a fastText model for
        a fastText reader); None otherwise (a remote asset simply not cached has no problem but is not
        ``available``)."""
        from data_pipes.datatrove_local import cached_asset_problem, local_asset_problem

        if self.local:
            return local_asset_problem(self.local_path, self.reader)
        return cached_asset_problem(self.local_path, self.reader)

    @property
    def available(self) -> bool:
        """A local file that can be read, or a remote asset in datatrove's cache that can serve its reader."""
        return self.problem is None and (self.local or self.cached)


class _AssetRequested(Exception):  # noqa: N818 - a signal that stops the probe, not an error
    def __init__(self, asset: Asset) -> None:
        super().__init__(asset.remote)
        self.asset = asset


@functools.cache
def _calls_asset_function(cls: type) -> bool:
    """True when the source of ``cls`` or of a class it derives from names datatrove's asset function."""
    for klass in cls.__mro__:
        if klass.__module__ in ("builtins", "abc"):
            continue
        try:
            if ASSET_FUNCTION in inspect.getsource(klass):
                return True
        except (OSError, TypeError):  # no source (built in, compiled): nothing to read
            continue
    return False


def _held(step: Any, depth: int = 3) -> Iterator[tuple[str, Any]]:
    """``(attribute path, object)`` for the step and what it holds (attribute values, the items of lists, tuples
    and mappings among them), ``depth`` levels down, each object once; only objects with attributes of their own."""
    seen: set[int] = set()
    todo: list[tuple[str, Any, int]] = [("self", step, 0)]
    while todo:
        where, obj, level = todo.pop(0)
        if id(obj) in seen or not hasattr(obj, "__dict__") or isinstance(obj, type) or inspect.ismodule(obj):
            continue
        if inspect.isroutine(obj):
            continue
        seen.add(id(obj))
        yield where, obj
        if level == depth:
            continue
        try:
            attributes = list(vars(obj).items())
        except TypeError:  # a __dict__ that is not a mapping: nothing to look into
            continue
        for name, value in attributes:
            items = (
                value.items()
                if isinstance(value, dict)
                else enumerate(value)
                if isinstance(value, list | tuple)
                else None
            )
            if items is None:
                todo.append((f"{where}.{name}", value, level + 1))
            else:  # the first items only: a word list held as a list is no place for models
                todo.extend(
                    (f"{where}.{name}[{k!r}]", v, level + 1) for k, v in itertools.islice(items, MAX_ITEMS)
                )


def may_fetch_assets(step: Any) -> bool:
    """True when the step's class, or the class of something it holds (``_held``), calls the asset function."""
    return any(_calls_asset_function(type(obj)) for _, obj in _held(step))


@functools.cache
def _names_asset_function(fn: Any) -> bool:
    try:
        return ASSET_FUNCTION in inspect.getsource(fn)
    except (OSError, TypeError):
        return False


def _accessors(cls: type) -> list[tuple[str, bool]]:
    """``(name, is_property)`` for the properties and argument-free methods of ``cls`` (and its bases) whose own
    code calls the asset function; dunder methods are left out."""
    out: dict[str, bool] = {}
    seen: set[str] = set()  # a name a subclass defines hides its bases' member of that name
    for klass in cls.__mro__:
        if klass.__module__ in ("builtins", "abc"):
            continue
        for name, member in vars(klass).items():
            if name in seen or (name.startswith("__") and name.endswith("__")):
                continue
            seen.add(name)
            if isinstance(member, property | functools.cached_property):
                fn = member.fget if isinstance(member, property) else member.func
                if fn is not None and _names_asset_function(fn):
                    out[name] = True
            elif inspect.isfunction(member) and _names_asset_function(member):
                params = list(inspect.signature(member).parameters.values())[1:]
                if all(
                    p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params
                ):
                    out[name] = False
    return list(out.items())


@contextmanager
def _recording_assets() -> Iterator[None]:
    """While inside: datatrove's asset function, in ``datatrove.io`` and in every loaded module that imported it,
    raises ``_AssetRequested`` with the asset instead of returning or fetching it."""
    import datatrove.io as dt_io

    original = getattr(dt_io, ASSET_FUNCTION)

    def record(
        remote_path: str,
        progress: bool = True,
        namespace: str = "default",
        subfolder: str = "default",
        desc: str = "file",
    ) -> str:
        from data_pipes.datatrove_local import local_asset_path

        # a local file is read in place (``datatrove_resolve.no_downloads``), never cached
        local = local_asset_path(remote_path)
        reader = sys._getframe(1).f_globals.get("__name__", "")
        if local is not None:
            raise _AssetRequested(Asset(remote_path, local, local=True, reader=reader))
        # the folder and file name exactly as datatrove's function computes them
        folder = dt_io.cached_assets_path(library_name="datatrove", namespace=namespace, subfolder=subfolder)
        local = os.path.join(str(folder), dt_io.strip_protocol(remote_path).replace("/", "_"))
        raise _AssetRequested(Asset(remote_path, local, reader=reader))

    patched = [m for m in list(sys.modules.values()) if getattr(m, ASSET_FUNCTION, None) is original]
    for module in patched:
        setattr(module, ASSET_FUNCTION, record)
    try:
        yield
    finally:
        for module in patched:
            setattr(module, ASSET_FUNCTION, original)


def _probe(step: Any, role: str) -> None:
    """The step's own method on one document, as the bridge would call it."""
    from datatrove.data import Document

    doc = Document(text=PROBE_TEXT, id="arcflow-asset-probe", metadata={})
    if role == "filter":
        step.filter(doc)
    elif role == "formatter":
        step.format(doc.text)
    elif role == "extractor":
        step.extract(doc.text)
    else:
        list(step.run(iter([doc]), 0, 1))


def _stop_at_asset(call: Any) -> Asset | None:
    """The asset ``call()`` asks for first, or None (it asks for none, or it raised another error first, which
    the run reports)."""
    from data_pipes.datatrove_resolve import AssetNotCached

    try:
        call()
    except _AssetRequested as found:
        return found.asset
    except AssetNotCached:  # something else tried to download: the run says what
        return None
    except Exception:  # noqa: BLE001 - any other failure of the probe is the run's to report, per row
        return None
    return None


def requested_assets(step: Any, role: str) -> list[Asset]:
    """Every asset the step asks for: the one its first document reaches first, then those of each property or
    argument-free method (of the step or of what it holds) that asks for one; each once, in that order.
    Downloads stay impossible throughout and no model is loaded."""
    from data_pipes.datatrove_resolve import _GUARD_LOCK, no_downloads

    if not may_fetch_assets(step):
        return []
    found: dict[tuple[str, str], Asset] = {}
    with _GUARD_LOCK, no_downloads(), _recording_assets():
        first = _stop_at_asset(lambda: _probe(step, role))
        if first is not None:
            found[(first.remote, first.local_path)] = first
        for where, obj in _held(step):
            if not _calls_asset_function(type(obj)):
                continue
            for name, is_property in _accessors(type(obj)):
                call = (lambda o=obj, n=name: getattr(o, n)) if is_property else getattr(obj, name)
                asset = _stop_at_asset(call)
                if asset is not None and (asset.remote, asset.local_path) not in found:
                    via = f"{where}.{name}" + ("" if is_property else "()")
                    found[(asset.remote, asset.local_path)] = dataclasses.replace(asset, via=via)
    return list(found.values())


def missing_assets(step: Any, role: str) -> list[Asset]:
    """Each asset the step would fetch (``requested_assets``) that is not in datatrove's cache or cannot serve from
    it (``Asset.problem``: no ``.completed`` marker, not a fastText model), or, for a local file, that cannot be
    read, in the order found."""
    return [a for a in requested_assets(step, role) if not a.available]
