"""The demo corpus's pydoc pages, rendered so that the same installation always gives the same bytes.

A pydoc page shows a module's live data, so rendering it inside whatever process runs a shard (a Dask worker that has
imported half the project, the CLI, a deployment's worker) would print that process's state: warning registries,
logging levels, caches, which other modules were imported first, the time zone, the hash seed's set orders. The
pages are therefore rendered by ``pydoc_child`` in a fresh ``python -I`` interpreter (no user site, no
``PYTHON*`` variables, no current folder on ``sys.path``) with a fixed environment, each module in its own fork of
that clean process. What remains process-specific is masked here: object addresses and handles, the environment's
contents, and the installation's folders (``$stdlib/json/__init__.py``), so pages do not carry this machine's paths.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from functools import cache

from data_pipes.io import pydoc_child
from data_pipes.io.demo_items import DemoItem, demo_good, demo_quarantined

# The renderer's whole environment: a fixed hash seed (set and dict orders of strings), time zone and locale.
CLEAN_ENV = {
    "PYTHONHASHSEED": "0",
    "TZ": "UTC",
    "LC_ALL": "C.UTF-8",
    "LANG": "C.UTF-8",
    "PATH": "/usr/bin:/bin",
    "HOME": "/nonexistent",
}
_ADDRESS = re.compile(r"\b(at|handle)((?:\s|&nbsp;)+)(?:0x)?[0-9a-fA-F]{6,}\b")
_ENVIRON = re.compile(r"\benviron\(\{.*?\}\)", re.DOTALL)
_SYSTEM_PREFIXES = frozenset({"", "/", "/usr", "/usr/local"})


@cache
def install_folders() -> tuple[tuple[str, str], ...]:
    """(folder, placeholder) pairs of this installation, longest folder first: the standard library, the
    site-packages folders and the prefixes (system-wide ones like ``/usr`` are left alone)."""
    paths = sysconfig.get_paths()
    named = [
        (paths.get("stdlib", ""), "$stdlib"),
        (paths.get("platstdlib", ""), "$platstdlib"),
        (paths.get("purelib", ""), "$purelib"),
        (paths.get("platlib", ""), "$platlib"),
        (sys.prefix, "$prefix"),
        (sys.exec_prefix, "$exec_prefix"),
        (sys.base_prefix, "$base_prefix"),
        (sys.base_exec_prefix, "$base_exec_prefix"),
    ]
    seen: dict[str, str] = {}
    for folder, name in named:
        folder = os.path.normpath(folder) if folder else ""
        if folder not in _SYSTEM_PREFIXES:
            seen.setdefault(folder, name)
    return tuple(sorted(seen.items(), key=lambda kv: -len(kv[0])))


def mask_process_state(page: str) -> str:
    """Replace addresses, handles, environment contents and installation folders by fixed placeholders."""
    page = _ENVIRON.sub("environ({...})", _ADDRESS.sub(r"\1\g<2>0x0", page))
    for folder, name in install_folders():
        page = page.replace(folder, name)
    return page


def module_path(file: str) -> str:
    """A module's file as a path inside the installation (``json/__init__.py``), never this machine's."""
    if not file:
        return ""
    stdlib = os.path.normpath(sysconfig.get_paths()["stdlib"])
    norm = os.path.normpath(file)
    if norm.startswith(stdlib + os.sep):
        return os.path.relpath(norm, stdlib).replace(os.sep, "/")
    return mask_process_state(norm)


def render_pydoc_pages(items: list[DemoItem], timeout_s: float = 3600.0) -> list[dict[str, str]]:
    """One record per ``pydoc_html`` item, in order, all rendered by one clean interpreter."""
    if not items:
        return []
    # the loader's search path only decides whether the interpreter can start (a Python built with a shared
    # libpython outside the default folders); it is not module state a page could show
    loader = {k: os.environ[k] for k in ("LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH") if k in os.environ}
    proc = subprocess.run(
        [sys.executable, "-I", pydoc_child.__file__],
        input=json.dumps([item.key for item in items]),
        capture_output=True,
        text=True,
        env={**CLEAN_ENV, **loader},
        cwd="/",
        timeout=timeout_s,
        check=False,
    )
    results: dict[str, dict[str, str]] = {}
    for line in proc.stdout.splitlines():
        try:
            entry = json.loads(line)
            results[entry["key"]] = entry
        except (ValueError, KeyError, TypeError):
            continue
    tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
    return [_record(item, results.get(item.key), tail[0]) for item in items]


def _record(item: DemoItem, entry: dict[str, str] | None, failure: str) -> dict[str, str]:
    url = f"pydoc://{item.key}"
    if entry is None:
        return demo_quarantined(item, url, "pydoc_error", f"the renderer stopped before this page: {failure}")
    if "error" in entry:
        return demo_quarantined(item, url, entry["error"], entry.get("message", ""))
    meta = {"module": item.key, "path": module_path(entry.get("file", "")), "format": "html"}
    return demo_good(item, mask_process_state(entry["page"]), url, meta)
