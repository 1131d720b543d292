"""Object-store paths (``s3://bucket/key``, any fsspec URL): telling them from local paths, and whole-object I/O.

Every write here is one complete object: the bytes are PUT in one request (or one multipart upload that becomes
visible only when it completes), so a reader sees the whole object or none, never a prefix. That is the
object-store counterpart of ``data_pipes.io.atomic`` (temporary file, fsync, rename) and needs no temporary name.

A failed request (a dropped connection, a throttled PUT) is retried by the client library itself (botocore's retry
policy under s3fs) and then here, a few more times with a growing pause, before the error is raised. The
filesystem of a URL is configured the fsspec way: ``AWS_*`` environment variables and ``~/.aws`` for S3 (including
``AWS_ENDPOINT_URL`` for an S3-compatible server), or ``FSSPEC_<PROTOCOL>_<OPTION>`` variables for any protocol.

**Time limits.** An endpoint that accepts connections but never answers must not hang a command. On S3 each request
gets a connect timeout (``S3_CONNECT_TIMEOUT_S``) and a read timeout (``S3_READ_TIMEOUT_S``: the server's silence
once a request is sent in full; aiohttp starts it only after the body is written, so a long upload is never cut by
it), botocore makes ``S3_MAX_ATTEMPTS`` attempts and s3fs ``S3FS_RETRIES``; a timeout that got through those is not
retried again here. Each is a default: ``FSSPEC_S3_CONFIG_KWARGS='{"read_timeout": 300}'`` (or the ``s3`` section
of fsspec's config) and ``AWS_MAX_ATTEMPTS`` / ``AWS_RETRY_MODE`` win. A server that stops answering in the middle
of a run therefore fails an operation after about ``2 x 3 x 60`` s. The reachability checks made before anything
starts (the store's, a source's listing) are bounded in all by ``ARCFLOW_REMOTE_CHECK_S`` (default 20 s,
``within``) and name the endpoint they tried (``endpoint_of``); ``RemoteAccessError`` is a source's such error.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
ATTEMPTS = 4  # on top of the client library's own retries
PAUSE_S = 0.5
CHECK_S = 20.0  # default of ARCFLOW_REMOTE_CHECK_S: the whole of a reachability check, in seconds
S3_CONNECT_TIMEOUT_S = 10
S3_READ_TIMEOUT_S = 60  # botocore's own default (s3fs lowers it to 15)
S3_MAX_ATTEMPTS = 3  # botocore's attempts per request (standard retry mode)
S3FS_RETRIES = 2  # s3fs's attempts around botocore's (its default 5 made 25 attempts per request)


class RemoteAccessError(OSError):
    """An object store a source names cannot be used: no answer, a refused connection, refused credentials."""


def is_url(path: str) -> bool:
    """True for a remote fsspec URL (``s3://...``, ``gs://...``, ``memory://...``); ``file://`` counts as local."""
    head, sep, _ = path.partition("://")
    return bool(sep) and head.isidentifier() and head != "file"


def local_path(path: str) -> str:
    """``file:///x`` as ``/x``; any other path unchanged."""
    return path[len("file://") :] if path.startswith("file://") else path


def filesystem(url: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path within it)`` of ``url``. The instance is fsspec's cached one for the same
    options; listings are never cached (another process may have written since)."""
    import fsspec.core

    head = url.partition("://")[0]
    fs, path = fsspec.core.url_to_fs(url, **(_s3_options() if head in ("s3", "s3a") else {}))
    if head in ("s3", "s3a"):
        fs.retries = S3FS_RETRIES
    return fs, path.rstrip("/")


def _s3_options() -> dict[str, Any]:
    """The time limits and attempts of the module doc, under whatever the user configured (which wins)."""
    import fsspec.config

    user = dict(fsspec.config.conf.get("s3", {}).get("config_kwargs") or {})
    ours: dict[str, Any] = {"connect_timeout": S3_CONNECT_TIMEOUT_S, "read_timeout": S3_READ_TIMEOUT_S}
    if not (os.environ.get("AWS_MAX_ATTEMPTS") or os.environ.get("AWS_RETRY_MODE")):
        ours["retries"] = {"mode": "standard", "max_attempts": S3_MAX_ATTEMPTS}
    return {"config_kwargs": {**ours, **user}}


def check_seconds() -> float:
    """How long a reachability check may take in all (``ARCFLOW_REMOTE_CHECK_S``, default 20)."""
    try:
        return max(0.1, float(os.environ.get("ARCFLOW_REMOTE_CHECK_S") or CHECK_S))
    except ValueError:
        return CHECK_S


def within(seconds: float, fn: Callable[[], T], what: str) -> T:
    """``fn()``, or ``TimeoutError`` once ``seconds`` have passed without it returning. It runs in a daemon thread,
    left to end on its client's own time limits: a silent endpoint can then hold neither a command nor its exit."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as it is
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"arcflow-check {what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"{what}: no answer within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def endpoint_of(fs: Any) -> str:
    """The endpoint a filesystem speaks to, for error messages."""
    client = getattr(fs, "client_kwargs", None) or {}
    found = getattr(fs, "endpoint_url", None) or client.get("endpoint_url")
    found = found or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if found:
        return str(found)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return "AWS's S3 endpoint" if protocol in ("s3", "s3a") else f"the {protocol} service"


def access_hint(fs: Any) -> str:
    """What to check when an object store refuses a connection or does not answer."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("s3", "s3a"):
        return "check the endpoint (AWS_ENDPOINT_URL for an S3-compatible server), that it is up, and the network"
    return f"check the {protocol} filesystem's options (FSSPEC_{protocol.upper()}_*) and the network"


def with_retries(what: str, fn: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """``fn()``, retried on transient errors (connection drops, timeouts, 5xx) with a growing pause. A missing
    object, a refused permission or a failed precondition is raised at once: retrying cannot change it."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - each client library raises its own classes for a dropped link
            if attempt == attempts or not _transient(exc):
                raise
            time.sleep(PAUSE_S * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _transient(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc} {exc.__cause__!r}".lower()
    if "precondition" in text or "nosuchbucket" in text or "accessdenied" in text:
        return False
    if "timeout" in type(exc).__name__.lower():  # the client library already retried it (module doc)
        return False
    return True


def put_bytes(fs: Any, path: str, data: bytes) -> None:
    """Write ``data`` as the whole object ``path`` (one PUT; retried)."""
    with_retries(f"PUT {path}", lambda: fs.pipe_file(path, data))


def put_file(fs: Any, local: str, path: str) -> None:
    """Upload the local file ``local`` as the whole object ``path`` (retried). Small files go in one PUT; large
    ones as a multipart upload, which the store shows only once it completes."""
    if os.path.getsize(local) <= 32 * 1024 * 1024:
        with open(local, "rb") as fh:
            data = fh.read()
        put_bytes(fs, path, data)
        return
    with_retries(f"PUT {path}", lambda: fs.put_file(local, path))


def get_bytes(fs: Any, path: str) -> bytes:
    """The whole object ``path`` (retried); ``FileNotFoundError`` when there is none."""
    return with_retries(f"GET {path}", lambda: fs.cat_file(path))


def get_file(fs: Any, path: str, local: str) -> None:
    """Download ``path`` to the local file ``local`` atomically (temporary name, rename)."""
    from data_pipes.io.atomic import atomic_path

    with atomic_path(local) as tmp:
        with_retries(f"GET {path}", lambda: fs.get_file(path, tmp))


def listing(fs: Any, path: str) -> dict[str, int]:
    """``{relative path: size}`` of every object under ``path`` (recursively), fresh from the server."""
    fs.invalidate_cache(path)
    try:
        found = with_retries(f"LIST {path}", lambda: fs.find(path, detail=True))
    except FileNotFoundError:
        return {}
    prefix = path.rstrip("/") + "/"
    out = {}
    for name, info in found.items():
        name = name.rstrip("/")
        if info.get("type") == "directory" or not name.startswith(prefix):
            continue
        out[name[len(prefix) :]] = int(info.get("size") or 0)
    return out


# ---- sources: input files named by URL ---------------------------------------------------------------------------
_ETAGS: dict[str, str] = {}  # URL -> the content tag its listing gave (filled by ``expand_url``)


def _url_of(fs: Any, path: str) -> str:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return f"{protocol}://{path}"


def _tag(info: dict[str, Any]) -> str:
    tag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("checksum") or ""
    return str(tag).strip('"')


def expand_url(pattern: str) -> list[tuple[str, int]]:
    """``(URL, size)`` of every object a URL pattern names: one object, every object under a prefix (hidden
    names skipped, as locally), or a glob (``**`` spans folders); sorted by URL. Empty when nothing matches.
    ``RemoteAccessError`` (one line: the URL, the endpoint, what to check) when the object store refuses the
    connection or the credentials, or does not answer within ``ARCFLOW_REMOTE_CHECK_S`` seconds."""
    fs, path = filesystem(pattern)
    seconds = check_seconds()
    try:
        try:
            found = within(seconds, lambda: _find(fs, path, pattern), f"listing {pattern}")
        except FileNotFoundError:
            found = {}
        bucket = path.split("/", 1)[0]
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        buckets = bool(protocols & {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl"})
        if (
            not found
            and buckets
            and not within(seconds, lambda: fs.exists(bucket), f"the bucket of {pattern}")
        ):
            raise RemoteAccessError(
                f"{pattern}: the bucket {bucket!r} does not exist at {endpoint_of(fs)} (or these credentials "
                f"cannot see it); fix the path, or create the bucket"
            )
    except RemoteAccessError:
        raise
    except TimeoutError:
        raise RemoteAccessError(
            f"{pattern}: the object store at {endpoint_of(fs)} did not answer within {seconds:g} s; "
            f"{access_hint(fs)} (ARCFLOW_REMOTE_CHECK_S=SECONDS waits longer)"
        ) from None
    except PermissionError as exc:
        raise RemoteAccessError(
            f"{pattern}: the object store at {endpoint_of(fs)} refused these credentials ({exc}); check "
            f"AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE (or the fsspec options of this protocol), "
            f"and that they may list this bucket"
        ) from None
    except Exception as exc:  # noqa: BLE001 - each client library names a refused connection its own way
        raise RemoteAccessError(
            f"{pattern}: the object store cannot be reached: {type(exc).__name__}: {exc} (endpoint "
            f"{endpoint_of(fs)}); {access_hint(fs)}"
        ) from None
    out = []
    for name, info in sorted(found.items()):
        if info.get("type") == "directory" or any(p.startswith(".") for p in name.split("/")[1:]):
            continue
        url = _url_of(fs, name)
        if tag := _tag(info):
            _ETAGS[url] = f"{tag}:{int(info.get('size') or 0)}"
        out.append((url, int(info.get("size") or 0)))
    return out


def _find(fs: Any, path: str, pattern: str) -> dict[str, dict[str, Any]]:
    """``{path: info}`` of what a pattern names (``expand_url``); ``FileNotFoundError`` when nothing is there.
    One attempt of each request here: the client library has retried it (module doc)."""
    import glob as globmod

    fs.invalidate_cache()
    if globmod.has_magic(path):
        return with_retries(f"LIST {pattern}", lambda: fs.glob(path, detail=True), attempts=1)
    info = with_retries(f"HEAD {pattern}", lambda: fs.info(path), attempts=1)
    if info.get("type") == "directory":
        return with_retries(f"LIST {pattern}", lambda: fs.find(path, detail=True), attempts=1)
    return {path: info}


def url_digest(url: str) -> str:
    """What a source's fingerprint records for an object: its content tag and size (S3's ETag is the MD5 of
    the bytes for a single-part upload, of the parts' MD5s for a multipart one), from the listing when it gave
    one, else a HEAD. Reading every byte of a corpus at plan time would cost a full download; the tag changes
    whenever the bytes do (the same bytes uploaded in other parts get a new tag: a recompute, never a wrong
    reuse)."""
    if url in _ETAGS:
        return "etag:" + _ETAGS[url]
    fs, path = filesystem(url)
    info = with_retries(f"HEAD {url}", lambda: fs.info(path))
    return f"etag:{_tag(info) or 'none'}:{int(info.get('size') or 0)}"


def url_size(url: str) -> int:
    fs, path = filesystem(url)
    return int(with_retries(f"HEAD {url}", lambda: fs.size(path)))


def is_url_dir(url: str) -> bool:
    fs, path = filesystem(url)
    return bool(with_retries(f"HEAD {url}", lambda: fs.isdir(path)))


def open_url(url: str) -> Any:
    """A binary file object reading the object ``url`` (ranged GETs as it is read)."""
    fs, path = filesystem(url)
    return with_retries(f"GET {url}", lambda: fs.open(path, "rb"))
