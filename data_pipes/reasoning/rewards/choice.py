"""``multiple_choice``: the letter the completion commits to against the gold letter (science QA, GPQA-style).

The gold is ``answer``: a letter ``A``-``J``, or the text of one of ``meta.choices`` (a list of option texts,
lettered in order). The completion's final answer (``answers.final_answer``: the ``Answer:`` line, a
``\\boxed{}``, else the last line) is read as a letter when it is ``B``, ``(B)``, ``B)``, ``B.``, ``B: text``
or says "answer/option/choice (is) B"; failing that, as the text of a choice. A final answer naming no letter,
or several (``A or B``, ``A, C``), scores 0.
"""

from __future__ import annotations

import re

from data_pipes.reasoning.answers import final_answer
from data_pipes.reasoning.rewards.base import Problem, Reward, RewardResult, problem_meta, register

LETTERS = "ABCDEFGHIJ"
_LEAD = re.compile(r"^\s*\(?\s*([A-J])\s*\)?\s*(?:[.:)\]]|$|\s)")
_SAYS = re.compile(r"(?i:answer|option|choice)\s*(?i:is)?\s*[:=]?\s*\(?\s*([A-J])\b")
_ALONE = re.compile(r"(?<![A-Za-z])\(?([A-J])\)?(?![A-Za-z])")
_SEVERAL = re.compile(r"(?<![A-Za-z])\(?[A-J]\)?\s*(?:,|/|&|\bor\b|\band\b)\s*\(?[A-J]\)?(?![A-Za-z])")


def _norm(text: str) -> str:
    return " ".join(text.strip().strip("$").rstrip(".").casefold().split())


def gold_letter(problem: Problem) -> str | None:
    gold = str(problem.get("answer") or "").strip().strip("()").rstrip(".").strip()
    if len(gold) == 1 and gold.upper() in LETTERS:
        return gold.upper()
    choices = problem_meta(problem).get("choices") or []
    for i, choice in enumerate(choices[: len(LETTERS)]):
        if _norm(str(choice)) == _norm(gold):
            return LETTERS[i]
    return None


def chosen_letter(answer: str, choices: list[str]) -> str | None:
    """The one letter ``answer`` picks, or None (no letter, or several: "A or B", "A, C")."""
    if _SEVERAL.search(answer):
        return None
    for pattern in (_LEAD, _SAYS):
        m = pattern.search(answer)
        if m:
            return m.group(1)
    letters = set(_ALONE.findall(answer)) if len(answer) <= 12 else set()
    if len(letters) == 1:
        return letters.pop()
    for i, choice in enumerate(choices[: len(LETTERS)]):
        if _norm(str(choice)) == _norm(answer):
            return LETTERS[i]
    return None


@register
class MultipleChoiceReward(Reward):
    name = "multiple_choice"
    description = "the chosen option letter equals the gold letter, 1 or 0"

    def check(self, problem: Problem) -> str | None:
        return None if gold_letter(problem) else "reward_multiple_choice_bad_gold"

    def score(self, problem: Problem, completion: str) -> RewardResult:
        gold = gold_letter(problem)
        answer = final_answer(completion)
        if answer is None:
            return RewardResult(0.0, False, "no final answer after the trace")
        got = chosen_letter(answer[:1000], list(problem_meta(problem).get("choices") or []))
        ok = got is not None and got == gold
        return RewardResult(float(ok), ok, f"chose {got or 'nothing'}, gold {gold} (answer={answer[:60]!r})")
