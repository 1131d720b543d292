"""A small tokenizer trained on real text: this checkout's own Python sources and the stdlib's docstrings."""

from __future__ import annotations

import json
import pathlib

import pytest
from tokenizers import Tokenizer

from data_pipes.tokens.bpe_train import save_hf_folder, train_bpe

ROOT = pathlib.Path(__file__).resolve().parents[3]


def sample_texts() -> list[str]:
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "data_pipes").rglob("*.py"))[:40]]
    texts += [m.__doc__ or "" for m in (json, pathlib, pytest)]
    return texts


@pytest.fixture(scope="session")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("tok")
    save_hf_folder(train_bpe(sample_texts(), 800), str(folder))
    return folder


@pytest.fixture(scope="session")
def tok(tok_dir: pathlib.Path) -> Tokenizer:
    return Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
