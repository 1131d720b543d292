"""The static-cache decode loop of the rollout engine (:func:`model.rl.rollout.generate`), built for GPUs.

What makes a decode loop slow on a GPU, and what this one does instead:

- A cache that grows by ``torch.cat`` (transformers' ``DynamicCache``) copies every layer's keys and values at every
  step. Here each layer has one preallocated cache ``[B, n_kv, L, D]`` (L = prompt width + max new tokens); a step
  writes its one new slot with ``index_copy_`` at a slot index held on the device.
- Python launches hundreds of small kernels per step, and a host sync per token (``tolist``, ``all()``) keeps the
  GPU idle while it does. Here one step (embedding, every layer, the final norm and head, sampling, and the
  bookkeeping: slot, position, key mask, output buffer) reads and writes only tensors that stay put, so on CUDA it is
  captured once as a CUDA graph and replayed; stop tokens are looked for every ``sync_every`` steps (one host sync
  then), not per token.
- Attention spans only the cache slots in use, rounded up to ``span_step`` (one graph per span), as a grouped
  matmul over the ``n_kv`` heads (the keys are read once per kv head, never repeated for GQA).
- Finished rows: when at most half of the rows still run, the batch is compacted (the cache, positions, masks and
  draws of the running rows are gathered; graphs for the new size are captured as needed). Rows that finished
  between checks run on harmlessly until then: their tokens after the stop are cut on the host.
- A step that cannot be captured runs eagerly for the rest of its batch, with a RuntimeWarning (seen on an H200:
  the ``debug`` GLM model in fp32, whose capture met a host-to-device copy; in bf16 it captures).
- Sampling stays on the device with the engine's own :func:`model.rl.rollout.sample_next` and the same per-row
  uniform draws, so a row's tokens do not depend on the batch, exactly as in the dynamic loop.

Runners (one per model family) do the math with the model's own modules and pre-fused weights (q, k and v in one
GEMM, gate and up in one): :class:`GlmStaticRunner` for :class:`model.glm.GLMForCausalLM` (its MoE layers run the
grouped-GEMM path of model/moe.py, which has no host sync), :class:`LlamaStaticRunner` for transformers' Llama-family
models (``llama``, ``qwen2``: SmolLM2 is a Llama). Any other transformers model keeps the dynamic loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

LLAMA_TYPES = ("llama", "qwen2")
CUDA_GRAPHS = True  # module switch (benchmarks/rl.py --ablate times the static loop without graphs)


def supports_static(model: torch.nn.Module, is_glm: bool) -> bool:
    """Whether :func:`static_generate` can run ``model``: our GLM model, or a Llama-family transformers model."""
    if is_glm:
        return True
    cfg = getattr(model, "config", None)
    if getattr(cfg, "model_type", None) not in LLAMA_TYPES or getattr(cfg, "use_sliding_window", False):
        return False
    inner = getattr(model, "model", None)
    names = ("embed_tokens", "layers", "norm", "rotary_emb")
    return all(hasattr(inner, n) for n in names) and hasattr(model, "lm_head")


class _Layer:
    """One decoder layer's pieces: fused projections, norms, the MLP callable."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def _cat_or_none(parts: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    return None if any(p is None for p in parts) else torch.cat(list(parts))  # type: ignore[arg-type]


