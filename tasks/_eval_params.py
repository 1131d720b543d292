"""Typed params of the `eval` kind: one section per evaluation (held-out loss, FIM, problems), each optional."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.base import KindParams


class LossParams(KindParams):
    """Held-out loss and bits per byte per source, on documents (``text``, ``source``)."""

    inputs: list[str] | None = Field(
        None,
        description="documents inputs to score; default: every documents input without a `prompt` column",
    )
    sources: list[str] | None = Field(
        None, description="only these sources (default: all); unknown ones fail"
    )
    docs_per_source: int = Field(
        50,
        ge=1,
        description="held-out sample: the first N documents of each source in seeded hash order of id",
    )
    max_tokens: int = Field(
        512, ge=1, description="tokens scored per document: the first max_tokens of its text (bytes to match)"
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="documents inputs whose ids are never scored (e.g. the corpus the checkpoints trained on)",
    )
    row_tokens: int = Field(2048, ge=2, description="documents are packed into rows of this many tokens")


class FimParams(KindParams):
    """Fill-in-the-middle exact match: one seeded line of each code document is the middle, prompted in PSM."""

    inputs: list[str] | None = Field(None, description="documents inputs; default: those of `loss`")
    sources: list[str] | None = Field(
        None, description='only these sources; default: documents whose meta says {"format": "code"}'
    )
    docs_per_source: int = Field(20, ge=1, description="spans per source, in seeded hash order of id")
    max_middle_chars: int = Field(
        80, ge=1, description="the middle is a non-blank line of at most this length"
    )
    context_chars: int = Field(1024, ge=0, description="prefix and suffix kept around the middle, each")
    max_new_tokens: int = Field(48, ge=1, description="greedy tokens generated for the middle")
    exclude: list[str] | None = Field(
        None, description="documents inputs whose ids are never used; default: those of `loss`"
    )


class ProblemsParams(KindParams):
    """Greedy answers of chat checkpoints to `problems` rows, scored with the problems' verifiers."""

    inputs: list[str] | None = Field(
        None, description="problems inputs; default: every documents input with `prompt` and `answer` columns"
    )
    checkpoints: list[str] | None = Field(
        None, description="checkpoints that answer; default: those made by `sft` (all when none is)"
    )
    sources: list[str] | None = Field(None, description="only these sources (default: all)")
    per_source: int = Field(50, ge=1, description="problems per source, in seeded hash order of id")
    thinking: bool = Field(
        False, description="prompt in thinking mode (else the direct mode's empty think block)"
    )
    max_new_tokens: int = Field(128, ge=1, description="greedy tokens per answer")
    timeout_s: float = Field(10.0, gt=0, description="sandbox limit per code answer")


class EvalParams(KindParams):
    loss: LossParams | None = Field(default_factory=LossParams, description="null turns it off")
    fim: FimParams | None = Field(default_factory=FimParams, description="null turns it off")
    problems: ProblemsParams | None = Field(default_factory=ProblemsParams, description="null turns it off")
    seed: int = Field(0, description="added to the node seed: which documents, lines and problems are drawn")
    batch_size: int = Field(8, ge=1, description="prompts per generate call")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA (bf16) when present, else CPU"
    )
    threads: int = Field(
        1, ge=1, description="torch CPU threads (more are faster, and may change the last bits)"
    )
