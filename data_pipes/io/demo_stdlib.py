"""Demo corpus parts built from the standard library: its source as code repositories, and pydoc HTML pages.

``stdlib_code``: every file of every stdlib package (``json/``, ``email/``, ``asyncio/``...) is one document
of the repository named after the package; the top-level single-file modules (``os.py``, ``typing.py``...)
form one more repository, ``stdlib_modules``. Skipped: ``test``/``tests`` folders at any depth,
``__pycache__``, hidden entries, the build's generated ``_sysconfigdata*`` (it holds this machine's install
paths), and the packages ``idlelib``, ``tkinter`` and ``lib2to3``; non-package folders (``site-packages``,
``lib-dynload``, ``config-*``) are not packages and never listed. Non-Python files
inside packages are kept (docs, shell scripts); binary ones (the wheels ``ensurepip`` bundles) come out
quarantined as ``binary_content``, which is the demo's real example of quarantine.

``pydoc_html``: ``pydoc.HTMLDoc`` pages of the public top-level stdlib modules (``sys.stdlib_module_names``)
that this interpreter can find, minus those with side effects on import or a GUI. They are rendered in a clean
interpreter (``demo_pydoc``), so the same installation gives the same bytes whatever process runs the shard; a
failure gives a quarantined ``import_error``/``pydoc_error`` record.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig

from data_pipes.io.demo_items import DemoItem, file_document
from data_pipes.io.demo_pydoc import mask_process_state, render_pydoc_pages

__all__ = ["list_pydoc_html", "list_stdlib_code", "mask_process_state", "render_pydoc_html", "stdlib_dir"]

SKIPPED_PACKAGES = frozenset({"test", "idlelib", "tkinter", "lib2to3", "site-packages"})
SKIPPED_DIRS = frozenset({"__pycache__", "test", "tests"})
MODULES_REPO = "stdlib_modules"
GENERATED_PREFIXES = ("_sysconfigdata",)
# Imported with side effects (opens a browser, prints), needs a display, is a test/GUI package, or (sys) has
# a page made of process state (sys: argv, path, flags; posix/nt: the environment as a plain dict).
PYDOC_DENYLIST = frozenset(
    {
        "antigravity",
        "this",
        "idlelib",
        "tkinter",
        "turtle",
        "turtledemo",
        "test",
        "lib2to3",
        "ensurepip",
        "sys",
    }
    | {"posix", "nt"}
)
LANGUAGES = {
    ".py": "python",
    ".c": "c",
    ".rst": "restructuredtext",
    ".txt": "text",
    ".css": "css",
    ".cfg": "ini",
    ".bat": "batch",
    ".ps1": "powershell",
    ".fish": "fish",
    ".csh": "csh",
    ".whl": "binary",
}


def stdlib_dir() -> str:
    """The standard library's source folder."""
    return sysconfig.get_paths()["stdlib"]


def _package_files(root: str, package: str) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(os.path.join(root, package)):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".")]
        found.extend(os.path.join(folder, f) for f in files if not f.startswith("."))
    return found


def list_stdlib_code() -> list[DemoItem]:
    """One item per stdlib source file; key is ``"<repo>/<path inside the repo>"``."""
    root = stdlib_dir()
    items = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith(GENERATED_PREFIXES):
            continue  # the build's configuration (this machine's install paths), not code anyone wrote
        if entry.is_file() and entry.name.endswith(".py"):
            items.append(DemoItem("stdlib_code", f"{MODULES_REPO}/{entry.name}", entry.path))
        elif (
            entry.is_dir()
            and entry.name.isidentifier()
            and entry.name not in SKIPPED_PACKAGES | SKIPPED_DIRS
            and os.path.isfile(os.path.join(entry.path, "__init__.py"))
        ):
            for path in _package_files(root, entry.name):
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                items.append(DemoItem("stdlib_code", rel, path))
    return sorted(items)


def render_stdlib_code(item: DemoItem) -> dict[str, str]:
    """The source file as a code document with repo/path/language in meta."""
    repo, rest = item.key.split("/", 1)
    path = rest if repo == MODULES_REPO else item.key
    language = LANGUAGES.get(os.path.splitext(path)[1], "text")
    meta = {"repo": repo, "path": path, "language": language, "format": "code"}
    return file_document(item, f"stdlib://{path}", meta)


def list_pydoc_html() -> list[DemoItem]:
    """One item per public top-level stdlib module that this interpreter can find (no import happens here)."""
    names = [
        name
        for name in sorted(sys.stdlib_module_names)
        if not name.startswith("_")
        and name not in PYDOC_DENYLIST
        and importlib.util.find_spec(name) is not None
    ]
    return [DemoItem("pydoc_html", name) for name in names]


def render_pydoc_html(item: DemoItem) -> dict[str, str]:
    """The module's pydoc HTML page (one item; ``render_pydoc_pages`` renders many in one interpreter)."""
    return render_pydoc_pages([item])[0]