class _StaticRunner:
    """The cache and the cached forward shared by the runners; subclasses build ``self.layers`` and the rope."""

    layers: list[_Layer]
    n_heads: int
    n_kv: int
    head_dim: int

    def _alloc(self, batch: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        shape = (batch, self.n_kv, max_len, self.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in self.layers]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in self.layers]

    # -- model specific ----------------------------------------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def rope(self, h: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def head(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------------------------
    def _qkv(
        self, layer: _Layer, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from model.glm import apply_rope

        b, t, _ = h.shape
        x = layer.in_norm(h)
        qkv = F.linear(x, layer.qkv_w, layer.qkv_b)
        nq, nk = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        q = qkv[..., :nq].view(b, t, self.n_heads, self.head_dim)
        k = qkv[..., nq : nq + nk].view(b, t, self.n_kv, self.head_dim)
        v = qkv[..., nq + nk :].view(b, t, self.n_kv, self.head_dim)
        if layer.q_norm is not None:
            q, k = layer.q_norm(q), layer.k_norm(k)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def _post(self, layer: _Layer, h: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        h = h + F.linear(attn, layer.o_w, layer.o_b)
        return h + layer.mlp(layer.post_norm(h))

    def prefill(
        self, ids: torch.Tensor, pos: torch.Tensor, key_mask: torch.Tensor, repeat: int
    ) -> torch.Tensor:
        """ids/pos/key_mask [P, W] (left-padded prompts) -> last logits [P, V]; the cache rows ``p * repeat + j``
        (j < repeat) get prompt p's keys and values at slots 0..W."""
        b, t = ids.shape
        h = self.embed(ids)
        cos, sin = self.rope(h, pos)
        causal = torch.ones(t, t, dtype=torch.bool, device=ids.device).tril()
        mask = key_mask[:, None, :] & causal[None]
        mask = mask | torch.eye(t, dtype=torch.bool, device=ids.device)[None]  # a pad query sees itself
        mask = mask[:, None]  # [P, 1, W, W]
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, h, cos, sin)
            kt, vt = k.transpose(1, 2), v.transpose(1, 2)  # [P, nkv, W, D]
            self.k[i][:, :, :t] = kt.repeat_interleave(repeat, 0) if repeat > 1 else kt
            self.v[i][:, :, :t] = vt.repeat_interleave(repeat, 0) if repeat > 1 else vt
            out = F.scaled_dot_product_attention(
                q.transpose(1, 2), kt, vt, attn_mask=mask, enable_gqa=self.n_kv != self.n_heads
            )
            h = self._post(layer, h, out.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim))
        return self.head(h[:, -1])

    def decode(
        self, tok: torch.Tensor, pos: torch.Tensor, slot: torch.Tensor, key_mask: torch.Tensor, span: int
    ) -> torch.Tensor:
        """tok/pos [B] at cache slot ``slot`` (a one-element device tensor), key_mask [B, >= span] -> logits
        [B, V]. Attends over slots 0..span (span >= slot + 1); no host sync, so it can be graph-captured."""
        b = tok.shape[0]
        h = self.embed(tok[:, None])  # [B, 1, H]
        cos, sin = self.rope(h, pos[:, None])
        g = self.n_heads // self.n_kv
        neg = torch.zeros(b, 1, 1, span, dtype=torch.float32, device=tok.device).masked_fill(
            ~key_mask[:, None, None, :span], float("-inf")
        )
        scale = 1.0 / math.sqrt(self.head_dim)
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, h, cos, sin)
            self.k[i].index_copy_(2, slot, k.transpose(1, 2))
            self.v[i].index_copy_(2, slot, v.transpose(1, 2))
            qg = q.view(b, self.n_kv, g, self.head_dim)  # [B, nkv, g, D]: heads of one kv group together
            scores = torch.matmul(qg, self.k[i][:, :, :span].transpose(-1, -2)).float() * scale + neg
            probs = torch.softmax(scores, dim=-1).to(q.dtype)  # [B, nkv, g, span]
            out = torch.matmul(probs, self.v[i][:, :, :span])  # [B, nkv, g, D]
            h = self._post(layer, h, out.reshape(b, 1, self.n_heads * self.head_dim))
        return self.head(h[:, 0])

    def select(self, rows: torch.Tensor) -> None:
        self.k = [t.index_select(0, rows) for t in self.k]
        self.v = [t.index_select(0, rows) for t in self.v]


