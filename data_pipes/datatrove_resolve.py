"""Find, check and fingerprint a datatrove step named by an import path (the `datatrove` kind's `step:`).

``resolve_step("datatrove.pipeline.filters.GopherQualityFilter")`` or ``resolve_step("mypkg.steps:MyFilter")``
returns the class; ``step_role`` says how the bridge runs it (``filter``, ``extractor``, ``formatter``, or
``step``: a user's own per-document ``PipelineStep``); ``check_step`` returns every problem with the step and its
constructor arguments, constructing the step once, so a bad argument fails when the pipeline is validated, not in
a worker, and an asset the step would fetch on its first document that is not in datatrove's cache fails there
too (``datatrove_assets``); ``step_signature`` is what the fingerprint needs beyond the params: the class's qualified name, the
versions of datatrove and of the packages the step declares it needs, and, for a step that is not datatrove's
own, the source of its module and of the modules of its package that it imports (so editing it recomputes).

datatrove is imported lazily: this module imports without it, and a missing datatrove is one clear problem.
Nothing here imports Prefect.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from data_pipes.ast_parse import parse

Role = Literal["filter", "extractor", "formatter", "step"]
ProblemList = list[tuple[tuple[str | int, ...], str]]

INSTALL_HINT = "install it with `pip install -e '.[datatrove]'` (or `pip install datatrove`)"
IMPORTABLE_HINT = (
    "install the package that holds it (`pip install -e PATH`) or add its folder to PYTHONPATH (the Dask workers "
    "inherit it); write the step as `package.module:Class` or `package.module.Class`"
)
# datatrove's own step families that are not per-document transformations: they read or write files, keep
# cross-document state or need other inputs, so the kind cannot map one row to at most one row with them
NOT_PER_DOCUMENT = {
    "datatrove.pipeline.readers": "a reader (arcflow's `files`, `warc` and other sources read data)",
    "datatrove.pipeline.writers": "a writer (arcflow writes every node's shards itself)",
    "datatrove.pipeline.dedup": "a deduplication stage (use `dedup_exact`, `dedup_minhash` or `dedup_semantic`)",
    "datatrove.pipeline.stats": "a statistics step that writes its own files",
    "datatrove.pipeline.tokens": "a tokenization step that writes its own files (use `tokenize`/`pack`)",
    "datatrove.pipeline.decont": "a decontamination stage that needs its own index",
    "datatrove.pipeline.inference": "an inference runner",
}


class StepError(ValueError):
    """A step that cannot be used; the message says what to do."""


class AssetNotCached(StepError):
    """The step asked datatrove to download a model or data file that is not in its asset cache. A setup error,
    not a row error: the node fails with it (arcflow never downloads at run time)."""

    def __init__(self, message: str, remote: str | None = None) -> None:
        super().__init__(message)
        self.remote = remote  # the asset as the step was given it (an `args` value, or the step's default)


class LocalAssetMissing(AssetNotCached):
    """The step asked for a local file (a plain path or ``file://`` URL) that cannot be read: fails the node."""

    def __init__(self, message: str, remote: str) -> None:
        super().__init__(message, remote)  # remote: the path as the step was given it (an `args` value)


ASSET_FUNCTION = "cached_asset_path_or_download"


_GUARD_LOCK = threading.RLock()
_guard_depth = 0
_saved: dict[str, Any] = {}


def not_cached_message(
    remote_path: str, local_path: str, lead: str = "the step needs", reader: str = ""
) -> str:
    """``<lead> <asset>, which is not in datatrove's asset cache`` and how to put it there; for a file there that
    cannot serve (``datatrove_local.cached_asset_problem``: no ``.completed`` marker, not a fastText model for the
    fastText ``reader`` module), what is wrong with it and what to do."""
    from data_pipes.datatrove_local import cached_asset_problem

    problem = cached_asset_problem(local_path, reader)
    if problem is not None:
        return f"{lead} {remote_path!r}, whose file in datatrove's asset cache, {local_path}, {problem}"
    folder, name = os.path.dirname(local_path), os.path.basename(local_path)
    return (
        f"{lead} {remote_path!r}, which is not in datatrove's asset cache; arcflow never downloads at run "
        f"time: on a machine with network, fetch it into {folder} as {name} and create "
        f"{name}.completed beside it (running the step once in datatrove does both), or "
        f"copy that folder here (its root follows HF_ASSETS_CACHE / HF_HOME)"
    )


def _refuse_download(remote_path: str, local_path: str, progress: bool = True) -> None:
    raise AssetNotCached(not_cached_message(remote_path, local_path), remote_path)


def local_missing_message(
    remote_path: str, local_path: str, problem: str, lead: str = "the step needs"
) -> str:
    """``<lead> the local file <path>, which does not exist`` and what to do; for a relative path, that it was
    looked for from the working directory, not pipeline.yaml's folder."""
    from data_pipes.datatrove_local import relative_hint

    shown = repr(remote_path) + ("" if local_path == remote_path else f" ({local_path})")
    return (
        f"{lead} the local file {shown}, which {problem}{relative_hint(remote_path)}; give the path of a "
        "readable file (a plain path, relative to the working directory, or a file:// URL): arcflow reads a "
        "local model or word list where it is"
    )


def _in_place(original: Any) -> Any:
    """datatrove's asset function, but a local path (plain or ``file://``) is returned as is, after checking it
    can be read, instead of being copied into the asset cache; a remote one goes to ``original`` (the cache, or
    the refused download). Outside ``no_downloads`` it is ``original``, for a module that bound it meanwhile."""
    from data_pipes.datatrove_local import local_asset_path, local_asset_problem

    def asset_path(
        remote_path: str,
        progress: bool = True,
        namespace: str = "default",
        subfolder: str = "default",
        desc: str = "file",
    ) -> str:
        local = local_asset_path(remote_path) if _guard_depth else None
        if local is None:
            return original(
                remote_path, progress=progress, namespace=namespace, subfolder=subfolder, desc=desc
            )
        problem = local_asset_problem(local, sys._getframe(1).f_globals.get("__name__", ""))
        if problem is not None:
            raise LocalAssetMissing(local_missing_message(remote_path, local, problem), remote_path)
        return local

    return asset_path


def _rebind(old: Any, new: Any) -> None:
    """Every loaded module's ``cached_asset_path_or_download`` that is ``old`` (datatrove.io's and the steps'
    ``from datatrove.io import ...`` copies) becomes ``new``."""
    for module in list(sys.modules.values()):
        try:
            if vars(module).get(ASSET_FUNCTION) is old:
                setattr(module, ASSET_FUNCTION, new)
        except TypeError:  # not a module with a namespace
            continue


@contextmanager
def no_downloads() -> Iterator[None]:
    """While inside: datatrove's downloader (``datatrove.io.download_file``, which its
    ``cached_asset_path_or_download`` calls for an asset not yet cached) raises ``AssetNotCached`` instead of
    touching the network, and the Hugging Face hub is offline (``HF_HUB_OFFLINE=1``). A cached asset is read as
    usual; a local file (plain path or ``file://`` URL) is read where it is, never copied, and one that cannot
    be read raises ``LocalAssetMissing``. Re-entrant and thread-safe; everything is restored on the way out."""
    global _guard_depth
    try:
        import datatrove.io as dt_io
        from loguru import logger
    except ImportError:  # no datatrove: nothing can download through it
        yield
        return
    with _GUARD_LOCK:
        if _guard_depth == 0:
            _saved["download_file"] = dt_io.download_file
            _saved["env"] = os.environ.get("HF_HUB_OFFLINE")
            dt_io.download_file = _refuse_download
            original = getattr(dt_io, ASSET_FUNCTION)
            _saved["asset_function"] = (original, _in_place(original))
            _rebind(*_saved["asset_function"])
            os.environ["HF_HUB_OFFLINE"] = "1"
            logger.disable("datatrove.io")  # its "Downloading ..." line would be false: nothing is downloaded
            try:  # huggingface_hub reads the variable once, at import
                from huggingface_hub import constants

                _saved["hf_offline"] = constants.HF_HUB_OFFLINE
                constants.HF_HUB_OFFLINE = True
            except (ImportError, AttributeError):
                _saved.pop("hf_offline", None)
        _guard_depth += 1
    try:
        yield
    finally:
        with _GUARD_LOCK:
            _guard_depth -= 1
            if _guard_depth == 0:
                dt_io.download_file = _saved.pop("download_file")
                original, in_place = _saved.pop("asset_function")
                _rebind(in_place, original)
                logger.enable("datatrove.io")
                env = _saved.pop("env")
                if env is None:
                    os.environ.pop("HF_HUB_OFFLINE", None)
                else:
                    os.environ["HF_HUB_OFFLINE"] = env
                if "hf_offline" in _saved:
                    from huggingface_hub import constants

                    constants.HF_HUB_OFFLINE = _saved.pop("hf_offline")


def datatrove_version() -> str:
    try:
        return version("datatrove")
    except PackageNotFoundError:
        return "absent"


def _import_datatrove_base() -> Any:
    try:
        from datatrove.pipeline import base
    except ImportError as exc:
        raise StepError(f"datatrove is not installed ({exc}); {INSTALL_HINT}") from None
    return base


def _module_missing(exc: ModuleNotFoundError, module: str) -> bool:
    """True when ``exc`` says ``module`` itself (or a parent package of it) does not exist, not that something
    the module imports is missing."""
    missing = exc.name or ""
    return bool(missing) and (module == missing or module.startswith(missing + "."))


def _import_module(module: str, path: str) -> Any | None:
    """The module, None when it does not exist, or StepError when it exists but fails to import."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if _module_missing(exc, module):
            return None
        raise StepError(
            f"importing {module!r} (for step {path!r}) failed: {exc}; install what it needs"
            + (f" ({INSTALL_HINT})" if (exc.name or "").startswith("datatrove") else "")
        ) from None
    except Exception as exc:  # a module raising on import: a syntax error, a failing top-level statement
        where = f" ({exc.filename}, line {exc.lineno})" if isinstance(exc, SyntaxError) else ""
        raise StepError(
            f"importing {module!r} (for step {path!r}) raised {type(exc).__name__}: {exc}{where}; fix the module"
        ) from None


def resolve_step(path: str) -> type:
    """The object that ``path`` names: ``package.module:Class`` (attribute path after the colon) or
    ``package.module.Class`` (the longest importable prefix is the module). Raises StepError."""
    path = path.strip()
    if not re.fullmatch(r"[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?", path) or ".." in path or path.endswith("."):
        raise StepError(
            f"step {path!r} is not an import path; write `package.module:Class` or `package.module.Class`, "
            "e.g. `datatrove.pipeline.filters.GopherQualityFilter`"
        )
    if path.startswith("datatrove"):
        _import_datatrove_base()
    if ":" in path:
        module_name, attrs = path.split(":", 1)
        module = _import_module(module_name, path)
        if module is None:
            raise StepError(
                f"cannot import module {module_name!r} of step {path!r}: no such module; {IMPORTABLE_HINT}"
            )
        splits = [(module, attrs.split("."))]
    else:
        parts = path.split(".")
        splits = []
        for i in range(len(parts) - 1, 0, -1):
            module = _import_module(".".join(parts[:i]), path)
            if module is not None:
                splits.append((module, parts[i:]))
                break
        if not splits:
            raise StepError(f"cannot import step {path!r}: no module {parts[0]!r}; {IMPORTABLE_HINT}")
    module, attrs = splits[0]
    obj: Any = module
    for depth, attr in enumerate(attrs):
        if not hasattr(obj, attr):
            owner = module.__name__ + "".join("." + a for a in attrs[:depth])
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(attr, names, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else "check the class name"
            raise StepError(f"step {path!r}: {owner!r} has no attribute {attr!r}; {hint}")
        obj = getattr(obj, attr)
    return obj


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _is_datatrove_own(cls: type) -> bool:
    return cls.__module__ == "datatrove" or cls.__module__.startswith("datatrove.")


def step_role(obj: Any, path: str) -> Role:
    """How the bridge runs the step class ``obj``. Raises StepError for anything that is not a per-document
    datatrove step."""
    base = _import_datatrove_base()
    from datatrove.pipeline.extractors.base import BaseExtractor
    from datatrove.pipeline.filters.base_filter import BaseFilter
    from datatrove.pipeline.formatters.base import BaseFormatter

    if not (isinstance(obj, type) and issubclass(obj, base.PipelineStep)):
        what = f"a {type(obj).__name__}" if not isinstance(obj, type) else f"the class {qualified_name(obj)}"
        raise StepError(
            f"step {path!r} is {what}, not a datatrove step; name a subclass of datatrove's BaseFilter, "
            "BaseExtractor, BaseFormatter (or PipelineStep for your own per-document step)"
        )
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        raise StepError(
            f"step {path!r} is abstract (it does not implement {missing}); name a concrete subclass, e.g. "
            "`datatrove.pipeline.filters.GopherQualityFilter`"
        )
    for family, why in NOT_PER_DOCUMENT.items():
        if obj.__module__ == family or obj.__module__.startswith(family + "."):
            raise StepError(
                f"step {path!r} is {why}; the `datatrove` kind runs per-document filters, extractors and "
                "formatters (and your own per-document PipelineStep subclasses)"
            )
    if issubclass(obj, BaseFilter):
        return "filter"
    if issubclass(obj, BaseExtractor):
        return "extractor"
    if issubclass(obj, BaseFormatter):
        return "formatter"
    return "step"


def _init_parameters(cls: type) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(cls.__init__).parameters)
    except (TypeError, ValueError):
        return {}


def build_step(cls: type, args: Mapping[str, Any], path: str) -> Any:
    """``cls(**args)``, with a StepError naming the argument and the fix when the constructor rejects them."""
    try:
        with no_downloads():  # a step that downloads in its constructor fails here, naming the asset
            return cls(**dict(args))
    except LocalAssetMissing as exc:
        raise LocalAssetMissing(f"step {path!r}: {exc}", exc.remote) from None
    except AssetNotCached as exc:
        raise AssetNotCached(f"step {path!r}: {exc}", exc.remote) from None
    except (
        ImportError
    ) as exc:  # datatrove's own dependency check: "Please install `x` to use Y (`pip install x`)"
        raise StepError(f"step {path!r} needs a package that is not installed: {exc}") from None
    except Exception as exc:
        raise StepError(
            f"{cls.__name__}(**args) raised {type(exc).__name__}: {exc}; fix `args` (its arguments: "
            f"{', '.join(_shown_parameters(cls)) or 'none'})"
        ) from None


def _shown_parameters(cls: type) -> list[str]:
    out = []
    for name, p in list(_init_parameters(cls).items())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out.append(name if p.default is p.empty else f"{name}={p.default!r}")
    return out


def check_args(cls: type, args: Mapping[str, Any]) -> ProblemList:
    """Arguments the constructor's signature does not accept, or required ones missing; ``[(path, message)]``."""
    params = _init_parameters(cls)
    if not params:
        return []
    own = list(params.values())[1:]  # without self
    takes_any = any(p.kind is p.VAR_KEYWORD for p in own)
    names = [p.name for p in own if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    problems: ProblemList = []
    if "exclusion_writer" in args:
        problems.append(
            (
                ("args", "exclusion_writer"),
                "exclusion_writer is not needed: dropped rows go to the node's exclusion shards "
                "(excluded/part-*.parquet) with datatrove's reason; remove it",
            )
        )
    if not takes_any:
        for key in args:
            if key not in names and key != "exclusion_writer":
                close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                problems.append(
                    (
                        ("args", key),
                        f"{cls.__name__} takes no argument {key!r}; {hint}its arguments: "
                        f"{', '.join(_shown_parameters(cls)) or 'none'}",
                    )
                )
    for p in own:
        if (
            p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.default is p.empty
            and p.name not in args
        ):
            problems.append(
                (("args",), f"{cls.__name__} needs argument {p.name!r}; add `{p.name}: ...` to args")
            )
    return problems


def check_step(path: str, args: Mapping[str, Any]) -> ProblemList:
    """Every problem with ``step: path`` and ``args``, as ``[(path inside params, message)]``; empty when the
    step resolves, is a per-document datatrove step and its constructor accepts ``args``."""
    try:
        cls = resolve_step(path)
        role = step_role(cls, path)
    except StepError as exc:
        return [(("step",), str(exc))]
    problems = check_args(cls, args)
    if problems:
        return problems
    try:
        step = build_step(cls, args, path)
    except LocalAssetMissing as exc:  # a local file it reads in its constructor
        return [(_arg_naming(args, exc.remote), str(exc))]
    except AssetNotCached as exc:  # a remote asset it fetches in its constructor
        return [(_arg_naming(args, exc.remote) if exc.remote else ("step",), str(exc))]
    except StepError as exc:
        return [(("args",), str(exc))]
    from data_pipes.datatrove_assets import missing_assets

    # those fetched lazily: on the first document (LanguageFilter's model), or by what the step holds; each named
    for asset in missing_assets(step, role):
        how = f"through {asset.via}" if asset.via else "on its first document"
        lead = f"step {path!r}: {cls.__name__} reads, {how},"
        if asset.local:
            problem = asset.problem or "cannot be read"
            message = local_missing_message(asset.remote, asset.local_path, problem, lead)
        else:
            message = not_cached_message(asset.remote, asset.local_path, lead, asset.reader)
        problems.append((_arg_naming(args, asset.remote), message))
    return problems


def _arg_naming(args: Mapping[str, Any], value: str) -> tuple[str | int, ...]:
    """Where in the params ``value`` is given (``("args", "model_url")``, into lists and mappings too), so the
    problem names that YAML line; ``("step",)`` when no argument holds it (the step's own default)."""

    def find(node: Any, at: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
        if node == value and isinstance(node, str):
            return at
        items = (
            node.items() if isinstance(node, Mapping) else enumerate(node) if isinstance(node, list) else ()
        )
        for key, child in items:
            found = find(child, (*at, key))
            if found is not None:
                return found
        return None

    return find(dict(args), ("args",)) or ("step",)


def _source_modules(cls: type) -> dict[str, str]:
    """``{module: sha256 of its source}`` for the modules of the step's own package that define the step and its
    bases, their parent packages, and the modules of that package they import, transitively."""
    roots = {c.__module__ for c in cls.__mro__ if c.__module__ not in ("builtins", "abc")}
    top = cls.__module__.split(".")[0]
    todo = sorted(m for m in roots if m.split(".")[0] == top)
    out: dict[str, str] = {}
    while todo:
        name = todo.pop()
        if name in out:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        with open(spec.origin, "rb") as fh:
            source = fh.read()
        out[name] = hashlib.sha256(source).hexdigest()
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages' __init__ run too
        package = name if spec.origin.endswith("__init__.py") else name.rpartition(".")[0]
        for node in ast.walk(parse(source, filename=spec.origin)):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    root = ".".join(base + ([node.module] if node.module else []))
                else:
                    root = node.module or ""
                found = [root] + [f"{root}.{a.name}" for a in node.names]
            else:
                continue
            todo.extend(f for f in found if f.split(".")[0] == top and f not in out)
    return dict(sorted(out.items()))


def _required_packages(cls: type) -> list[str]:
    """The distributions the step declares it needs (datatrove's ``_requires_dependencies``), pip names."""
    names: set[str] = set()
    for klass in cls.__mro__:
        for dep in getattr(klass, "_requires_dependencies", None) or ():
            names.add(dep[1] if isinstance(dep, tuple) else dep)
    return sorted(names)


def step_signature(path: str) -> dict[str, Any]:
    """Fingerprint material of the step beyond its params: class, versions and (not datatrove's own) source."""
    cls = resolve_step(path)
    versions = {}
    for name in ["datatrove", *_required_packages(cls)]:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "absent"
    out: dict[str, Any] = {"class": qualified_name(cls), "versions": versions}
    if not _is_datatrove_own(cls):
        out["source"] = _source_modules(cls)
    return out
