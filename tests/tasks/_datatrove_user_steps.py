"""User-written datatrove steps for tests/tasks/test_datatrove_kind.py, named by import path as a user's would be
(`tests.tasks._datatrove_user_steps:MinWordsFilter`)."""

from __future__ import annotations

import re

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.formatters.base import BaseFormatter


class MinWordsFilter(BaseFilter):
    """Drops documents with fewer than ``min_words`` words (reason ``too_few_words``); records ``n_words``."""

    name = "min words"

    def __init__(self, min_words: int = 5) -> None:
        super().__init__()
        if min_words < 1:
            raise ValueError(f"min_words must be at least 1, got {min_words}")
        self.min_words = min_words

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        n = len(doc.text.split())
        doc.metadata["n_words"] = n
        return True if n >= self.min_words else (False, "too_few_words")


class CollapseSpaces(BaseFormatter):
    """Collapses runs of spaces and tabs to one space."""

    name = "collapse spaces"

    def format(self, text: str) -> str:
        return re.sub(r"[ \t]+", " ", text)


class FussyFilter(BaseFilter):
    """Raises on documents containing ``trigger``; batched, so the bridge must find the one bad row."""

    name = "fussy"

    def __init__(self, trigger: str = "BOOM", batch_size: int = 2) -> None:
        super().__init__(batch_size=batch_size)
        self.trigger = trigger

    def filter(self, doc: Document) -> bool:
        if self.trigger in doc.text:
            raise ValueError(f"cannot judge a document containing {self.trigger!r}")
        return True

    def filter_batch(self, batch: list[Document]) -> list[bool]:
        return [self.filter(doc) for doc in batch]


class TagLang(PipelineStep):
    """A plain per-document step: tags each document with its script, skips documents without letters."""

    name = "tag"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            if not any(c.isalpha() for c in doc.text):
                continue
            doc.metadata["script"] = "Hani" if re.search(r"[\u4e00-\u9fff]", doc.text) else "Latn"
            yield doc


class LanguageQualityFilter(BaseFilter):
    """Keeps documents that fastText's lid.176 puts in ``languages`` (read as datatrove's LanguageFilter reads it,
    lazily from datatrove's asset cache), with no word of the list at ``blocklist`` and that the fastText quality
    classifier at ``model_url`` labels ``good``: a step that needs three assets, each fetched lazily through
    datatrove's asset function (two by the datatrove components it holds, one by its own property)."""

    name = "language and quality"

    def __init__(self, model_url: str, blocklist: str, languages: list[str] | None = None) -> None:
        from datatrove.pipeline.filters import FastTextClassifierFilter
        from datatrove.utils.lid import FT176LID

        super().__init__()
        self.lid = FT176LID(languages or ["en"])
        self.quality = FastTextClassifierFilter(model_url=model_url, keep_labels=[("good", 0.5)])
        self.blocklist = blocklist
        self._blocked: set[str] | None = None

    @property
    def blocked(self) -> set[str]:
        if self._blocked is None:
            from datatrove.io import cached_asset_path_or_download

            path = cached_asset_path_or_download(self.blocklist, namespace="filters", subfolder="blocklist")
            with open(path, encoding="utf-8") as fh:
                self._blocked = {line.strip() for line in fh if line.strip()}
        return self._blocked

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        (lang, _score), _ = self.lid.predict(doc)
        if lang not in self.lid.languages:
            return False, "wrong_language"
        if self.blocked & set(doc.text.lower().split()):
            return False, "blocked_word"
        return self.quality.filter(doc)
