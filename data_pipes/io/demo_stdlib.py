"""Demo corpus parts built from the standard library: its source as code repositories, and pydoc HTML pages.

``stdlib_code``: every file of every stdlib package (``json/``, ``email/``, ``asyncio/``...) is one document
of the repository named after the package; the top-level single-file modules (``os.py``, ``typing.py``...)
form one more repository, ``stdlib_modules``. Skipped: ``test``/``tests`` folders at any depth,
``__pycache__``, hidden entries, and the packages ``idlelib``, ``tkinter`` and ``lib2to3``; non-package
folders (``site-packages``, ``lib-dynload``, ``config-*``) are not packages and never listed. Non-Python files
inside packages are kept (docs, shell scripts); binary ones (the wheels ``ensurepip`` bundles) come out
quarantined as ``binary_content``, which is the demo's real example of quarantine.

``pydoc_html``: ``pydoc.HTMLDoc`` pages of the public top-level stdlib modules (``sys.stdlib_module_names``)
that this interpreter can find, minus those with side effects on import or a GUI. Modules are imported
in-process at render time; a failure gives a quarantined ``import_error``/``pydoc_error`` record. Memory
addresses in reprs (``<object at 0x7f...>``), handles and ``os.environ``'s contents are masked so the same
installation renders the same bytes.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pydoc
import re
import sys
import sysconfig
import warnings

from data_pipes.io.demo_items import DemoItem, demo_good, demo_quarantined, file_document

SKIPPED_PACKAGES = frozenset({"test", "idlelib", "tkinter", "lib2to3", "site-packages"})
SKIPPED_DIRS = frozenset({"__pycache__", "test", "tests"})
MODULES_REPO = "stdlib_modules"
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
# Process state that pydoc would print: object addresses and handles (differ per run) and the environment
# (differs per run and may hold secrets: os.environ is module data of os and a default argument of cgi).
_ADDRESS = re.compile(r"\b(at|handle)((?:\s|&nbsp;)+)(?:0x)?[0-9a-fA-F]{6,}\b")
_ENVIRON = re.compile(r"\benviron\(\{.*?\}\)", re.DOTALL)


def mask_process_state(page: str) -> str:
    """Replace addresses, handles and environment contents in a pydoc page by fixed placeholders."""
    return _ENVIRON.sub("environ({...})", _ADDRESS.sub(r"\1\g<2>0x0", page))


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
    """Import the module and render its pydoc HTML page."""
    url = f"pydoc://{item.key}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated modules warn on import
            module = importlib.import_module(item.key)
    except Exception as exc:  # any failure at import time is this item's problem, not the run's
        return demo_quarantined(item, url, "import_error", f"{type(exc).__name__}: {exc}")
    try:
        doc = pydoc.HTMLDoc()
        page = doc.page(pydoc.describe(module), doc.document(module, item.key))
    except Exception as exc:  # pydoc walks arbitrary objects; a broken one must not stop the corpus
        return demo_quarantined(item, url, "pydoc_error", f"{type(exc).__name__}: {exc}")
    meta = {"module": item.key, "path": getattr(module, "__file__", None) or "", "format": "html"}
    return demo_good(item, mask_process_state(page), url, meta)
