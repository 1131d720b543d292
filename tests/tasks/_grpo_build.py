"""The GRPO runs that tests/tasks/test_grpo_kind.py and tests/tasks/test_grpo_agentic_kind.py read, built in their
own process: ``python -m tests.tasks._grpo_build FOLDER RESULT``.

The `debug` policy checkpoint, then the ``grpo`` kind's uninterrupted run (test_grpo_kind's ``done``: 10 steps
through the engine and the real DeepSpeed launcher on CPU), then the agentic run (test_grpo_agentic_kind's
``done``). Those are half a minute or more of mostly single-core work, so tests/conftest.py starts them in the
background when the session starts (tests/_background.py), and the modules' fixtures wait for the result: the
policy's folder and each run's pipeline file and what the engine returned (manifests, progress events, live
reports), pickled. The tests that run more (kill -9 mid-RL, then resume) still run that part themselves.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

from tests.model.rl._ckpt import make_debug_checkpoint
from tests.tasks import test_grpo_agentic_kind, test_grpo_kind
from tests.tasks.test_train_kinds import run


def build(folder: Path) -> dict:
    policy = Path(make_debug_checkpoint(str(folder / "policy" / "ckpt")))
    path = test_grpo_kind.write(folder / "grpo" / "a", policy, every=0)
    grpo = (path, run(path))
    agentic_path = test_grpo_agentic_kind.write(folder / "grpo_agentic", policy)
    return {"policy": policy, "grpo": grpo, "agentic": (agentic_path, run(agentic_path))}


if __name__ == "__main__":
    folder, result = Path(sys.argv[1]), Path(sys.argv[2])
    built = build(folder)
    tmp = result.with_name(result.name + ".tmp")
    tmp.write_bytes(pickle.dumps(built))
    tmp.rename(result)  # the result appears whole, or not at all
