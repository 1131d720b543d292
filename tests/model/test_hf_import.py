"""transformers imports from several threads at once (nodes started together run in worker threads of one process):
``model.train.main._model_config`` with ``init_from`` and :func:`model.hf.hf_import` in a fresh Python, where
transformers' lazy names are not resolved yet (a plain ``from transformers import AutoConfig`` in three threads
failed there with ImportError)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from model.config import model_config, to_hf

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    assert "transformers" not in sys.modules
    from model.train.main import _model_config
    from model.train.spec import TrainSpec
    assert "transformers" not in sys.modules  # the import stays lazy: model/ imports without it
    spec = TrainSpec.model_validate({
        "model": {"flavour": "debug", "init_from": sys.argv[1], "overrides": {"rope_theta": 1234.0}},
        "data": {"shards": ["unused"]}, "steps": 1, "checkpoint": {"dir": "unused"},
    })
    start = threading.Barrier(6)
    out, errs = [], []
    def work():
        start.wait()
        try:
            out.append(_model_config(spec))
        except Exception as exc:
            errs.append(repr(exc))
    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert not errs, errs
    assert len(out) == 6 and all(c == out[0] for c in out)
    assert out[0].rope_theta == 1234.0
    print("ok", out[0].num_hidden_layers)
    """
)


def test_model_config_from_threads_in_fresh_python(tmp_path: Path) -> None:
    cfg = model_config("debug")
    to_hf(cfg).save_pretrained(tmp_path / "parent")
    res = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / "parent")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["ok", str(cfg.num_hidden_layers)]


def test_hf_import_names() -> None:
    from model.hf import hf_import

    auto_config, auto_tok = hf_import("AutoConfig", "AutoTokenizer")
    assert auto_config.__name__ == "AutoConfig" and auto_tok.__name__ == "AutoTokenizer"
    with pytest.raises(ImportError, match="NoSuchThing"):
        hf_import("NoSuchThing")
