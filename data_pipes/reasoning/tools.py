"""The agent's real local tools, each with a JSON-schema description (what the ``tools`` column holds):

* ``calculator``: arithmetic through ``ast`` (numbers, + - * / // % **, parentheses, a few math functions);
  never ``eval``; exponents and results are bounded so ``9**9**9`` is an error, not a hung worker;
* ``python``: the sandbox (``sandbox.run_python``): stdout, or the status and the error;
* ``search``: BM25 over the pipeline's own documents (``tools_search``);
* ``list_files`` / ``read_file``: read-only over one declared directory; paths are resolved (symlinks too)
  and must stay inside it.

A tool failure raises ``ToolError``; the agent loop turns it into an ``error: ...`` observation.
"""

from __future__ import annotations

import ast
import math
import operator
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from data_pipes.ast_parse import parse
from data_pipes.reasoning.tools_search import BM25Index


class ToolError(Exception):
    """What a tool says when the call cannot be served (bad arguments, a failed program, a missing file)."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[[dict[str, Any]], str]

    def schema(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    def __call__(self, args: dict[str, Any]) -> str:
        required = self.parameters.get("required", [])
        missing = [k for k in required if k not in args]
        unknown = [k for k in args if k not in self.parameters.get("properties", {})]
        if missing or unknown:
            raise ToolError(f"{self.name}: missing arguments {missing}, unknown arguments {unknown}")
        return self.fn(args)


def _params(required: list[str], **props: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {k: {"type": t, "description": d} for k, (t, d) in props.items()},
        "required": required,
    }


# ---- calculator ----------------------------------------------------------------------------------
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS: dict[str, Callable[..., float]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "floor": math.floor,
    "ceil": math.ceil,
    "log": math.log,
    "exp": math.exp,
}
_CONSTS = {"pi": math.pi, "e": math.e}
MAX_DIGITS = 1000


def calculate(expression: str) -> int | float:
    """The value of an arithmetic expression; ``ToolError`` for anything else."""
    if len(expression) > 500:
        raise ToolError("calculator: expression longer than 500 characters")
    try:
        tree = parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"calculator: not an expression: {exc.msg}") from None
    try:
        return _eval(tree.body)
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as exc:
        raise ToolError(f"calculator: {type(exc).__name__}: {exc}") from None


def _eval(node: ast.AST) -> Any:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTS:
        return _CONSTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and (
            abs(right) > 10_000 or abs(left) > 1 and abs(right) * math.log10(abs(left)) > MAX_DIGITS
        ):
            raise ToolError("calculator: power too large")
        value = _BINARY[type(node.op)](left, right)
        if isinstance(value, int) and value.bit_length() > MAX_DIGITS * 3.33:
            raise ToolError("calculator: result too large")
        return value
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCS
        and not node.keywords
    ):
        return _FUNCS[node.func.id](*[_eval(a) for a in node.args])
    raise ToolError(f"calculator: unsupported syntax {ast.dump(node)[:80]}")


def format_number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def calculator_tool() -> Tool:
    return Tool(
        "calculator",
        "Evaluate an arithmetic expression: numbers, + - * / // % **, parentheses, sqrt, abs, round, min, "
        "max, floor, ceil, log, exp, pi, e.",
        _params(["expression"], expression=("string", "the expression, e.g. (3 + 4) * 12")),
        lambda a: format_number(calculate(str(a["expression"]))),
    )


# ---- python --------------------------------------------------------------------------------------
def python_tool(timeout_s: float = 5.0, memory_mb: int = 512) -> Tool:
    from data_pipes.reasoning.sandbox import run_python

    def run(args: dict[str, Any]) -> str:
        res = run_python(str(args["code"]), timeout_s=timeout_s, memory_mb=memory_mb)
        if not res.ok:
            raise ToolError(f"python: {res.reason()}")
        return res.stdout.rstrip("\n") or "(no output)"

    return Tool(
        "python",
        "Run a Python 3 program in a sandbox (no network, no files outside its own directory) and return "
        "what it prints.",
        _params(["code"], code=("string", "the complete program; print the result")),
        run,
    )


# ---- search --------------------------------------------------------------------------------------
def search_tool(index: BM25Index, k: int = 3) -> Tool:
    def run(args: dict[str, Any]) -> str:
        hits = index.search(str(args["query"]), k=int(args.get("k", k)))
        if not hits:
            return "no results"
        return "\n".join(
            f"[{i + 1}] id={h.doc_id} url={h.url} score={h.score}\n    {h.snippet}"
            for i, h in enumerate(hits)
        )

    return Tool(
        "search",
        f"Search the local document index ({len(index)} pages) by keywords; returns the best pages with ids, "
        "urls and snippets.",
        _params(["query"], query=("string", "keywords"), k=("integer", "how many results (default 3)")),
        run,
    )


# ---- files ---------------------------------------------------------------------------------------
def _inside(root: str, rel: str) -> str:
    real_root = os.path.realpath(root)
    path = os.path.realpath(os.path.join(real_root, rel))
    if path != real_root and not path.startswith(real_root + os.sep):
        raise ToolError(f"path {rel!r} is outside the workspace")
    return path


def file_tools(root: str, max_bytes: int = 64 * 1024) -> list[Tool]:
    def list_files(args: dict[str, Any]) -> str:
        path = _inside(root, str(args.get("path", ".")))
        if not os.path.isdir(path):
            raise ToolError(f"list_files: {args.get('path', '.')!r} is not a directory")
        names = sorted(n + ("/" if os.path.isdir(os.path.join(path, n)) else "") for n in os.listdir(path))
        return "\n".join(names) or "(empty)"

    def read_file(args: dict[str, Any]) -> str:
        path = _inside(root, str(args["path"]))
        if not os.path.isfile(path):
            raise ToolError(f"read_file: no file {args['path']!r}")
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
        text = data[:max_bytes].decode("utf-8", "replace")
        return text + ("\n[truncated]" if len(data) > max_bytes else "")

    return [
        Tool(
            "list_files",
            "List a directory of the read-only workspace.",
            _params([], path=("string", "directory relative to the workspace (default '.')")),
            list_files,
        ),
        Tool(
            "read_file",
            "Read a text file of the read-only workspace.",
            _params(["path"], path=("string", "file path relative to the workspace")),
            read_file,
        ),
    ]
