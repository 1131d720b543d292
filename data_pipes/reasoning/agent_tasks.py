"""Tool-requiring tasks for agent trajectories, as problem-table rows (``domain`` = ``agent``).

Four task kinds, each needing a real tool; ``meta.agent`` holds what the scripted agent and the checks read:

* ``calculator``: an arithmetic expression; a share are underspecified (``clarify``) so the agent must ask the
  simulated user for the missing numbers;
* ``python``: "what does function F of module M return for X": the module lives in the workspace, so the
  agent reads it and runs it in the sandbox;
* ``files``: "how many lines does data/notes_N.txt have": list, then read the workspace;
* ``search``: "find the page that mentions W": W is a word that only one document of the index holds.

Answers are computed here by trusted reference code, never by running the workspace modules.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

from data_pipes.io.atomic import atomic_write_text
from data_pipes.reasoning.problem_table import problem_row
from data_pipes.reasoning.tools_search import BM25Index

Ref = Callable[[int, int], int]
FUNCTIONS: list[tuple[str, str, Ref]] = [
    (
        "sum_squares",
        "def {f}(n):\n    return sum(i * i for i in range(n)) + {c}\n",
        lambda c, n: sum(i * i for i in range(n)) + c,
    ),
    (
        "digit_sum",
        "def {f}(n):\n    total = {c}\n    for ch in str(abs(n)):\n"
        "        total += int(ch)\n    return total\n",
        lambda c, n: c + sum(int(ch) for ch in str(abs(n))),
    ),
    (
        "collatz_steps",
        "def {f}(n):\n    steps = {c}\n    while n != 1:\n        n = n // 2 if n % 2 == 0 else 3 * n + 1\n"
        "        steps += 1\n    return steps\n",
        lambda c, n: c + _collatz(n),
    ),
    (
        "triangle",
        'def {f}(n):\n    """The n-th triangle number, shifted by {c}."""\n'
        "    return n * (n + 1) // 2 + {c}\n",
        lambda c, n: n * (n + 1) // 2 + c,
    ),
]
WORDS = (
    "alpha river stone cloud maple ember quartz delta harbor meadow falcon cedar lumen orbit prism".split()
)
N_MODULES, N_NOTES = 8, 8


def _collatz(n: int) -> int:
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def _module(i: int, seed: int) -> tuple[str, str, int, Ref]:
    rng = random.Random(f"module:{seed}:{i}")
    name, template, ref = FUNCTIONS[i % len(FUNCTIONS)]
    c = rng.randrange(0, 50)
    return f"mod_{i}.py", template.format(f=name, c=c), c, ref


def _notes(i: int, seed: int) -> str:
    rng = random.Random(f"notes:{seed}:{i}")
    return "".join(
        " ".join(rng.choices(WORDS, k=rng.randrange(2, 8))) + "\n" for _ in range(rng.randrange(3, 40))
    )


def build_workspace(root: str, seed: int) -> None:
    """The read-only workspace the file and python tasks refer to (deterministic in ``seed``)."""
    os.makedirs(os.path.join(root, "data"), exist_ok=True)
    files = {f"mod_{i}.py": _module(i, seed)[1] for i in range(N_MODULES)}
    files |= {f"data/notes_{i}.txt": _notes(i, seed) for i in range(N_NOTES)}
    files["README.md"] = "Workspace of small modules (mod_*.py) and notes (data/).\n"
    for rel, text in files.items():
        atomic_write_text(os.path.join(root, rel), text)


def _row(kind: str, i: int, seed: int, prompt: str, answer: str, difficulty: str, **agent: object) -> dict:
    return problem_row(
        id=f"agent-{kind}-{seed}-{i}",
        prompt=prompt,
        source=f"agent:{kind}",
        domain="agent",
        difficulty=difficulty,
        answer=answer,
        meta={"agent": {"task": kind, **agent}},
    )


def calculator_task(i: int, seed: int, clarify_share: float) -> dict:
    rng = random.Random(f"calc:{seed}:{i}")
    if rng.random() < clarify_share:
        n, price, ship = rng.randrange(2, 20), rng.randrange(3, 99), rng.randrange(1, 15)
        return _row(
            "calculator",
            i,
            seed,
            f"I ordered {n} notebooks. What did I pay in total, shipping included?",
            str(n * price + ship),
            "clarify",
            expression=f"{n} * {price} + {ship}",
            clarify={"reply": f"Each notebook costs {price} and shipping was {ship}."},
        )
    a, b, c, d = (rng.randrange(2, 999) for _ in range(4))
    expr = rng.choice(
        [f"{a} * {b} + {c}", f"({a} + {b}) * {c} - {d}", f"{a} ** 2 - {b} * {c}", f"({a} * {b}) // {c}"]
    )
    value = eval(expr, {"__builtins__": {}})  # noqa: S307 - our own expression of integer literals
    return _row("calculator", i, seed, f"Compute {expr} exactly.", str(value), "easy", expression=expr)


def python_task(i: int, seed: int) -> dict:
    rng = random.Random(f"py:{seed}:{i}")
    module, _src, c, ref = _module(rng.randrange(N_MODULES), seed)
    fname = FUNCTIONS[int(module[4:-3]) % len(FUNCTIONS)][0]
    arg = rng.randrange(3, 60)
    return _row(
        "python",
        i,
        seed,
        f"In the workspace, module `{module}` defines `{fname}`. What does `{fname}({arg})` return?",
        str(ref(c, arg)),
        "medium",
        module=module,
        function=fname,
        arg=arg,
    )


def files_task(i: int, seed: int) -> dict:
    rng = random.Random(f"files:{seed}:{i}")
    k = rng.randrange(N_NOTES)
    lines = len(_notes(k, seed).splitlines())
    return _row(
        "files",
        i,
        seed,
        f"How many lines does the note `notes_{k}.txt` in the workspace's data folder have?",
        str(lines),
        "easy",
        file=f"data/notes_{k}.txt",
    )


def search_task(i: int, seed: int, index: BM25Index) -> dict | None:
    """A word that exactly one document holds (None when the index has no such word)."""
    rng = random.Random(f"search:{seed}:{i}")
    unique = sorted(t for t, post in index.postings.items() if len(post) == 1 and len(t) >= 6 and t.isalpha())
    if not unique:
        return None
    term = rng.choice(unique)
    doc = index.postings[term][0][0]
    target = index.urls[doc] or index.ids[doc]
    what = "URL" if index.urls[doc] else "id"
    return _row(
        "search",
        i,
        seed,
        f"Which page of the local index mentions the word '{term}'? Give its {what}.",
        target,
        "easy",
        term=term,
        field=what.lower(),
    )
