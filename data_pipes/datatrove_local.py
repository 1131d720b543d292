"""Local files named as a datatrove step's assets: used in place, checked, and their bytes fingerprinted.

A datatrove step that fetches a model or a word list (``FastTextClassifierFilter``'s ``model_url``, say) takes a
URL or a local path. datatrove would copy a local file into its asset cache (and keep using that copy after the
file changes); the ``datatrove`` kind instead reads a local file where it is, and never copies or downloads
(``datatrove_resolve.no_downloads``). Local means what datatrove's file system layer (fsspec) reads from this
machine: a plain path (relative ones from the working directory, ``~`` expanded) or a ``file://`` URL. Anything
else (``https://``, ``hf://``, ``s3://``, chained URLs) is remote and must be in datatrove's asset cache.

``local_asset_path`` says whether a path is local and where it points, ``local_file_problem`` why it cannot be
read, ``local_asset_problem`` also whether a fastText reader got a file that is not a fastText model (4 bytes read),
``cached_asset_problem`` the same for a remote asset's file in datatrove's cache (and a file there without its
``.completed`` marker), ``relative_hint`` where a relative one was looked for, and ``local_file_digests`` the sha256
of every existing file the step's arguments name (bare file names included), for the node's fingerprint (a
retrained model at the same path recomputes the node).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

LOCAL_PROTOCOLS = (None, "file", "local")
# datatrove's modules that load the asset they ask for with ``fasttext.load_model`` (FastTextClassifierFilter,
# LanguageFilter's FT176LID / GlotLID): a local file they read must be a fastText model
FASTTEXT_READERS = frozenset({"datatrove.pipeline.filters.fasttext_filter", "datatrove.utils.lid"})
FASTTEXT_MAGIC = (793712314).to_bytes(
    4, "little"
)  # fastText's file header (.bin and .ftz), before its version
REFETCH = "delete it and its .completed marker and fetch it again on a machine with network"
_digests: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256: plan reads each file once


def local_asset_path(remote_path: str) -> str | None:
    """The absolute path of the local file a plain path or ``file://`` URL names, as fsspec (which datatrove reads
    through) resolves it; None for anything remote."""
    from fsspec.core import split_protocol
    from fsspec.implementations.local import LocalFileSystem

    if not isinstance(remote_path, str) or not remote_path:
        return None
    protocol, _ = split_protocol(remote_path)
    if protocol not in LOCAL_PROTOCOLS:
        return None
    return str(LocalFileSystem._strip_protocol(remote_path))


def local_file_problem(path: str) -> str | None:
    """Why the local file ``path`` cannot be read (it does not exist, is a folder, is not readable), or None."""
    if not os.path.exists(path):
        return "does not exist"
    if not os.path.isfile(path):
        return "is not a file"
    if not os.access(path, os.R_OK):
        return "is not readable"
    return None


def local_asset_problem(path: str, reader: str = "") -> str | None:
    """Why the local file ``path`` cannot serve the code in module ``reader`` that asked for it: it cannot be
    read, or (a fastText reader, ``FASTTEXT_READERS``) it does not start with fastText's header. Reads 4 bytes at
    most; no model is loaded."""
    problem = local_file_problem(path)
    if problem is not None or reader not in FASTTEXT_READERS:
        return problem
    problem = fasttext_header_problem(path)
    return (
        None if problem is None else f"{problem}: name a model saved by fastText (`save_model`, .bin or .ftz)"
    )


def fasttext_header_problem(path: str) -> str | None:
    """``is not a fastText model ...`` when the readable file ``path`` does not start with fastText's header (4
    bytes read; no model loaded), else None."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != FASTTEXT_MAGIC:
        return "is not a fastText model (it does not start with fastText's file header)"
    return None


def cached_asset_problem(path: str, reader: str = "") -> str | None:
    """Why the file ``path`` in datatrove's asset cache cannot serve the code in module ``reader``, or None (it is
    usable, or it is simply absent: the caller says "not in datatrove's asset cache"): present without datatrove's
    ``.completed`` marker (datatrove would fetch it again), or, for a fastText reader (``FASTTEXT_READERS``), not
    starting with fastText's header. Reads 4 bytes at most."""
    marker = os.path.exists(path + ".completed")
    if not os.path.exists(path):
        return (
            f"is missing from the cache, though its .completed marker is there; {REFETCH}" if marker else None
        )
    if not marker:
        return (
            "is present but has no .completed marker (an interrupted download?); delete it and fetch it again on "
            "a machine with network, or, if the file is whole, create the marker beside it"
        )
    if reader in FASTTEXT_READERS and local_file_problem(path) is None:
        problem = fasttext_header_problem(path)
        if problem is not None:
            return f"{problem}; {REFETCH}"
    return None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def relative_hint(remote_path: str) -> str:
    """For a relative path (``model.bin``, ``models/m.bin``): where it was looked for and what to write instead;
    ``""`` for an absolute path, ``~`` or a URL."""
    from fsspec.core import split_protocol

    protocol, rest = split_protocol(remote_path)
    if protocol not in LOCAL_PROTOCOLS or os.path.isabs(rest) or rest.startswith("~"):
        return ""
    return (
        f" (a relative path is taken from the working directory {os.getcwd()}, as datatrove does, not from "
        "pipeline.yaml's folder; give an absolute path)"
    )


def local_file_digests(args: Mapping[str, Any]) -> dict[str, str]:
    """``{value: sha256}`` for every string in ``args`` (nested too) that names an existing regular file as
    datatrove would read it (``local_asset_path``: a bare name such as ``model.bin`` or a relative path from the
    working directory, an absolute path, ``~``, a ``file://`` URL): a model or word list the step may read. A
    string that happens to name a file the step does not read only makes the fingerprint stricter. Keyed by the
    value as written, so the fingerprint holds no other path than the params do."""
    out: dict[str, str] = {}
    for value in _strings(args):
        if value in out:
            continue
        path = local_asset_path(value)
        if path is None or local_file_problem(path) is not None:
            continue
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        if key not in _digests:
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            _digests[key] = digest.hexdigest()
        out[value] = _digests[key]
    return out
