"""What loading the kinds imports: every `arcflow` command loads every kind's params, and every Dask worker looks
its kinds up, so neither may pull in torch or matplotlib unless a kind that needs them runs (each costs about 1.5 and
0.5 CPU-s per process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _modules_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_listing_every_kind_imports_neither_torch_nor_matplotlib() -> None:
    modules = _modules_after("from tasks.registry import kind_names\nassert len(kind_names()) > 30")
    assert "tasks.grpo" in modules and "tasks.train" in modules  # the training kinds' params are loaded ...
    assert "torch" not in modules and "matplotlib" not in modules  # ... without their heavy dependencies


def test_looking_one_kind_up_imports_only_its_module() -> None:
    modules = _modules_after("from tasks.registry import get_kind\nassert get_kind('dedup_minhash').name")
    kinds = {m for m in modules if m.startswith("tasks.") and not m.startswith("tasks._")}
    assert kinds == {"tasks.base", "tasks.dedup_minhash", "tasks.doc_map", "tasks.registry"}
    # a kind whose module has another name is still found (every module is then imported)
    modules = _modules_after(
        "from tasks.registry import get_kind\nassert get_kind('filter').name == 'filter'"
    )
    assert "tasks.filter_expr" in modules and "tasks.sample" in modules
