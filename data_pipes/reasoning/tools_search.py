"""A small BM25 index (Robertson et al.; k1=1.2, b=0.75) over the ``text`` column of document shards: the
agent's ``search`` tool. Pure Python, posting lists in dicts: the pipeline's demo and test corpora are
thousands of documents, where this builds in well under a second; a real-scale index would be a library's job.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

TOKEN = re.compile(r"[a-z0-9_]+")


def tokenize(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


@dataclass(frozen=True)
class Hit:
    doc_id: str
    url: str
    score: float
    snippet: str


class BM25Index:
    def __init__(self, docs: list[tuple[str, str, str]], k1: float = 1.2, b: float = 0.75) -> None:
        """``docs``: (id, url, text) triples."""
        self.k1, self.b = k1, b
        self.ids = [d[0] for d in docs]
        self.urls = [d[1] for d in docs]
        self.texts = [d[2] for d in docs]
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.lengths: list[int] = []
        for i, (_id, _url, text) in enumerate(docs):
            counts = Counter(tokenize(text))
            self.lengths.append(sum(counts.values()))
            for term, tf in counts.items():
                self.postings[term].append((i, tf))
        self.avg_len = (sum(self.lengths) / len(self.lengths)) if self.lengths else 0.0

    def __len__(self) -> int:
        return len(self.ids)

    def df(self, term: str) -> int:
        return len(self.postings.get(term, ()))

    def idf(self, term: str) -> float:
        n, df = len(self.ids), self.df(term)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def search(self, query: str, k: int = 3) -> list[Hit]:
        scores: dict[int, float] = defaultdict(float)
        for term in set(tokenize(query)):
            idf = self.idf(term)
            for i, tf in self.postings.get(term, ()):
                norm = tf + self.k1 * (1 - self.b + self.b * self.lengths[i] / (self.avg_len or 1.0))
                scores[i] += idf * tf * (self.k1 + 1) / norm
        best = sorted(scores.items(), key=lambda kv: (-kv[1], self.ids[kv[0]]))[:k]
        return [Hit(self.ids[i], self.urls[i], round(s, 4), self._snippet(i, query)) for i, s in best]

    def _snippet(self, i: int, query: str, width: int = 160) -> str:
        text, terms = self.texts[i], tokenize(query)
        low = text.lower()
        at = min((p for t in terms if (p := low.find(t)) >= 0), default=0)
        start = max(0, at - width // 2)
        return " ".join(text[start : start + width].split())
