"""``judge``: an LLM grades the completion against a rubric, through the HTTP teacher (rubric rewards).

The judge is any OpenAI-compatible chat server (vLLM, SGLang, a hosted API) reached with
``teachers.http.HttpTeacher``: concurrent requests, retries with backoff. It sees the rubric (the problem's
``meta.rubric``, else ``options.rubric``), the problem, the reference answer when there is one, and the
response's visible part, and must end with ``Score: N`` (0 to 10). ``value`` is N / 10, ``passed`` is
``value >= pass_score``. A judge that fails (HTTP error after retries, no score in its reply) gives 0 with
``error`` set, so the stage counts it as this reward's error instead of failing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from data_pipes.reasoning.answers import split_think
from data_pipes.reasoning.rewards.base import Problem, Reward, RewardResult, problem_meta, register

SCORE_RE = re.compile(r"score\s*[:=]\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?", re.I)
JUDGE_SYSTEM = (
    "You grade a response to a task against a rubric. Be strict and brief: one or two sentences of "
    "justification, then a last line 'Score: N' with N an integer from 0 (fails the rubric) to 10 (fully "
    "meets it)."
)


class JudgeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(description="the OpenAI-compatible server, e.g. http://host:8000/v1")
    model: str = Field(description="the served judge model")
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    rubric: str = Field(
        "The response answers the task correctly, completely and helpfully.",
        description="used when the problem's meta has no rubric",
    )
    pass_score: float = Field(0.7, ge=0, le=1, description="value at or above which the response passes")
    concurrency: int = Field(8, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    retries: int = Field(2, ge=0)
    max_tokens: int = Field(256, ge=1)


def judge_messages(problem: Problem, completion: str, rubric: str) -> list[dict[str, str]]:
    _trace, visible = split_think(completion)
    reference = str(problem.get("answer") or "").strip()
    parts = [f"Rubric:\n{rubric}", f"Task:\n{problem.get('prompt') or ''}"]
    if reference:
        parts.append(f"Reference answer:\n{reference}")
    parts.append(f"Response:\n{visible}")
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def parse_score(text: str) -> float | None:
    """The last ``Score: N`` of the judge's reply, as N / 10 clipped to [0, 1]; None when absent."""
    hits = SCORE_RE.findall(text)
    return min(1.0, max(0.0, float(hits[-1]) / 10)) if hits else None


@register
class JudgeReward(Reward):
    name = "judge"
    description = "an LLM judge's rubric score (0-10, scaled to [0, 1]) through the HTTP teacher"
    Options = JudgeOptions
    options: JudgeOptions

    def score(self, problem: Problem, completion: str) -> RewardResult:
        return self.score_batch([problem], [completion])[0]

    def score_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[RewardResult]:
        from data_pipes.reasoning.teachers.base import GenRequest
        from data_pipes.reasoning.teachers.http import HttpTeacher

        if len(problems) != len(completions):
            raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
        o = self.options
        key = os.environ.get(o.api_key_env) if o.api_key_env else None
        teacher = HttpTeacher(
            o.base_url,
            o.model,
            api_key=key,
            concurrency=o.concurrency,
            timeout_s=o.timeout_s,
            retries=o.retries,
        )
        requests = [
            GenRequest(
                (str(p.get("id") or i), i),
                judge_messages(p, c, str(problem_meta(p).get("rubric") or o.rubric)),
                temperature=0.0,
                max_tokens=o.max_tokens,
            )
            for i, (p, c) in enumerate(zip(problems, completions, strict=True))
        ]
        out = []
        for resp in teacher.generate(requests):
            if resp.error:
                out.append(RewardResult(0.0, False, "judge failed", error=resp.error[:300]))
                continue
            value = parse_score(resp.text)
            if value is None:
                out.append(
                    RewardResult(0.0, False, "judge failed", error=f"no 'Score: N' in {resp.text[-120:]!r}")
                )
            else:
                out.append(RewardResult(value, value >= o.pass_score, f"judge score {value * 10:g}/10"))
        return out
