"""Step-by-step arithmetic: reduce an expression one operation at a time, innermost-leftmost first.

The expression is parsed with Python's ``ast`` (the generators write Python-compatible infix) and evaluated
exactly with ``Fraction``; each step is written as ``a op b = c`` followed by the rewritten expression, which
is what a worked solution looks like. Written by hand because no library prints evaluation steps.
"""

from __future__ import annotations

import ast
from fractions import Fraction

from data_pipes.ast_parse import parse

OPS = {ast.Add: ("+", 1), ast.Sub: ("-", 1), ast.Mult: ("*", 2), ast.Div: ("/", 2)}


def fmt(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _lit(node: ast.AST) -> Fraction | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | Fraction):
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _lit(node.operand)
        if inner is not None and isinstance(node.operand, ast.Constant):
            return -inner
    return None


def show(node: ast.AST, parent: int = 0, right: bool = False) -> str:
    """The expression as text, with only the parentheses precedence needs."""
    value = _lit(node)
    if value is not None:
        text = fmt(value)
        return f"({text})" if "/" in text and parent >= 2 else text
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return f"-({show(node.operand)})"
    if isinstance(node, ast.BinOp) and type(node.op) in OPS:
        sym, prec = OPS[type(node.op)]
        text = f"{show(node.left, prec)} {sym} {show(node.right, prec, True)}"
        return f"({text})" if prec < parent or (right and prec == parent) else text
    raise ValueError(f"unsupported expression node {ast.dump(node)}")


def _reduce(node: ast.AST) -> tuple[ast.AST, str | None]:
    """One step: the first operation (left to right, innermost) whose operands are numbers."""
    if _lit(node) is not None:
        return node, None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _lit(node.operand)
        if inner is not None:
            return ast.Constant(-inner), f"-({fmt(inner)}) = {fmt(-inner)}"
        operand, step = _reduce(node.operand)
        return ast.UnaryOp(ast.USub(), operand), step
    if isinstance(node, ast.BinOp) and type(node.op) in OPS:
        a, b = _lit(node.left), _lit(node.right)
        if a is not None and b is not None:
            sym = OPS[type(node.op)][0]
            if sym == "/" and b == 0:
                raise ZeroDivisionError("division by zero in the expression")
            c = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else a}[sym]
            return ast.Constant(c), f"{fmt(a)} {sym} {fmt(b)} = {fmt(c)}"
        left, step = _reduce(node.left)
        if step is not None:
            return ast.BinOp(left, node.op, node.right), step
        right, step = _reduce(node.right)
        return ast.BinOp(node.left, node.op, right), step
    raise ValueError(f"unsupported expression node {ast.dump(node)}")


def solve_expression(expression: str, max_steps: int = 200) -> tuple[list[str], Fraction]:
    """(steps, value) of an infix expression with + - * / and parentheses."""
    node: ast.AST = parse(expression.strip().rstrip("=").strip(), mode="eval").body
    steps = [f"Start from {show(node)}."]
    for _ in range(max_steps):
        value = _lit(node)
        if value is not None:
            return steps, value
        node, step = _reduce(node)
        steps.append(f"{step}, so the expression becomes {show(node)}.")
    raise ValueError("too many steps")


def solve_linear(equation: str, variable: str) -> tuple[list[str], Fraction]:
    """Steps for ``a*x + b = c`` style equations (one variable, degree one), via sympy's coefficients."""
    import sympy

    x = sympy.Symbol(variable)
    lhs_text, rhs_text = equation.split("=")
    lhs, rhs = sympy.sympify(lhs_text, locals={variable: x}), sympy.sympify(rhs_text, locals={variable: x})
    expr = sympy.expand(lhs - rhs)
    a, b = expr.coeff(x, 1), expr.coeff(x, 0)
    if a == 0 or sympy.expand(expr - a * x - b) != 0:
        raise ValueError(f"not a linear equation in {variable}: {equation}")
    value = Fraction(str(sympy.Rational(-b, a)))
    steps = [
        f"Move everything to one side: {sympy.sstr(expr)} = 0.",
        f"The coefficient of {variable} is {a} and the constant term is {b}.",
        f"So {a}*{variable} = {-b}, and {variable} = {-b} / {a} = {fmt(value)}.",
    ]
    return steps, value
