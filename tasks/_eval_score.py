"""Scoring one checkpoint on the `eval` kind's items: held-out loss and bits per byte, FIM exact match, problems.

- **Loss / bpb**: each document's text is tokenized with the checkpoint's own tokenizer (``AutoTokenizer`` on its
  folder), cut to the first ``max_tokens`` tokens, and scored after an ``<|endoftext|>`` that stands for "a new
  document starts" (the lm-evaluation-harness convention): every scored token is predicted, the first one too.
  nats = the sum of -log p(token | earlier tokens of the document); bytes = the UTF-8 bytes of the text those
  tokens cover (the whole text unless cut); bpb = nats / ln 2 / bytes. Forward passes use
  :class:`model.glm.GLMForCausalLM` with documents packed into rows under document masking
  (:func:`model.generate.token_nats`).
- **FIM**: the prompt is PSM, ``<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>`` with the
  tokenizer's sentinels; greedy decoding stops at end-of-text or a FIM/file sentinel; exact match compares the
  decoded text (stop token excluded) with the middle, character for character.
- **Problems**: the prompt is one user turn rendered with the checkpoint's shipped chat template
  (``apply_chat_template``, generation prompt, direct or thinking mode); greedy decoding stops at end-of-text or a
  role token; the answer is checked by ``data_pipes.reasoning.verify.verify_response`` (reasoning-gym's own
  scorer, math-verify, or the code sandbox).

One model per checkpoint does both: :class:`model.glm.GLMForCausalLM` loaded from the folder
(``model.export.load_hf``), decoding through the KV-cache engine of model/rl/rollout.py
(:func:`model.generate.greedy_generate` says why), in bf16 on CUDA when the node's device is CUDA, else fp32 on CPU.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from data_pipes.code.special_tokens import TOKENS
from tasks._eval_select import EvalInputError, FimSpan, LossDoc, Problem

FIM_STOPS = (
    TOKENS.fim_prefix,
    TOKENS.fim_middle,
    TOKENS.fim_suffix,
    TOKENS.fim_pad,
    TOKENS.file_sep,
    TOKENS.repo_name,
)
CHAT_STOPS = (TOKENS.user, TOKENS.system, TOKENS.observation, TOKENS.assistant)


@dataclass(frozen=True)
class Checkpoint:
    name: str
    path: str
    content_hash: str


class Scorer:
    """One checkpoint's tokenizer and model (loaded on first use) on ``device``."""

    def __init__(self, node: str, ck: Checkpoint, device: str) -> None:
        self.node, self.ck, self.device = node, ck, device
        if not os.path.isfile(os.path.join(ck.path, "config.json")):
            raise EvalInputError(
                f"node {node!r}: checkpoint input {ck.name!r} ({ck.path}) has no config.json; give a checkpoint "
                "node (pretrain, midtrain, sft) as input"
            )
        if not os.path.isfile(os.path.join(ck.path, "tokenizer.json")):
            raise EvalInputError(
                f"node {node!r}: checkpoint input {ck.name!r} ({ck.path}) has no tokenizer (tokenizer.json); "
                "train it with a tokenizer input (or from a pack node that records one) so the stage exports "
                "its tokenizer beside the weights, then rerun it"
            )
        from model.hf import hf_import

        AutoTokenizer = hf_import("AutoTokenizer")
        hf_logging = hf_import("logging", module="transformers.utils")

        hf_logging.disable_progress_bar()
        self.tok = AutoTokenizer.from_pretrained(ck.path, local_files_only=True)
        if self.tok.eos_token_id is None:
            raise EvalInputError(
                f"node {node!r}: the tokenizer of {ck.name!r} ({ck.path}/tokenizer_config.json) names no "
                "eos_token; set it to <|endoftext|>"
            )
        self.eos = int(self.tok.eos_token_id)
        self.pad = int(self.tok.pad_token_id) if self.tok.pad_token_id is not None else self.eos
        import json

        with open(os.path.join(ck.path, "config.json"), encoding="utf-8") as fh:
            self.positions = int(json.load(fh).get("max_position_embeddings", 0)) or 1 << 30
        self._glm: Any = None

    @property
    def dtype(self) -> Any:
        import torch

        return torch.bfloat16 if self.device == "cuda" else None

    def glm(self) -> Any:
        if self._glm is None:
            from model.export import load_hf

            self._glm = load_hf(self.ck.path, dtype=self.dtype).to(self.device).eval()
        return self._glm

    def check(self, loss_tokens: int | None, fim: bool, problems: bool) -> None:
        """What the tasks this checkpoint runs need, before any model runs: positions for ``loss_tokens`` + 1, the
        FIM sentinels, a chat template."""
        if loss_tokens is not None and loss_tokens + 1 > self.positions:
            raise EvalInputError(
                f"node {self.node!r}: params.loss.max_tokens {loss_tokens} (+1 for the leading end-of-text) "
                f"exceeds the {self.positions} positions of checkpoint {self.ck.name!r} ({self.ck.path}/config.json); "
                "lower params.loss.max_tokens"
            )
        vocab = self.tok.get_vocab()
        missing = [t for t in (TOKENS.fim_prefix, TOKENS.fim_suffix, TOKENS.fim_middle) if t not in vocab]
        if fim and missing:
            raise EvalInputError(
                f"node {self.node!r}: the tokenizer of {self.ck.name!r} ({self.ck.path}/tokenizer.json) has no "
                f"{missing} token(s); FIM needs a tokenizer with the FIM sentinels (tokenizer_train adds them), "
                "or set fim: null"
            )
        if problems and not getattr(self.tok, "chat_template", None):
            raise EvalInputError(
                f"node {self.node!r}: checkpoint {self.ck.name!r} ({self.ck.path}) ships no chat template "
                "(chat_template.jinja); answer problems with a checkpoint a training stage exported, or name the "
                "chat checkpoints in params.problems.checkpoints"
            )

    def token_ids(self, names: tuple[str, ...]) -> list[int]:
        vocab = self.tok.get_vocab()
        return sorted({self.eos, *(int(vocab[n]) for n in names if n in vocab)})

    # ---- held-out loss ------------------------------------------------------------------------------------------
    def loss(self, docs: list[LossDoc], max_tokens: int, row_tokens: int, progress: Any = None) -> list[dict]:
        """One item row per document: tokens, bytes, nats, and its loss and bpb."""
        from model.generate import token_nats

        seqs, nbytes = [], []
        # characters: tokens average far fewer, and the tokens far from the cut are those of the whole text
        cut = max_tokens * 8 + 256
        encs = self.tok([d.text[:cut] for d in docs], add_special_tokens=False, return_offsets_mapping=True)
        for k, d in enumerate(docs):
            ids, offsets = list(encs["input_ids"][k]), encs["offset_mapping"][k]
            if (
                len(d.text) > cut and len(ids) <= max_tokens + 8
            ):  # near the cut, tokens may differ: whole text
                enc = self.tok(d.text, add_special_tokens=False, return_offsets_mapping=True)
                ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
            if len(ids) > max_tokens:
                ids = ids[:max_tokens]
                scored = d.text[: offsets[len(ids) - 1][1]]
            else:
                scored = d.text
            seqs.append([self.eos, *ids])
            nbytes.append(len(scored.encode("utf-8", "surrogatepass")))
        nats = token_nats(
            self.glm(), seqs, row_tokens=max(row_tokens, max_tokens + 1), pad_id=self.pad, progress=progress
        )
        out = []
        for d, seq, nb, per_token in zip(docs, seqs, nbytes, nats, strict=True):
            total = float(sum(per_token))
            out.append(
                {
                    "task": "loss",
                    "input": d.input,
                    "source": d.source,
                    "id": d.id,
                    "tokens": len(seq) - 1,
                    "bytes": nb,
                    "nats": total,
                    "loss": total / (len(seq) - 1),
                    "bpb": total / math.log(2) / nb if nb else None,
                }
            )
        return out

    # ---- FIM ------------------------------------------------------------------------------------------------
    def fim(
        self, spans: list[FimSpan], max_new_tokens: int, batch_size: int, progress: Any = None
    ) -> list[dict]:
        from model.generate import greedy_generate

        prompts = []
        for s in spans:
            text = f"{TOKENS.fim_prefix}{s.prefix}{TOKENS.fim_suffix}{s.suffix}{TOKENS.fim_middle}"
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
            if len(ids) + 1 >= self.positions:
                raise EvalInputError(
                    f"node {self.node!r}: the FIM prompt of {s.id!r} has {len(ids)} tokens, beyond the "
                    f"{self.positions} positions of {self.ck.name!r}; lower params.fim.context_chars"
                )
            prompts.append(ids)
        stops = self.token_ids(FIM_STOPS)
        outs = greedy_generate(
            self.glm(), prompts, max_new_tokens, stop_ids=stops, batch_size=batch_size, pad_id=self.pad,
            max_positions=self.positions, progress=progress,
        )  # fmt: skip
        rows = []
        for s, new in zip(spans, outs, strict=True):
            ended = bool(new) and new[-1] in stops
            text = self.tok.decode(new[:-1] if ended else new, skip_special_tokens=False)
            rows.append(
                {
                    "task": "fim",
                    "input": s.input,
                    "source": s.source,
                    "id": s.id,
                    "tokens": len(new),
                    "expected": s.middle,
                    "output": text,
                    "correct": text == s.middle,
                    "detail": "stopped" if ended else f"no stop token within {max_new_tokens} tokens",
                }
            )
        return rows

    # ---- problems -------------------------------------------------------------------------------------------
    def problems(
        self, problems: list[Problem], max_new_tokens: int, thinking: bool, batch_size: int, timeout_s: float,
        progress: Any = None,
    ) -> list[dict]:  # fmt: skip
        from data_pipes.reasoning.verify import verify_response
        from model.generate import greedy_generate

        prompts = []
        for p in problems:
            text = self.tok.apply_chat_template(
                [{"role": "user", "content": p.row["prompt"]}],
                add_generation_prompt=True,
                enable_thinking=thinking,
                tokenize=False,
            )
            prompts.append(self.tok(text, add_special_tokens=False)["input_ids"])
        stops = self.token_ids(CHAT_STOPS)
        outs = greedy_generate(
            self.glm(), prompts, max_new_tokens, stop_ids=stops, batch_size=batch_size, pad_id=self.pad,
            max_positions=self.positions, progress=progress,
        )  # fmt: skip
        rows = []
        for p, new in zip(problems, outs, strict=True):
            ended = bool(new) and new[-1] in stops
            text = self.tok.decode(new[:-1] if ended else new, skip_special_tokens=False)
            verdict = verify_response(p.row, text, timeout_s=timeout_s)
            rows.append(
                {
                    "task": "problems",
                    "input": p.input,
                    "source": p.source,
                    "id": p.id,
                    "tokens": len(new),
                    "expected": p.row.get("answer") or "",
                    "output": text,
                    "correct": bool(verdict.ok),
                    "detail": f"{verdict.method}: {verdict.detail}"[:300],
                }
            )
        return rows
