"""Dependency order on crafted repositories (written to tmp_path and read back), cycles included.

The crafted repositories' orders are derived by hand from the rule in ``repo_condense`` (a topological order
of the strongly connected components, ready components by smallest path, tests last; inside a cycle
type-only edges lose, then the smallest in-degree). The Python graph is also checked
against an independent oracle: the imports CPython itself runs (recorded by an ``__import__`` hook in a
subprocess) on seeded random acyclic packages, where every such edge must be in our graph and satisfied by
our order, and on real standard-library packages.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import sysconfig
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
                "main.go",
                "internal/store/store_test.go",  # a test file: after the package, once nothing else is ready
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
        (C_CYCLE, ["include/types.h", "include/util.h", "src/a.h", "src/b.h", "src/main.c", "src/util.c"]),
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


# --- independent oracle: the imports CPython itself executes -------------------------------------------------

_RECORD = r"""
import builtins, importlib, importlib.util, json, os, sys
root, names = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, root)
edges, real = set(), builtins.__import__

def hook(name, globals=None, locals=None, fromlist=(), level=0):
    module = real(name, globals, locals, fromlist, level)
    importer = (globals or {}).get("__name__")
    if importer in names:
        target = importlib.util.resolve_name("." * level + name, globals.get("__package__")) if level else name
        subs = [f"{target}.{item}" for item in fromlist or () if f"{target}.{item}" in sys.modules]
        for dep in subs or [target]:
            edges.add((importer, dep))
    return module

tops = {n.split(".")[0] for n in names}
for loaded in [n for n in sys.modules if n.split(".")[0] in tops]:  # preloaded copies (site, this script)
    del sys.modules[loaded]
builtins.__import__ = hook
for name in sorted(names):
    try:
        importlib.import_module(name)
    except Exception:  # a platform-specific module of a real package; its edges so far still count
        pass
files = {n: os.path.relpath(m.__file__, root).replace(os.sep, "/") for n, m in list(sys.modules.items())
         if n in names and getattr(m, "__file__", None) and os.path.abspath(m.__file__).startswith(root + os.sep)}
