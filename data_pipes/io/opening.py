"""Opening input files (plain or gzipped) and naming the ways reading them can fail.

A truncated gzip stream surfaces as ``EOFError`` from the gzip module, a damaged one as ``gzip.BadGzipFile``
or ``zlib.error``; every other failure to read is an ``OSError``. The readers turn these into quarantined
records with the error classes below instead of letting them escape.
"""

from __future__ import annotations

import gzip
import zlib
from typing import BinaryIO

from data_pipes.io.paths import is_gzip_path
from data_pipes.io.remote import is_url, open_url

READ_ERRORS: tuple[type[BaseException], ...] = (EOFError, OSError, zlib.error)


def open_binary(path: str) -> BinaryIO:
    """Open ``path`` for binary reading, decompressing it when its name ends in ``.gz``."""
    if is_url(path):  # an object store (s3://...): read through fsspec
        raw = open_url(path)
        return gzip.GzipFile(fileobj=raw, mode="rb") if is_gzip_path(path) else raw  # type: ignore[return-value]
    if is_gzip_path(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def read_error_class(exc: BaseException) -> str:
    """The quarantine error class for an exception raised while reading a file."""
    if isinstance(exc, EOFError):
        return "gzip_truncated"
    if isinstance(exc, gzip.BadGzipFile | zlib.error):
        return "gzip_corrupt"
    return "read_error"


def read_error_message(exc: BaseException, path: str, where: str = "") -> str:
    """``"<class>: <exception text> (file <path>[, <where>])"``, the quarantine error for a failed read."""
    detail = str(exc) or type(exc).__name__
    suffix = f", {where}" if where else ""
    return f"{read_error_class(exc)}: {detail} (file {path}{suffix})"
