"""Pathology penalties: language mixing, repetition and broken format. Each is 0 for a clean completion and
-1 for a pathological one (``passed`` is False then), meant to be added with a weight next to a task's reward
(``RewardsConfig.weights``).

- ``language_mixing``: letters are counted per Unicode script (Latin, Han and kana, Hangul, Cyrillic, Arabic,
  Greek, Devanagari, Hebrew, Thai; code blocks and LaTeX left out); penalised when the scripts other than the
  dominant one hold more than ``max_share`` of the letters (and at least ``min_letters`` of them). This is the
  mixing the seed penalises (e.g. Chinese inside an English trace).
- ``repetition``: penalised when more than ``max_share`` of the words are repeats of an earlier word
  ``ngram``-gram, or of the non-empty lines repeat an earlier line (a decoding loop).
- ``format``: penalised when the template is broken: a ``<think>`` that is not first or not closed, more than
  one trace, an empty answer part, an odd number of code fences, or a ``<tool_call>`` that does not parse (and,
  with ``require_think``, no trace at all).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from pydantic import BaseModel, ConfigDict, Field

from data_pipes.reasoning.rewards.base import Problem, Reward, RewardResult, register
from data_pipes.reasoning.tool_calls import CALL_START, ToolCallError, parse_tool_calls

# the first word of a letter's Unicode name -> its script (stdlib unicodedata; kana count with the Han characters)
SCRIPTS = {
    "LATIN": "latin", "CJK": "cjk", "HIRAGANA": "cjk", "KATAKANA": "cjk", "HANGUL": "hangul",
    "CYRILLIC": "cyrillic", "ARABIC": "arabic", "GREEK": "greek", "DEVANAGARI": "devanagari",
    "HEBREW": "hebrew", "THAI": "thai",
}  # fmt: skip
_CODE = re.compile(r"```.*?(?:```|$)|`[^`\n]*`|\$\$.*?\$\$|\$[^$\n]*\$|\\\(.*?\\\)|\\\[.*?\\\]", re.S)


class MixingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_share: float = Field(
        0.05, ge=0, lt=1, description="largest tolerated share of minority-script letters"
    )
    min_letters: int = Field(5, ge=1, description="fewer minority-script letters are never penalised")


class FormatOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    require_think: bool = Field(False, description="a completion without a <think> block is broken too")


class RepetitionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ngram: int = Field(10, ge=2, description="word n-gram length")
    max_share: float = Field(0.3, gt=0, lt=1, description="largest tolerated share of repeated words / lines")


def script_counts(text: str) -> Counter[str]:
    """Letters per script, code blocks, inline code and LaTeX left out."""
    counts: Counter[str] = Counter()
    for ch in _CODE.sub(" ", text):
        if ch.isalpha():
            script = SCRIPTS.get(unicodedata.name(ch, "").split(" ", 1)[0])
            if script:
                counts[script] += 1
    return counts


def repeated_share(words: list[str], n: int) -> float:
    """Share of words covered by an ``n``-gram seen earlier in the text (first occurrences excluded)."""
    if len(words) < 2 * n:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    covered = [False] * len(words)
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        if gram in seen:
            covered[i : i + n] = [True] * n
        seen.add(gram)
    return sum(covered) / len(words)


def _penalty(problems: list[str]) -> RewardResult:
    if problems:
        return RewardResult(-1.0, False, "; ".join(problems)[:300])
    return RewardResult(0.0, True, "clean")


@register
class LanguageMixingPenalty(Reward):
    name = "language_mixing"
    description = "-1 when letters of a second script exceed max_share of the completion's letters"
    Options = MixingOptions
    options: MixingOptions

    def score(self, problem: Problem, completion: str) -> RewardResult:
        counts = script_counts(completion)
        total = sum(counts.values())
        if not total:
            return _penalty([])
        main, top = counts.most_common(1)[0]
        minority = total - top
        if minority >= self.options.min_letters and minority / total > self.options.max_share:
            others = ", ".join(f"{k}={v}" for k, v in counts.most_common() if k != main)
            return _penalty([f"mixed scripts: {main}={top}, {others} ({minority / total:.1%} minority)"])
        return _penalty([])


@register
class RepetitionPenalty(Reward):
    name = "repetition"
    description = "-1 when repeated word n-grams or repeated lines exceed max_share of the completion"
    Options = RepetitionOptions
    options: RepetitionOptions

    def score(self, problem: Problem, completion: str) -> RewardResult:
        o = self.options
        problems = []
        share = repeated_share(completion.split(), o.ngram)
        if share > o.max_share:
            problems.append(f"{share:.0%} of words repeat an earlier {o.ngram}-gram")
        lines = [ln.strip() for ln in completion.splitlines() if ln.strip()]
        if len(lines) >= 4:
            dup = 1 - len(set(lines)) / len(lines)
            if dup > o.max_share:
                problems.append(f"{dup:.0%} of lines repeat an earlier line")
        return _penalty(problems)


@register
class FormatPenalty(Reward):
    name = "format"
    description = "-1 when the response template is broken (think tags, empty answer, fences, tool calls)"
    Options = FormatOptions
    options: FormatOptions

    def score(self, problem: Problem, completion: str) -> RewardResult:
        problems = []
        opens, closes = completion.count("<think>"), completion.count("</think>")
        if self.options.require_think and not opens and not closes:
            problems.append("no <think> block")
        if opens or closes:
            if opens != 1 or closes != 1:
                problems.append(f"{opens} <think> and {closes} </think> (want one of each)")
            elif not completion.lstrip().startswith("<think>"):
                problems.append("text before <think>")
            elif completion.index("</think>") < completion.index("<think>"):
                problems.append("</think> before <think>")
        visible = completion.rsplit("</think>", 1)[-1] if closes else completion
        if not visible.strip():
            problems.append("empty answer after the trace")
        if visible.count("```") % 2:
            problems.append("unclosed ``` fence")
        if CALL_START in visible:
            try:
                parse_tool_calls(visible)
            except ToolCallError as exc:
                problems.append(f"bad tool call: {exc}")
        return _penalty(problems)
