"""Load YAML keeping the line of every key, so errors can name ``file:line`` and the YAML path.

PyYAML's composer gives every node its start mark; we walk the composed tree once and record the line of each
key (and each list item) under its path. Duplicate keys, which PyYAML silently resolves to the last value, are
recorded so validation can report them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]

MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlSyntaxError(ValueError):
    def __init__(self, file: str, line: int, message: str, hint: str = "") -> None:
        self.file, self.line, self.message, self.hint = file, line, message, hint
        super().__init__(f"{file}:{line}: {message}")


@dataclass
class YamlDocument:
    file: str
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    duplicate_keys: list[tuple[Path, int, int]] = field(default_factory=list)  # (path, line, first line)

    def line_of(self, path: Path) -> int | None:
        """The line of ``path``, or of its deepest ancestor that exists in the file."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            as_text = tuple(str(p) for p in path)  # non-string keys (``1:``) are recorded by their text
            if as_text in self.lines:
                return self.lines[as_text]
            path = path[:-1]
        return self.lines.get((), None)


def _forget(doc: YamlDocument, prefix: Path) -> None:
    """Drop the recorded lines under ``prefix``: a later duplicate key replaces the whole earlier value."""
    n = len(prefix)
    for key in [k for k in doc.lines if k[:n] == prefix and len(k) > n]:
        del doc.lines[key]


def _walk(
    node: yaml.Node,
    path: Path,
    doc: YamlDocument,
    merged: bool = False,
    at: int | None = None,
    seen: set[int] | None = None,
) -> None:
    """Record the line of every key and item under ``path``. A node reached again through an alias (``*name``,
    ``<<: *name``) is recorded at ``at``, the line that uses the alias, since its path is the using one."""
    seen = set() if seen is None else seen
    if at is None and id(node) in seen:
        at = doc.lines.get(path)
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = at or key_node.start_mark.line + 1
            if key_node.tag == MERGE_TAG:  # `<<: *base`: merged keys are recorded where the merge is written
                for source in value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]:
                    _walk(source, path, doc, True, at or line, seen)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # complex keys are rejected by the schema; there is no useful path to record
            key = key_node.value
            child = (*path, key)
            if merged:  # explicit keys win over merged ones
                if child not in doc.lines:
                    doc.lines[child] = line
                    _walk(value_node, child, doc, True, at, seen)
                continue
            if key in first:
                doc.duplicate_keys.append((child, line, first[key]))
                _forget(doc, child)
            else:
                first[key] = line
            doc.lines[child] = line
            _walk(value_node, child, doc, False, at, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*path, i)
            if merged and child in doc.lines:
                continue
            doc.lines[child] = at or item.start_mark.line + 1
            _walk(item, child, doc, merged, at, seen)


def _syntax_hint(problem: str) -> str:
    if "'\\t'" in problem:
        return "indent with spaces; YAML does not allow tabs"
    if "mapping values are not allowed" in problem:
        return "quote a value that contains ': ', or fix the indentation of this key"
    if "could not find expected ':'" in problem:
        return "each key needs a ':' after it; check this line and the one before"
    if "found undefined alias" in problem:
        return "define the anchor (&name) before using it (*name)"
    if "but got '<stream end>'" in problem or "found unexpected end of stream" in problem:
        return "close the bracket or quote that starts on this line"
    return ""


def _syntax_error(exc: yaml.YAMLError, text: str, file: str) -> YamlSyntaxError:
    n_lines = max(1, len(text.splitlines()))
    if isinstance(exc, yaml.MarkedYAMLError):
        problem = exc.problem or str(exc)
        mark, context = exc.problem_mark, exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        message = f"invalid YAML: {problem}"
        if context is not None and exc.context:
            message += f" ({exc.context} on line {context.line + 1})"
            if line > n_lines:  # the error surfaced at the end of the file: point at what was left open
                line = context.line + 1
        return YamlSyntaxError(file, min(line, n_lines), message, _syntax_hint(problem))
    if isinstance(exc, yaml.reader.ReaderError):
        line = text[: exc.position].count("\n") + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return YamlSyntaxError(
            file, line, f"invalid YAML: character {char!r} is not allowed", "remove the control character"
        )
    return YamlSyntaxError(file, 1, f"invalid YAML: {exc}")


def parse_yaml(text: str, file: str) -> YamlDocument:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, text, file) from None
    doc = YamlDocument(file=file, data=data)
    if root is not None:
        doc.lines[()] = root.start_mark.line + 1
        _walk(root, (), doc)
    return doc
