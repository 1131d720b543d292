"""Find, before anything runs, the datatrove asset a step would fetch on first use, without fetching anything.

Some datatrove steps download lazily: `LanguageFilter` fetches fastText's lid.176 (or GlotLID) on its first
document, `FastTextClassifierFilter` its model, `C4BadWordsFilter` the word list of the document's language. The
`datatrove` kind refuses every download (``datatrove_resolve.no_downloads``), so such a step would fail its node at
run time. ``missing_asset`` finds that at validate instead: when the step's code (its class, or the class of one
of its attributes, such as LanguageFilter's ``model``) calls datatrove's ``cached_asset_path_or_download``, the
step is run on one probe document while that function is replaced by one that only looks in datatrove's asset
cache and stops the step there, before any model is read. Nothing is downloaded and no model is loaded; the only
effect is the cache folder datatrove itself would create. Steps whose code never calls it are not run.

Limits: the probe stops at the step's first asset, so a step needing several is checked for the first one only
(the rest are still caught at run time); an asset chosen per document (`C4BadWordsFilter`: the document's
language) is checked for the probe document's choice, the step's default (`default_language`).
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

ASSET_FUNCTION = "cached_asset_path_or_download"
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

    @property
    def cached(self) -> bool:
        # datatrove's own test (``safely_create_file``): the `.completed` marker beside the file
        return os.path.exists(self.local_path + ".completed")

    @property
    def problem(self) -> str | None:
        """Why a local file cannot be read (``does not exist``, or not a fastText model for a fastText reader), or
        None."""
        from data_pipes.datatrove_local import local_asset_problem

        return local_asset_problem(self.local_path, self.reader) if self.local else None

    @property
    def available(self) -> bool:
        """A local file that can be read, or a remote asset in datatrove's cache."""
        return self.problem is None if self.local else self.cached


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


def may_fetch_assets(step: Any) -> bool:
    """True when the step's class, or the class of one of its attribute values, calls the asset function."""
    if _calls_asset_function(type(step)):
        return True
    values = vars(step).values() if hasattr(step, "__dict__") else ()
    return any(_calls_asset_function(type(v)) for v in values if hasattr(v, "__dict__"))


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
        if local is not None:
            reader = sys._getframe(1).f_globals.get("__name__", "")
            raise _AssetRequested(Asset(remote_path, local, local=True, reader=reader))
        # the folder and file name exactly as datatrove's function computes them
        folder = dt_io.cached_assets_path(library_name="datatrove", namespace=namespace, subfolder=subfolder)
        local = os.path.join(str(folder), dt_io.strip_protocol(remote_path).replace("/", "_"))
        raise _AssetRequested(Asset(remote_path, local))

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


def first_asset(step: Any, role: str) -> Asset | None:
    """The first asset the step asks for on its first document, or None (it asks for none, or it raised another
    error first, which the run reports). Downloads stay impossible throughout."""
    from data_pipes.datatrove_resolve import _GUARD_LOCK, AssetNotCached, no_downloads

    if not may_fetch_assets(step):
        return None
    with _GUARD_LOCK, no_downloads(), _recording_assets():
        try:
            _probe(step, role)
        except _AssetRequested as found:
            return found.asset
        except AssetNotCached:  # something else tried to download: the run says what
            return None
        except Exception:  # noqa: BLE001 - any other failure of the probe is the run's to report, per row
            return None
    return None


def missing_asset(step: Any, role: str) -> Asset | None:
    """The asset the step would fetch on its first document when it is not in datatrove's cache (or, for a local
    file, when that file cannot be read), else None."""
    asset = first_asset(step, role)
    return asset if asset is not None and not asset.available else None
