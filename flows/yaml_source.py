"""Load YAML 1.2 keeping the line of every key, so errors can name ``file:line`` and the YAML path.

ruamel.yaml composes the file once into a node tree (every node has its start mark; YAML 1.2, so ``no``, ``on``
and ``off`` are strings, not booleans). One walk over that tree builds the plain Python data (dicts, lists,
str, int, float, bool, None) and records the line of each key and list item under its path. Duplicate keys,
which YAML resolves to the last value, are recorded so validation can report them, and so are mapping keys that
YAML reads as something other than a string (``true:``, ``null:``, ``1:``): the data keeps them as the text
written, and validation decides whether that is a problem.

Hostile input is bounded before it can cost much: the file's size (``MAX_BYTES``), the nesting depth
(``MAX_DEPTH``), the number of values once aliases are expanded (``MAX_VALUES``, so a "billion laughs" file
fails at once instead of growing) and the digits of an integer. Each is a ``YamlSyntaxError`` naming the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import ConstructorError, SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

Path = tuple[str | int, ...]

MERGE_TAG = "tag:yaml.org,2002:merge"
STR_TAG = "tag:yaml.org,2002:str"
MAX_BYTES = 1_000_000  # a pipeline file is a few KB; this is far above any real one
MAX_DEPTH = 64  # nodes.N.params.buckets[2].epochs is 6 deep
MAX_VALUES = 100_000  # scalars, mappings and lists, counting every alias use in full
MAX_INT_DIGITS = 100

_TAG_NAMES = {
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:int": "an integer",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:timestamp": "a date",
}


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
    typed_keys: list[tuple[Path, int, str]] = field(default_factory=list)  # (path, line, what YAML read)

    def line_of(self, path: Path) -> int | None:
        """The line of ``path``, or of its deepest ancestor that exists in the file."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            as_text = tuple(str(p) for p in path)
            if as_text in self.lines:
                return self.lines[as_text]
            path = path[:-1]
        return self.lines.get((), None)


def _yaml() -> YAML:
    return YAML(typ="safe", pure=True)  # YAML 1.2 core schema by default


def _line(node: Node) -> int:
    return node.start_mark.line + 1


class _Builder:
    """One walk over the composed tree: plain data out, lines and key problems recorded in ``doc``."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.constructor = SafeConstructor(loader=_yaml())
        self.seen: set[int] = set()

    def _error(self, node: Node, message: str, hint: str = "") -> YamlSyntaxError:
        return YamlSyntaxError(self.doc.file, _line(node), message, hint)

    def scalar(self, node: ScalarNode) -> Any:
        if node.tag == STR_TAG:
            return node.value
        digits = len(re.sub(r"[^0-9a-fA-F]", "", node.value)) if node.tag == "tag:yaml.org,2002:int" else 0
        if digits > MAX_INT_DIGITS:
            raise self._error(
                node,
                f"integer with {digits} digits is too large (at most {MAX_INT_DIGITS})",
                "quote it if it is meant as text",
            )
        try:
            return self.constructor.construct_object(node, deep=True)
        except (ConstructorError, ValueError) as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise self._error(node, f"cannot read value {node.value[:40]!r}: {problem}") from None

    def key(self, node: Node, path: Path) -> str:
        if not isinstance(node, ScalarNode):
            raise self._error(node, "a mapping or a list cannot be a key", "keys are plain names")
        if node.tag != STR_TAG:
            self.doc.typed_keys.append(((*path, node.value), _line(node), _TAG_NAMES.get(node.tag, node.tag)))
        return node.value

    def build(
        self, node: Node, path: Path, merged: bool = False, at: int | None = None, depth: int = 0
    ) -> Any:
        """Data of ``node`` at ``path``. A node reached again through an alias (``*name``, ``<<: *name``) has
        its lines recorded at ``at``, the line that uses the alias, since its path is the using one."""
        if depth > MAX_DEPTH:
            raise self._error(
                node, f"nested more than {MAX_DEPTH} levels deep", "a pipeline needs only a few levels"
            )
        if at is None and id(node) in self.seen:
            at = self.doc.lines.get(path)
        self.seen.add(id(node))
        if isinstance(node, MappingNode):
            return self._mapping(node, path, merged, at, depth)
        if isinstance(node, SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                child = (*path, i)
                if not (merged and child in self.doc.lines):
                    self.doc.lines[child] = at or _line(item)
                items.append(self.build(item, child, merged, at, depth + 1))
            return items
        return self.scalar(node)

    def _mapping(self, node: MappingNode, path: Path, merged: bool, at: int | None, depth: int) -> dict:
        doc = self.doc
        explicit: dict[str, Any] = {}
        merges: list[dict[str, Any]] = []
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = at or _line(key_node)
            if key_node.tag == MERGE_TAG:  # `<<: *base`: merged keys are recorded where the merge is written
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, MappingNode):
                        raise self._error(value_node, "`<<:` merges a mapping (or a list of mappings) only")
                    merges.append(self.build(source, path, True, at or line, depth + 1))
                continue
            key = self.key(key_node, path)
            child = (*path, key)
            if merged:  # explicit keys win over merged ones
                if child not in doc.lines:
                    doc.lines[child] = line
                explicit[key] = self.build(value_node, child, True, at, depth + 1)
                continue
            if key in first:
                doc.duplicate_keys.append((child, line, first[key]))
                for k in [k for k in doc.lines if k[: len(child)] == child and len(k) > len(child)]:
                    del doc.lines[k]  # a later duplicate replaces the whole earlier value
            else:
                first[key] = line
            doc.lines[child] = line
            explicit[key] = self.build(value_node, child, False, at, depth + 1)
        out: dict[str, Any] = {}
        for source in reversed(merges):  # the first mapping of `<<: [*a, *b]` wins
            out.update(source)
        out.update(explicit)
        return out


def _expanded_size(root: Node, file: str) -> None:
    """Raise when the tree, with every alias use expanded, holds more than ``MAX_VALUES`` values. Each distinct
    node is sized once, so this is linear in the file even when the expansion is exponential."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        kids: list[Node] = []
        if isinstance(node, MappingNode):
            kids = [n for pair in node.value for n in pair]
        elif isinstance(node, SequenceNode):
            kids = list(node.value)
        if not children_done:
            stack.append((node, True))
            stack.extend((k, False) for k in kids if id(k) not in sizes)
            continue
        total = 1 + sum(sizes.get(id(k), 0) for k in kids)
        if total > MAX_VALUES:
            raise YamlSyntaxError(
                file,
                _line(node),
                f"the aliases (*name) from here expand to more than {MAX_VALUES:,} values",
                "a pipeline needs far fewer; use each anchor directly instead of aliases of aliases",
            )
        sizes[id(node)] = total


