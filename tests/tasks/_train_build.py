"""The store that tests/tasks/test_train_kinds.py reads, built in its own process: ``python -m
tests.tasks._train_build FOLDER RESULT``.

``build_trained`` (pretrain killed with kill -9 after a DeepSpeed state, then the whole pipeline: pretrain resumes,
midtrain and SFT follow), then ``build_uninterrupted`` (pretrain again from scratch with a param that changes no
weight). Those runs are a few minutes of mostly single-core work, so tests/conftest.py starts them in the
background when the session starts (tests/_background.py), and the test module's fixtures wait for the result:
what the runs returned (manifests, progress events, live reports), pickled.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

from tests.tasks.test_train_kinds import build_trained, build_uninterrupted

if __name__ == "__main__":
    folder, result = Path(sys.argv[1]), Path(sys.argv[2])
    path, done = build_trained(folder)
    uninterrupted = build_uninterrupted(path)
    tmp = result.with_name(result.name + ".tmp")
    tmp.write_bytes(pickle.dumps({"path": path, "done": done, "uninterrupted": uninterrupted}))
    tmp.rename(result)  # the result appears whole, or not at all
