"""Thread-safe imports from transformers.

transformers resolves its top-level names lazily (``_LazyModule.__getattr__``) and that resolution is not
thread-safe: several threads doing ``from transformers import AutoConfig`` at once in a fresh process fail with
``ImportError: cannot import name 'AutoConfig' from 'transformers'`` (training, eval and export nodes started at
the same time run in worker threads of one process). :func:`hf_import` resolves names under one process-wide lock;
every in-function transformers import of ``model/``, ``tasks/`` and ``data_pipes/`` goes through it. Once a name is
resolved transformers caches it on the module, so later calls only take the lock briefly.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

_LOCK = threading.RLock()


def hf_import(*names: str, module: str = "transformers") -> Any:
    """``from <module> import <names>`` under the process-wide lock: the object for one name, a tuple for more."""
    if not names:
        raise ValueError("hf_import: give at least one name to import")
    with _LOCK:
        mod = importlib.import_module(module)
        try:
            found = tuple(getattr(mod, n) for n in names)
        except AttributeError as exc:
            raise ImportError(f"cannot import name {exc.name!r} from {module!r}") from exc
    return found[0] if len(names) == 1 else found