def _deepest_line(text: str) -> int:
    """The line where nesting first goes deeper than ``MAX_DEPTH`` (events are read without recursion)."""
    depth = 0
    try:
        for event in _yaml().parse(text):
            name = type(event).__name__
            if name in ("MappingStartEvent", "SequenceStartEvent"):
                depth += 1
                if depth > MAX_DEPTH:
                    return event.start_mark.line + 1
            elif name in ("MappingEndEvent", "SequenceEndEvent"):
                depth -= 1
    except (YAMLError, RecursionError):
        pass
    return 1


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


def _syntax_error(exc: YAMLError, text: str, file: str) -> YamlSyntaxError:
    n_lines = max(1, len(text.splitlines()))
    if isinstance(exc, MarkedYAMLError):
        problem = exc.problem or str(exc)
        mark, context = exc.problem_mark, exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        message = f"invalid YAML: {problem}"
        if context is not None and exc.context:
            message += f" ({exc.context} on line {context.line + 1})"
            if line > n_lines:  # the error surfaced at the end of the file: point at what was left open
                line = context.line + 1
        return YamlSyntaxError(file, min(line, n_lines), message, _syntax_hint(problem))
    if isinstance(exc, ReaderError):
        line = text[: exc.position].count("\n") + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return YamlSyntaxError(
            file, line, f"invalid YAML: character {char!r} is not allowed", "remove the control character"
        )
    return YamlSyntaxError(file, 1, f"invalid YAML: {exc}")


def _compose(text: str, file: str) -> Node | None:
    if len(text) > MAX_BYTES:
        raise YamlSyntaxError(
            file,
            1,
            f"the file is {len(text):,} characters; a pipeline file may have at most {MAX_BYTES:,}",
            "is this the right file?",
        )
    try:
        loader = _yaml()
        root = loader.compose(text)
    except RecursionError:
        raise YamlSyntaxError(
            file,
            _deepest_line(text),
            f"nested more than {MAX_DEPTH} levels deep",
            "a pipeline needs only a few levels",
        ) from None
    except YAMLError as exc:
        raise _syntax_error(exc, text, file) from None
    if root is not None:
        _expanded_size(root, file)
    return root


def parse_yaml(text: str, file: str) -> YamlDocument:
    """Compose ``text`` once and build its data and line map; raises ``YamlSyntaxError`` for bad YAML."""
    root = _compose(text, file)
    doc = YamlDocument(file=file, data=None)
    if root is not None:
        doc.lines[()] = _line(root)
        doc.data = _Builder(doc).build(root, ())
    return doc


def parse_value(text: str, where: str = "--set") -> Any:
    """One value (a ``--set`` right-hand side) read with the same YAML 1.2 rules and bounds as the file."""
    return parse_yaml(text, where).data
