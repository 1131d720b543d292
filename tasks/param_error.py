"""``ParamError``: a node's param that validation could not judge (it depends on the input's data) and that the run
found wrong, e.g. a filter expression naming a column the input lacks. The same inputs and params fail again on
every attempt, so ``flows.retry`` never retries it; the engine adds the param's YAML line (``locate``), and the
message ends with what to do.
"""

from __future__ import annotations

from typing import Any


class ParamError(ValueError):
    """``node``'s param at ``param`` (its path under ``params:``, e.g. ``("expr",)``) is wrong for its input:
    ``message`` says why, ``fix`` what to do. ``str()`` is ``file:line: nodes.<node>.params.<param>: message;
    fix`` once ``locate`` has named the pipeline file, and without ``file:line:`` before. Code that does not know
    its node (a shard task on a worker) gives ``node=""``; ``locate`` names it."""

    def __init__(
        self,
        node: str,
        param: tuple[str | int, ...],
        message: str,
        fix: str,
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        self.node, self.param, self.message, self.fix = node, tuple(param), message, fix
        self.file, self.line = file, line
        super().__init__(self._text())

    @property
    def yaml_path(self) -> str:
        """The dotted YAML path of the param, e.g. ``nodes.clean.params.expr`` (``params.expr`` before its node
        is known)."""
        head = ("nodes", self.node, "params") if self.node else ("params",)
        return ".".join(str(p) for p in (*head, *self.param))

    def _text(self) -> str:
        where = (
            f"{self.file}:{self.line}: " if self.file and self.line else f"{self.file}: " if self.file else ""
        )
        return f"{where}{self.yaml_path}: {self.message}; {self.fix}"

    def __str__(self) -> str:
        return self._text()

    def __reduce__(self) -> tuple[Any, ...]:  # a Dask worker's exception comes back pickled
        return (type(self), (self.node, self.param, self.message, self.fix, self.file, self.line))

    def locate(self, file: str, node: str = "") -> ParamError:
        """Name ``file`` and the param's line in it (or its nearest enclosing key's, e.g. ``params:`` when the
        value came from ``--set``), and ``node`` when the error did not; the file is read again, and a file that
        cannot be read leaves the line out."""
        from flows.yaml_source import YamlSyntaxError, parse_yaml

        self.file, self.node = file, self.node or node
        try:
            with open(file, encoding="utf-8") as fh:
                doc = parse_yaml(fh.read(), file)
            self.line = doc.line_of(("nodes", self.node, "params", *self.param))
        except (OSError, UnicodeDecodeError, YamlSyntaxError):
            self.line = None
        self.args = (self._text(),)
        return self