print(json.dumps(sorted([files[a], files[b]] for a, b in edges if a in files and b in files and a != b)))
"""


def cpython_edges(root: Path, modules: list[str]) -> set[tuple[str, str]]:
    """(importer file, imported file) for every import statement CPython runs while importing ``modules``
    from ``root``, resolved by CPython (relative imports included): the most specific module named, as in
    ``deps_python``."""
    out = subprocess.run(
        [sys.executable, "-c", _RECORD, str(root.resolve()), json.dumps(modules)],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    )
    return {(a, b) for a, b in json.loads(out.stdout)}


def _generated_package(seed: int) -> dict[str, str]:
    """A random acyclic repository: 14 modules in nested packages and at the top, each importing up to three
    earlier ones (in a random order) in one of eight import styles, relative ones included."""
    rng = random.Random(seed)
    homes = ["", "", "app", "app", "app.core", "app.core", "app.util", "app.core.deep", "lib"]
    modules = [f"{rng.choice(homes)}.m{i}".lstrip(".") for i in range(14)]
    rng.shuffle(modules)  # the rank in this list is the topological order; names carry no hint of it
    files: dict[str, str] = {"README.md": "# generated\n"}
    for package in {m.rpartition(".")[0] for m in modules} | {"app", "app.core"}:
        parts = package.split(".") if package else []
        for k in range(1, len(parts) + 1):
            files["/".join(parts[:k]) + "/__init__.py"] = ""
    for i, mod in enumerate(modules):
        lines = []
        for dep in rng.sample(modules[:i], k=min(i, rng.randint(0, 3))):
            lines.append(_import_line(rng, mod, dep))
        lines.append(f"value = {i}")
        files[mod.replace(".", "/") + ".py"] = "\n".join(lines) + "\n"
    return files


def _import_line(rng: random.Random, importer: str, dep: str) -> str:
    parent, _, leaf = dep.rpartition(".")
    own = importer.rpartition(".")[0].split(".") if "." in importer else []
    theirs = parent.split(".") if parent else []
    common = 0
    while common < min(len(own), len(theirs)) and own[common] == theirs[common]:
        common += 1
    styles = ["import", "import_as", "from_attr"] + (["from_parent"] if parent else [])
    if common:  # both in one top-level package: relative imports are possible
        styles += ["rel_module", "rel_attr"]
    style = rng.choice(styles)
    dots = "." * (len(own) - common + 1)
    rest = ".".join(theirs[common:])
    if style == "import":
        return f"import {dep}"
    if style == "import_as":
        return f"import {dep} as alias_{leaf}"
    if style == "from_attr":
        return f"from {dep} import value as v_{leaf}"
    if style == "from_parent":
        return f"from {parent} import {leaf}"
    if style == "rel_module":
        return f"from {dots}{rest} import {leaf}"
    return f"from {dots}{rest + '.' if rest else ''}{leaf} import value as v_{leaf}"


@pytest.mark.parametrize("seed", range(12))
def test_python_graph_and_order_against_cpython(tmp_path: Path, seed: int) -> None:
    files = write_repo(tmp_path, _generated_package(seed))
    modules = [p[:-3].replace("/", ".").removesuffix(".__init__") for p in files if p.endswith(".py")]
    edges = cpython_edges(tmp_path, modules)
    graph = dependency_graph(files)
    assert {(a, b) for a, deps in graph.items() for b in deps} == edges
    assert len(edges) >= 8  # the generator made a real graph
    order = dependency_order(files)
    assert sorted(order) == sorted(files)
    pos = {f: i for i, f in enumerate(order)}
    assert all(pos[dep] < pos[importer] for importer, dep in edges)


STDLIB_PACKAGES = (
    "json",
    "email",
    "concurrent",
    "urllib",
    "http",
    "xmlrpc",
    "wsgiref",
    "logging",
    "zoneinfo",
)


@pytest.mark.parametrize("package", STDLIB_PACKAGES)
def test_real_stdlib_package(tmp_path: Path, package: str) -> None:
    """A real package copied out of the standard library: every import CPython runs at import time is an edge
    of our graph (ours also holds the imports inside functions); where our graph has no cycle, the order
    satisfies every edge."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    src = stdlib / package
    files = {
        p.relative_to(stdlib).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(src.rglob("*.py"))
        if "__pycache__" not in p.parts and p.name != "__main__.py"
    }
    write_repo(tmp_path, files)
    modules = [p[:-3].replace("/", ".").removesuffix(".__init__") for p in files]
    edges = cpython_edges(tmp_path, modules)
    assert edges, f"{package}: CPython ran no import between its modules"
    graph = dependency_graph(files)
    missed = {(a, b) for a, b in edges if b not in graph[a]}
    assert not missed
    order = dependency_order(files)
    assert sorted(order) == sorted(files)
    if _acyclic(graph):
        pos = {f: i for i, f in enumerate(order)}
        assert all(pos[d] < pos[f] for f, deps in graph.items() for d in deps)


def _acyclic(graph: dict[str, set[str]]) -> bool:
    state: dict[str, int] = {}

    def visit(node: str) -> bool:
        if state.get(node) == 1:
            return False
        if state.get(node) == 2:
            return True
        state[node] = 1
        ok = all(visit(d) for d in graph.get(node, ()))
        state[node] = 2
        return ok

    return all(visit(n) for n in list(graph))


def test_python_file_nested_beyond_the_parser_has_no_imports() -> None:
    deep = "import pkg.util\nx = " + "+".join(["1"] * 50_000) + "\ny = " + "-" * 200_000 + "1\n"
    files = {"pkg/__init__.py": "", "pkg/util.py": "", "pkg/deep.py": deep, "pkg/app.py": "import pkg.deep\n"}
    graph = dependency_graph(files)
    assert graph["pkg/deep.py"] == set()  # does not parse: no edges, as for a syntax error
    assert graph["pkg/app.py"] == {"pkg/deep.py"}
    assert dependency_order(files).index("pkg/deep.py") < dependency_order(files).index("pkg/app.py")
