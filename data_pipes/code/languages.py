"""Language of a code file from its extension or its file name.

The table is deliberately small and boring: the languages a pre-training code mix cares about plus the
config and documentation formats that live next to code. A kind's ``languages`` param may replace it
(extension -> language).
"""

from __future__ import annotations

import posixpath

DEFAULT_LANGUAGES: dict[str, str] = {
    "py": "python",
    "pyi": "python",
    "pyx": "cython",
    "rs": "rust",
    "go": "go",
    "js": "javascript",
    "mjs": "javascript",
    "cjs": "javascript",
    "jsx": "javascript",
    "ts": "typescript",
    "tsx": "typescript",
    "c": "c",
    "h": "c",
    "cc": "cpp",
    "cpp": "cpp",
    "cxx": "cpp",
    "hpp": "cpp",
    "hh": "cpp",
    "hxx": "cpp",
    "java": "java",
    "kt": "kotlin",
    "scala": "scala",
    "cs": "csharp",
    "swift": "swift",
    "m": "objective-c",
    "rb": "ruby",
    "php": "php",
    "pl": "perl",
    "pm": "perl",
    "lua": "lua",
    "r": "r",
    "jl": "julia",
    "hs": "haskell",
    "ml": "ocaml",
    "ex": "elixir",
    "exs": "elixir",
    "erl": "erlang",
    "clj": "clojure",
    "dart": "dart",
    "zig": "zig",
    "nim": "nim",
    "v": "verilog",
    "vhd": "vhdl",
    "sh": "shell",
    "bash": "shell",
    "zsh": "shell",
    "fish": "shell",
    "ps1": "powershell",
    "bat": "batch",
    "sql": "sql",
    "proto": "protobuf",
    "graphql": "graphql",
    "html": "html",
    "htm": "html",
    "css": "css",
    "scss": "css",
    "less": "css",
    "vue": "vue",
    "svelte": "svelte",
    "md": "markdown",
    "rst": "restructuredtext",
    "txt": "text",
    "tex": "tex",
    "toml": "toml",
    "yaml": "yaml",
    "yml": "yaml",
    "json": "json",
    "xml": "xml",
    "ini": "ini",
    "cfg": "ini",
    "csv": "csv",
    "tsv": "tsv",
    "cmake": "cmake",
    "mk": "makefile",
    "gradle": "gradle",
}
# Files known by their whole name (compared case-sensitively, then lower-cased).
FILE_NAMES: dict[str, str] = {
    "Makefile": "makefile",
    "makefile": "makefile",
    "GNUmakefile": "makefile",
    "Dockerfile": "dockerfile",
    "CMakeLists.txt": "cmake",
    "Rakefile": "ruby",
    "Gemfile": "ruby",
    "Cargo.lock": "toml",
    "go.sum": "text",
    "go.mod": "gomod",
    "LICENSE": "text",
    "LICENCE": "text",
    "COPYING": "text",
    "README": "text",
    "NOTICE": "text",
    "AUTHORS": "text",
    "CHANGELOG": "text",
    "CONTRIBUTORS": "text",
}
# Languages whose large files are data rather than code (the `data_file` quality flag).
DATA_LANGUAGES: frozenset[str] = frozenset({"json", "csv", "tsv", "yaml", "xml", "sql"})


def language_of(path: str, table: dict[str, str] | None = None) -> str | None:
    """The language of ``path`` (``/``-separated) or None when neither its name nor its extension is known.

    ``table`` maps extensions (no dot, lower case) to languages; it defaults to ``DEFAULT_LANGUAGES``.
    Known file names (``Makefile``, ``LICENSE``...) are recognised whatever the table.
    """
    name = posixpath.basename(path)
    if name in FILE_NAMES:
        return FILE_NAMES[name]
    stem, dot, ext = name.rpartition(".")
    if dot and stem:
        return (DEFAULT_LANGUAGES if table is None else table).get(ext.lower())
    return FILE_NAMES.get(name.upper())
