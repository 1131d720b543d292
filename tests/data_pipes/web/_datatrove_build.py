"""datatrove's side of the agreement tests (tests/data_pipes/web/test_datatrove_agreement.py), computed in its own
process: ``python -m tests.data_pipes.web._datatrove_build FOLDER RESULT``.

The ~420 real documents of ``_real_corpus`` and, for each, the verdicts of datatrove's filters (default parameters,
C4 in both ``split_paragraph`` modes), FineWeb's verdict on C4's text where C4 keeps the document (what the chain
test needs) and datatrove's sentence split. Its spaCy word tokenizer makes this most of a minute of single-core work
on a busy machine, so tests/conftest.py starts it in the background when the session starts (tests/_background.py);
the tests compute our side in their own process and compare. RESULT (a pickle) holds the documents and datatrove's
results, or the modules that are not installed. FOLDER is unused (nothing is written but RESULT).
"""

from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path

NEEDED = ("spacy", "datatrove")


def theirs(flt: object, text: str) -> tuple[str | None, str]:
    """datatrove's verdict on one document: (reason or None when kept, the document's text afterwards)."""
    from datatrove.data import Document

    doc = Document(text=text, id="x")
    res = flt.filter(doc)  # type: ignore[attr-defined]
    return (None if res is True else res[1] if isinstance(res, tuple) else "dropped"), doc.text


def filters(split_paragraph: bool = True) -> dict[str, object]:
    """datatrove's four English filters at their default parameters (C4 in the given mode)."""
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    return {
        "gopher_quality": GopherQualityFilter(),
        "gopher_repetition": GopherRepetitionFilter(),
        "c4": C4QualityFilter(split_paragraph=split_paragraph),
        "fineweb": FineWebQualityFilter(),
    }


def build() -> dict:
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        return {"missing": missing}
    from _real_corpus import real_documents
    from datatrove.utils.text import split_into_sentences

    docs = list(real_documents())
    texts = [t for _, t in docs]
    verdicts = {name: [theirs(flt, t) for t in texts] for name, flt in filters().items()}
    fineweb, c4_sentences = filters()["fineweb"], filters(split_paragraph=False)["c4"]
    return {
        "docs": docs,
        "verdicts": verdicts,
        # FineWeb on the text C4 leaves, for each document C4 keeps (None where C4 drops it)
        "fineweb_after_c4": [
            None if reason is not None else theirs(fineweb, text)[0] for reason, text in verdicts["c4"]
        ],
        "c4_sentence_mode": [theirs(c4_sentences, t) for t in texts],
        "sentences": [split_into_sentences(t) for t in texts],
    }


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))  # _real_corpus, as the tests import it
    result = Path(sys.argv[2])
    built = build()
    tmp = result.with_name(result.name + ".tmp")
    tmp.write_bytes(pickle.dumps(built))
    tmp.rename(result)  # the result appears whole, or not at all
