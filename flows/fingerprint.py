"""Fingerprints: what a node's output depends on, hashed.

``fingerprint = H(kind, code, params, versions, signature, inputs)`` where

* ``code`` hashes the source of the kind's module and of every project module it imports, transitively (found by
  reading ``import`` statements with ``ast``, limited to the project's own packages), so editing a helper that a
  kind imports invalidates the kind, and editing an unrelated module does not (nor editing the orchestrator's own
  modules, ``flows.*`` and the registry, which decide where and when a kind runs, not what it computes);
* ``params`` is the canonical JSON of the validated params (defaults filled in; paths inside the pipeline's folder
  relative to it, see ``portable_params``);
* ``versions`` are the versions of the packages the kind declares, plus Python, pyarrow and polars (they write the
  shards);
* ``signature`` is extra material the kind supplies (e.g. the commit a git source reads);
* ``inputs`` are the **content hashes** of the inputs' outputs, not their fingerprints: a recomputed input whose
  bytes did not change leaves its consumers' fingerprints unchanged (early cut-off).

Nothing else enters: no process state, no path of the checkout, the install or the store, no time. The same pipeline
gives the same fingerprints in any folder, from the CLI or a deployment's worker, at any worker count.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import platform
import threading
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from data_pipes.ast_parse import parse
from data_pipes.io.atomic import atomic_write_text

PROJECT_PACKAGES = ("flows", "tasks", "data_pipes", "model")
# The orchestrator's own modules decide where and when a kind runs, not what it computes: a kind importing them
# (`@register`, a hashing helper) must not be invalidated by every edit to the core.
NOT_KIND_CODE = ("flows", "tasks.registry", "tasks.shard_worker")


def _is_core(module: str) -> bool:
    return any(module == c or module.startswith(c + ".") for c in NOT_KIND_CODE)


ALWAYS_VERSIONED = ("pyarrow", "polars")


def sha(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@cache
def _module_file(module: str) -> str | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return spec.origin


_file_cache: dict[str, tuple[int, int, str, tuple[str, ...]]] = {}
_disk_cache_loaded = False
_disk_cache_dirty = False


def _disk_cache_path() -> str:
    base = os.environ.get("ARCFLOW_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "arcflow")
    return os.path.join(base, "code_index.json")


def _load_disk_cache() -> None:
    """Parsing every imported module with ``ast`` costs a fresh process about half a second; the results are
    kept on disk keyed by path, size and mtime, and a file whose size or mtime changed is read again."""
    global _disk_cache_loaded
    _disk_cache_loaded = True
    try:
        with open(_disk_cache_path(), encoding="utf-8") as fh:
            for path, (mtime, size, digest, imports) in json.load(fh).items():
                if os.path.exists(
                    path
                ):  # files that are gone (temporary plugins, moved checkouts) are forgotten
                    _file_cache.setdefault(path, (mtime, size, digest, tuple(imports)))
    except (OSError, ValueError, TypeError):
        pass


def save_code_cache() -> None:
    global _disk_cache_dirty
    if not _disk_cache_dirty:
        return
    path = _disk_cache_path()
    try:
        atomic_write_text(path, json.dumps({p: list(v) for p, v in _file_cache.items()}))
        _disk_cache_dirty = False
    except OSError:
        pass  # no writable cache: the next process parses again


def _file_info(path: str, module: str) -> tuple[str, tuple[str, ...]]:
    """(sha256 of the file, project modules it imports), cached on size and mtime."""
    global _disk_cache_dirty
    if not _disk_cache_loaded:
        _load_disk_cache()
    st = os.stat(path)
    cached = _file_cache.get(path)
    if cached and cached[0] == st.st_mtime_ns and cached[1] == st.st_size:
        return cached[2], cached[3]
    with open(path, "rb") as fh:
        source = fh.read()
    digest = hashlib.sha256(source).hexdigest()
    imports: set[str] = set()
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(parse(source, filename=path)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                root = ".".join(base + ([node.module] if node.module else []))
            else:
                root = node.module or ""
            names = [root] + [f"{root}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PROJECT_PACKAGES:
                imports.add(name)
    result = (digest, tuple(sorted(imports)))
    _file_cache[path] = (st.st_mtime_ns, st.st_size, *result)
    _disk_cache_dirty = True
    return result


_code_lock = threading.Lock()


def code_hashes(module: str) -> dict[str, str]:
    """``{module: sha256}`` for ``module`` and every project module it imports, transitively. Parent packages'
    ``__init__`` files are included, since importing a submodule runs them. Serialised: Prefect runs nodes in
    threads, and CPython 3.11's ``ast.parse`` is not safe to call from several threads at once."""
    with _code_lock:
        out = _code_hashes(module)
        save_code_cache()
        return out


def _code_hashes(module: str) -> dict[str, str]:
    out: dict[str, str] = {}
    todo = [module]
    while todo:
        mod = todo.pop()
        if mod in out or (mod != module and _is_core(mod)):
            continue
        path = _module_file(mod)
        if path is None:
            continue  # a name imported *from* a module, not a module itself
        digest, imports = _file_info(path, mod)
        out[mod] = digest
        parts = mod.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(imports)
    return dict(sorted(out.items()))


@cache
def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def versions_for(packages: tuple[str, ...]) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in sorted(set(ALWAYS_VERSIONED) | set(packages)):
        out[name] = package_version(name)
    return out


def portable_params(params: dict[str, Any], path_keys: tuple[str, ...], pipeline_file: str) -> dict[str, Any]:
    """Params as the fingerprint sees them: the kind's path params (made absolute when the pipeline loaded)
    are relative to the pipeline file's folder again when they lie inside it, so the same pipeline checked out in
    two folders has the same fingerprints. Paths outside it stay absolute (the same data on this machine)."""
    if not path_keys:
        return params
    base = os.path.dirname(os.path.abspath(pipeline_file))

    def rel(value: Any) -> Any:
        if not isinstance(value, str) or not os.path.isabs(value):
            return value
        if value == base or value.startswith(base.rstrip(os.sep) + os.sep):
            return os.path.relpath(value, base).replace(os.sep, "/")
        return value

    out = dict(params)
    for key in path_keys:
        value = out.get(key)
        out[key] = [rel(v) for v in value] if isinstance(value, list) else rel(value)
    return out


def node_fingerprint(
    kind: str,
    code: dict[str, str],
    params: dict[str, Any],
    versions: dict[str, str],
    signature: str,
    inputs: list[tuple[str, str]],
    seed: int,
) -> str:
    return sha(
        "arcflow-node-v1",
        kind,
        canonical_json(code),
        canonical_json(params),
        canonical_json(versions),
        signature,
        canonical_json(inputs),
        str(seed),
    )
