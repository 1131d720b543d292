"""Render pydoc HTML pages in a clean interpreter: the program ``demo_pydoc`` runs as ``python -I pydoc_child.py``.

It reads a JSON list of module names on stdin and writes one JSON object per module on stdout, in order:
``{"key", "page", "file"}``, or ``{"key", "error", "message"}`` when the import or pydoc fails. Each module is
imported and rendered in a child forked from this process before it imported anything but pydoc, so a page shows
only what importing that one module into a fresh interpreter gives: not the state that other imports, the calling
process (a Dask worker, the CLI, a deployment's worker) or earlier pages left behind (warning registries, counters,
logging levels, caches). The caller fixes the environment (hash seed, time zone, locale); this file imports only
the standard library.
"""

from __future__ import annotations

import importlib
import json
import os
import pydoc
import select
import signal
import sys
import time
import warnings

TIMEOUT_S = 120.0


def render(name: str) -> dict[str, str]:
    """Import ``name`` and render its pydoc page (in the forked child)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated modules warn on import
            module = importlib.import_module(name)
    except Exception as exc:  # any failure at import time is this item's problem, not the run's
        return {"key": name, "error": "import_error", "message": f"{type(exc).__name__}: {exc}"}
    # the warnings machinery's bookkeeping (a counter of filter changes), not the module's content
    module.__dict__.pop("__warningregistry__", None)
    try:
        doc = pydoc.HTMLDoc()
        page = doc.page(pydoc.describe(module), doc.document(module, name))
    except Exception as exc:  # pydoc walks arbitrary objects; a broken one must not stop the corpus
        return {"key": name, "error": "pydoc_error", "message": f"{type(exc).__name__}: {exc}"}
    return {"key": name, "page": page, "file": getattr(module, "__file__", None) or ""}


def _child(name: str, fd: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # a module that prints on import must not corrupt the result stream
    os.dup2(devnull, 2)
    try:
        data = json.dumps(render(name)).encode()
    except BaseException as exc:  # noqa: BLE001 - SystemExit from an import is still one item's failure
        data = json.dumps({"key": name, "error": "pydoc_error", "message": f"{type(exc).__name__}: {exc}"})
        data = data.encode()
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def render_isolated(name: str, timeout_s: float = TIMEOUT_S) -> dict[str, str]:
    """``render(name)`` in a forked child, killed after ``timeout_s``."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            _child(name, w)
        finally:
            os._exit(0)
    os.close(w)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return {"key": name, "error": "pydoc_timeout", "message": f"no page after {timeout_s:.0f} s"}
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        return {"key": name, "error": "pydoc_error", "message": f"the renderer died (wait status {status})"}
    return json.loads(b"".join(chunks))


def main() -> None:
    names = json.load(sys.stdin)
    for name in names:
        sys.stdout.write(json.dumps(render_isolated(name)) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