class GlmStaticRunner(_StaticRunner):
    """:class:`model.glm.GLMForCausalLM` (main layers; the MTP layer is not run)."""

    def __init__(self, model: Any, batch: int, max_len: int) -> None:
        cfg = model.config
        self.m = model
        self.n_heads, self.n_kv, self.head_dim = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        )
        self.layers = []
        for layer in model.main_layers:
            a = layer.self_attn
            projs = (a.q_proj, a.k_proj, a.v_proj)
            if layer.is_moe:
                moe = layer.mlp

                def mlp(x: torch.Tensor, moe: Any = moe) -> torch.Tensor:
                    return moe(x)[0]
            else:
                mlp = _fused_mlp(layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj, F.silu)
            self.layers.append(
                _Layer(
                    in_norm=layer.input_layernorm,
                    post_norm=layer.post_attention_layernorm,
                    qkv_w=torch.cat([p.weight for p in projs]),
                    qkv_b=_cat_or_none([p.bias for p in projs]),
                    o_w=a.o_proj.weight,
                    o_b=a.o_proj.bias,
                    q_norm=a.q_norm if a.use_qk_norm else None,
                    k_norm=a.k_norm if a.use_qk_norm else None,
                    mlp=mlp,
                )  # fmt: skip
            )
        p = model.model.embed_tokens.weight
        self._alloc(batch, max_len, p.dtype, p.device)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.m.model.embed_tokens(ids)

    def rope(self, h: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.m.model.rotary_emb(pos, h.dtype)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.m.lm_head(self.m.model.norm(h))


class LlamaStaticRunner(_StaticRunner):
    """transformers' Llama-family causal LMs (SmolLM2, Llama, Qwen2), walked module by module."""

    def __init__(self, model: Any, batch: int, max_len: int) -> None:
        cfg = model.config
        self.m = model
        self.n_heads, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.layers = []
        for layer in model.model.layers:
            a, mlp = layer.self_attn, layer.mlp
            projs = (a.q_proj, a.k_proj, a.v_proj)
            self.layers.append(
                _Layer(
                    in_norm=layer.input_layernorm,
                    post_norm=layer.post_attention_layernorm,
                    qkv_w=torch.cat([p.weight for p in projs]),
                    qkv_b=_cat_or_none([p.bias for p in projs]),
                    o_w=a.o_proj.weight,
                    o_b=a.o_proj.bias,
                    q_norm=None,
                    k_norm=None,
                    mlp=_fused_mlp(mlp.gate_proj, mlp.up_proj, mlp.down_proj, mlp.act_fn),
                )  # fmt: skip
            )
            scaling = getattr(a, "scaling", None)
            if scaling is not None and abs(scaling - self.head_dim**-0.5) > 1e-9:
                raise ValueError(f"attention scaling {scaling} is not 1/sqrt(head_dim); use the dynamic loop")
        p = model.model.embed_tokens.weight
        self._alloc(batch, max_len, p.dtype, p.device)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.m.model.embed_tokens(ids)

    def rope(self, h: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.m.model.rotary_emb(h, pos)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.m.lm_head(self.m.model.norm(h))


def _fused_mlp(
    gate: torch.nn.Linear,
    up: torch.nn.Linear,
    down: torch.nn.Linear,
    act: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``down(act(gate(x)) * up(x))`` with gate and up as one GEMM."""
    w = torch.cat([gate.weight, up.weight])
    b = _cat_or_none([gate.bias, up.bias])
    n = gate.weight.shape[0]

    def mlp(x: torch.Tensor) -> torch.Tensor:
        gu = F.linear(x, w, b)
        return down(act(gu[..., :n]) * gu[..., n:])

    return mlp


def make_runner(model: torch.nn.Module, is_glm: bool, batch: int, max_len: int) -> _StaticRunner:
    return (GlmStaticRunner if is_glm else LlamaStaticRunner)(model, batch, max_len)


class _Batch:
    """The running rows' device state; every tensor here stays put between compactions (graph inputs)."""

    def __init__(
        self,
        rows: torch.Tensor,
        tok: torch.Tensor,
        pos: torch.Tensor,
        key_mask: torch.Tensor,
        uniforms: torch.Tensor,
        out: torch.Tensor,
        slot: torch.Tensor,
        step: torch.Tensor,
    ) -> None:
        self.rows, self.tok, self.pos, self.key_mask = rows, tok, pos, key_mask
        self.uniforms, self.out, self.slot, self.step = uniforms, out, slot, step
        self.graphs: dict[int, Any] = {}
        self.pool: Any = None  # this batch's graph memory pool (shared by its graphs; freed with them)
        self.eager = False  # a capture failed: the rest of this batch runs eagerly


@torch.no_grad()
def static_generate(
    model: torch.nn.Module,
    is_glm: bool,
    ids: torch.Tensor,
    pos: torch.Tensor,
    key_mask: torch.Tensor,
    n_samples: int,
    uniforms: torch.Tensor,
    temperature: float,
    top_p: float,
    stop_ids: Sequence[int],
    *,
    sync_every: int = 16,
    span_step: int = 64,
    cuda_graphs: bool | None = None,
) -> tuple[list[list[int]], list[bool]]:
    """Decode every row: ids/pos/key_mask [P, W] of the left-padded prompts on the model's device, ``n_samples``
    rows per prompt, ``uniforms`` [P * n_samples, n_new] float64 (the per-row draws). Returns each row's tokens
    (up to and including its first stop id) and whether it was truncated (no stop id within ``n_new``)."""
    from model.rl.rollout import sample_next

    device = ids.device
    p_count, width = ids.shape
    rows, n_new = uniforms.shape
    max_len = width + n_new
    runner = make_runner(model, is_glm, rows, max_len)
    logits = runner.prefill(ids, pos, key_mask, n_samples)
    if n_samples > 1:
        logits = logits.repeat_interleave(n_samples, 0)
    uniforms = uniforms.to(device)
    out_all = torch.full((rows, n_new), -1, dtype=torch.long, device=device)
    first = sample_next(logits, uniforms[:, 0], temperature, top_p)
    del logits
    stops = torch.tensor(list(stop_ids) or [-1], dtype=torch.long, device=device)
    full_mask = torch.zeros(rows, max_len, dtype=torch.bool, device=device)
    full_mask[:, :width] = key_mask.repeat_interleave(n_samples, 0) if n_samples > 1 else key_mask
    out = out_all.clone()
    out[:, 0] = first
    last_pos = pos[:, -1].repeat_interleave(n_samples, 0) if n_samples > 1 else pos[:, -1]
    batch = _Batch(
        rows=torch.arange(rows, device=device), tok=first.clone(), pos=(last_pos + 1).contiguous(),
        key_mask=full_mask, uniforms=uniforms, out=out,
        slot=torch.tensor([width], dtype=torch.long, device=device),
        step=torch.tensor([1], dtype=torch.long, device=device),
    )  # fmt: skip
    use_graphs = (CUDA_GRAPHS if cuda_graphs is None else cuda_graphs) and device.type == "cuda"

    def step(b: _Batch, span: int) -> None:
        """Forward the last token at ``slot``, sample token ``step``; advance the bookkeeping (all on device)."""
        b.key_mask.index_fill_(1, b.slot, True)
        lg = runner.decode(b.tok, b.pos, b.slot, b.key_mask, span)
        u = b.uniforms.index_select(1, b.step).squeeze(1)
        new = sample_next(lg, u, temperature, top_p)
        b.out.index_copy_(1, b.step, new[:, None])
        b.tok.copy_(new)
        b.pos.add_(1)
        b.slot.add_(1)
        b.step.add_(1)

    def run_step(b: _Batch, span: int) -> None:
        if not use_graphs or b.eager:
            step(b, span)
            return
        graph = b.graphs.get(span)
        if graph is not None:
            graph.replay()
            return
        # this step runs eagerly (on a side stream, which also warms up cuBLAS), then is captured for the next ones
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            step(b, span)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        if b.pool is None:
            b.pool = torch.cuda.graph_pool_handle()
        try:
            with torch.cuda.graph(graph, pool=b.pool):
                step(b, span)  # recorded, not run
        except RuntimeError as exc:  # never lose a rollout to a capture problem: finish this batch eagerly
            import warnings

            warnings.warn(
                f"CUDA graph capture failed ({exc}); decoding eagerly", RuntimeWarning, stacklevel=2
            )
            b.eager = True
            return
        b.graphs[span] = graph

    t = 1
    while t < n_new:
        for _ in range(min(sync_every, n_new - t)):
            span = min(max_len, -(-(width + t) // span_step) * span_step)
            run_step(batch, span)
            t += 1
        if t >= n_new:
            break
        stopped = torch.isin(batch.out[:, :t], stops).any(1)
        running = int((~stopped).sum())  # the one host sync per sync_every steps
        if running == 0:
            break
        if running <= batch.rows.shape[0] // 2:
            keep = (~stopped).nonzero().squeeze(-1)
            out_all.index_copy_(0, batch.rows, batch.out)
            runner.select(keep)
            batch = _Batch(
                rows=batch.rows[keep], tok=batch.tok[keep], pos=batch.pos[keep], key_mask=batch.key_mask[keep],
                uniforms=batch.uniforms[keep], out=batch.out[keep], slot=batch.slot.clone(),
                step=batch.step.clone(),
            )  # fmt: skip
    out_all.index_copy_(0, batch.rows, batch.out)
    return _cut(out_all[:, :t].tolist(), set(int(s) for s in stop_ids), n_new)


def _cut(rows: list[list[int]], stops: set[int], n_new: int) -> tuple[list[list[int]], list[bool]]:
    tokens, truncated = [], []
    for r in rows:
        cut = next((i + 1 for i, x in enumerate(r) if x in stops), None)
        tokens.append(r[:cut] if cut is not None else r)
        truncated.append(cut is None and len(r) == n_new)
    return tokens, truncated
