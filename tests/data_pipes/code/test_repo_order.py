"""Dependency order on crafted repositories (written to tmp_path and read back), cycles included."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_pipes.code.deps_rust import expand_use
from data_pipes.code.repo_order import dependency_graph, dependency_order, topological_order


def write_repo(root: Path, files: dict[str, str]) -> dict[str, str]:
    """Write ``files`` under ``root`` and read them back as ``{relative path: text}``."""
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


PYTHON = {
    "README.md": "# demo\n",
    "main.py": "import pkg\nimport os\n",
    "pkg/__init__.py": "from .core import run\n",
    "pkg/core.py": "from . import util\nfrom pkg.models import Model\n",
    "pkg/models.py": "from .util import helper\n",
    "pkg/util.py": "import os\n\ndef helper():\n    pass\n",
    "pkg/broken.py": "def (:\n",
}
PYTHON_CYCLE = {"a.py": "import b\nimport x\n", "b.py": "from a import f\n", "x.py": "from . import a\n"}
RUST = {
    "Cargo.toml": '[package]\nname = "app"\n',
    "src/main.rs": "mod config;\nmod net;\nuse crate::net::client::Client;\n// mod ghost;\nfn main() {}\n",
    "src/config.rs": "pub struct Config;\n",
    "src/net/mod.rs": "pub mod client;\npub(crate) mod server;\n",
    "src/net/client.rs": "use crate::config::Config;\nuse super::server::{self, Server};\nuse std::io;\n",
    "src/net/server.rs": "use crate::config::Config;\n",
}
GO = {
    "go.mod": "module example.com/app\n\ngo 1.22\n",
    "main.go": 'package main\n\nimport (\n\t"fmt"\n\t"example.com/app/internal/store"\n'
    '\th "example.com/app/handlers"\n)\n',
    "handlers/h.go": 'package handlers\n\nimport "example.com/app/internal/store"\n',
    "handlers/h_util.go": "package handlers\n",
    "internal/store/store.go": 'package store\n\nimport "strings"\n',
    "internal/store/store_test.go": 'package store\n\nimport "testing"\n',
}
JS = {
    "package.json": "{}\n",
    "src/index.ts": "import { App } from './app';\nexport * from \"./lib\";\n",
    "src/app.tsx": "import React from 'react';\nimport { fmt } from './lib/format.js';\n",
    "src/lib/index.ts": "export * from './format';\n",
    "src/lib/format.ts": "const cfg = require('../config.json');\nexport const fmt = 1;\n",
    "src/config.json": "{}\n",
}
C_CYCLE = {
    "include/types.h": "#include <stdint.h>\n",
    "include/util.h": '#include "types.h"\n',
    "src/util.c": '#include "util.h"\n',
    "src/a.h": '#include "b.h"\n',
    "src/b.h": '#include "a.h"\n',
    "src/main.c": '#include "a.h"\n#include "util.h"\n#include <stdio.h>\n',
}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            PYTHON,
            [
                "README.md",
                "pkg/broken.py",
                "pkg/util.py",
                "pkg/models.py",
                "pkg/core.py",
                "pkg/__init__.py",
                "main.py",
            ],
        ),
        (PYTHON_CYCLE, ["b.py", "a.py", "x.py"]),
        (
            RUST,
            [
                "Cargo.toml",
                "src/config.rs",
                "src/net/server.rs",
                "src/net/client.rs",
                "src/net/mod.rs",
                "src/main.rs",
            ],
        ),
        (
            GO,
            [
                "go.mod",
                "handlers/h_util.go",
                "internal/store/store.go",
                "handlers/h.go",
                "internal/store/store_test.go",
                "main.go",
            ],
        ),
        (
            JS,
            [
                "package.json",
                "src/config.json",
                "src/lib/format.ts",
                "src/app.tsx",
                "src/lib/index.ts",
                "src/index.ts",
            ],
        ),
        (C_CYCLE, ["include/types.h", "include/util.h", "src/util.c", "src/a.h", "src/b.h", "src/main.c"]),
    ],
    ids=["python", "python_cycle", "rust", "go", "js_ts", "c_cycle"],
)
def test_dependency_order(tmp_path: Path, files: dict[str, str], expected: list[str]) -> None:
    assert dependency_order(write_repo(tmp_path, files)) == expected


def test_graphs_resolve_to_repo_files(tmp_path: Path) -> None:
    graph = dependency_graph(write_repo(tmp_path / "py", PYTHON))
    assert graph["pkg/core.py"] == {"pkg/util.py", "pkg/models.py"}
    assert graph["main.py"] == {"pkg/__init__.py"}  # `import os` is not in the repository
    assert graph["pkg/broken.py"] == set()
    rust = dependency_graph(write_repo(tmp_path / "rs", RUST))
    assert rust["src/main.rs"] == {"src/config.rs", "src/net/mod.rs", "src/net/client.rs"}  # not `ghost`
    assert rust["src/net/client.rs"] == {"src/config.rs", "src/net/server.rs"}
    go = dependency_graph(write_repo(tmp_path / "go", GO))
    assert go["main.go"] == {"internal/store/store.go", "handlers/h.go", "handlers/h_util.go"}
    assert go["handlers/h_util.go"] == set()
    js = dependency_graph(write_repo(tmp_path / "js", JS))
    assert js["src/app.tsx"] == {"src/lib/format.ts"}
    c = dependency_graph(write_repo(tmp_path / "c", C_CYCLE))
    assert c["src/util.c"] == {"include/util.h"}


def test_cycle_breaks_at_smallest_in_degree_then_path() -> None:
    # a imports b and c (in-degree 2); b and c import a (in-degree 1 each): b is emitted first, by path
    graph = {"a": {"b", "c"}, "b": {"a"}, "c": {"a"}}
    assert topological_order(graph) == ["b", "a", "c"]
    # a pure 3-cycle: all in-degree 1, smallest path first, then the cycle unrolls behind it
    assert topological_order({"x": {"z"}, "y": {"x"}, "z": {"y"}}) == ["x", "y", "z"]
    assert topological_order({}) == []


def test_order_does_not_depend_on_input_order(tmp_path: Path) -> None:
    files = write_repo(tmp_path, RUST)
    reversed_files = dict(reversed(list(files.items())))
    assert dependency_order(reversed_files) == dependency_order(files)


def test_expand_use_groups() -> None:
    assert expand_use("crate::a::{b, c::{d, e as f}, self}") == [
        ["crate", "a", "b"],
        ["crate", "a", "c", "d"],
        ["crate", "a", "c", "e"],
        ["crate", "a"],
    ]
    assert expand_use("super::x::*") == [["super", "x"]]
