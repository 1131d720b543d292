"""The GLM-4.5 transformer in plain PyTorch: GQA with partial RoPE, QK-norm and qkv bias, first-k dense layers then
MoE layers, an MTP layer, and document masking for packed rows.

Usage::

    cfg = model_config("debug")
    model = GLMForCausalLM(cfg)          # weights from init_weights(seed=0)
    out = model(input_ids, doc_lens=doc_lens, labels=input_ids, mtp_weight=0.3, aux_weight=1e-4)
    out.loss.backward(); optimizer.step(); model.update_router_biases(u=1e-3)

Parameter names are those of transformers' ``Glm4MoeForCausalLM`` (``model.embed_tokens``, ``model.layers.{i}.
self_attn.{q,k,v,o}_proj``, ``...q_norm``/``k_norm``, ``...mlp...`` (see model/moe.py), ``...input_layernorm``,
``...post_attention_layernorm``, ``model.norm``, ``lm_head``), so ``model.state_dict()`` loads into HF as is. The MTP
layer is ``model.layers.{num_hidden_layers}`` with the published GLM-4.5 / DeepSeek-V3 checkpoint names (``enorm``,
``hnorm``, ``eh_proj``, ``shared_head.norm`` plus a full MoE decoder layer); the output head and the embedding are
shared with the main model (model/export.py writes copies, as the published checkpoints do).

Packed rows: ``doc_lens`` [B][n_b] gives each row's document segments (``sum <= S``, the rest is padding). Positions
restart at 0 in each segment, attention stays inside a segment (the padding tail is one more segment), and no loss
falls on a target outside its segment or on padding. Kernels (``attn_impl``): on CUDA in bf16/fp16, rows without
``doc_lens`` (one document each) go to cuDNN's fused causal attention through SDPA (``cudnn``; ``auto`` picks it
where it runs: compute capability >= 8.0), packed rows to ``torch.nn.attention.varlen.varlen_attn`` (flash attention
over the flattened rows) when torch has it (``varlen``, which also takes unpacked rows; asked for by name it also runs
an fp32 model: q/k/v cast to bf16 for the kernel, the output back to fp32, while ``auto`` keeps fp32 on exact SDPA);
else without ``doc_lens`` plain causal SDPA, and with them either
one causal SDPA call per document
(``segments``) or one SDPA call with a block-diagonal causal bool mask [B, 1, S, S] (``sdpa``); ``auto`` picks by a
measured cost model (per document unless the rows hold many tiny documents, and
always per document when the mask would pass 256 MiB). All give the logits of each document run alone.
Opt-in kernel for packed rows (whole rows then run as ``auto`` picks): ``flex``, FlexAttention with a same-document
causal block mask built once per layout (compiled on CUDA; on CPU torch runs it eagerly and has no backward: inference
and tests only); correct, 0.96x varlen on an H200 as trained. (``cudnn_packed``, cuDNN's ragged kernel, was removed:
its gradients came out NaN on the H200 while its forward was right; asking for it raises an error saying so.)

MTP (DeepSeek-V3 style, depth 1): position t combines ``enorm(embed(x[t+1]))`` and ``hnorm(h[t])`` (``h`` = main
model's output after the final norm, the hidden state transformers' ``MtpModel`` and vLLM feed it), runs them
through ``eh_proj`` and one decoder layer at position ``pos[t] + 1``, then ``shared_head.norm`` and the shared head
predict ``x[t+2]``.
Total loss = lm + ``mtp_weight`` * mtp + ``aux_weight`` * mean over MoE layers of the sequence balance loss.

Speed (docs/TRAIN_SPEED.md): nothing in a training step waits for the GPU (no ``.item()``, no data-dependent
shapes); :meth:`GLMForCausalLM.compile_layers` compiles the parts of each layer around the attention kernel.

Departures from the report: none in the math; bf16 / fp32 casting follows transformers (router and RoPE tables in
fp32). Weight init is normal(0, initializer_range) for every matrix (HF's), ones for norms, zeros for biases, drawn
from a seeded generator in parameter-name order so the same seed gives the same bytes on any device.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.kernels.qk import project_tail
from model.loss import linear_cross_entropy
from model.moe import MLP, ExpertImpl, MoE, TopkRouter, update_router_biases

AttnImpl = Literal["auto", "sdpa", "segments", "varlen", "cudnn", "flex"]
_ATTN_IMPLS = get_args(AttnImpl)
_REMOVED_ATTN = {
    "cudnn_packed": "cuDNN's ragged (packed-row) kernel gave NaN gradients on an H200 (its forward was right; "
    "docs/TRAIN_SPEED.md, fourth round), so it was removed"
}

# CPU cost model for packed rows (benchmarked with one thread, forward + backward): one SDPA call per document costs
# about as much as 5000 entries of a masked [S, S] score matrix. Below that the per-document loop wins (it skips the
# masked-out blocks, 6-19x faster on 4K rows); rows of many tiny documents are cheaper with one masked call.
_SEGMENT_CALL_COST = 5000
_MAX_MASK_BYTES = 1 << 28  # never build a bool mask above 256 MiB (a 32K row alone would need 1 GiB)

try:  # torch >= 2.10 on CUDA: flash-attention over packed sequences
    from torch.nn.attention.varlen import varlen_attn as _varlen_attn

    _VARLEN_ARGS = set(inspect.signature(_varlen_attn).parameters)
except ImportError:  # pragma: no cover - depends on the torch build
    _varlen_attn, _VARLEN_ARGS = None, set()


try:  # SDPA backend choice (torch >= 2.3); cuDNN's fused attention runs Hopper's own matrix instructions
    from torch.nn.attention import SDPBackend, sdpa_kernel

    _CUDNN_BACKEND = [SDPBackend.CUDNN_ATTENTION]
except ImportError:  # pragma: no cover - depends on the torch build
    sdpa_kernel, _CUDNN_BACKEND = None, []
_CUDNN_GQA: list[bool] = []  # whether cuDNN took enable_gqa (probed at the first GQA call)

try:  # torch >= 2.5: FlexAttention (a document block mask for packed rows; attn_impl="flex")
    from torch.nn.attention.flex_attention import flex_attention as _flex_attention
except ImportError:  # pragma: no cover - depends on the torch build
    _flex_attention = None
_FLEX_COMPILED: list[object] = []


def cudnn_attention_available(device: torch.device) -> bool:
    """cuDNN fused attention can run on ``device``: CUDA, compute capability >= 8.0, cuDNN's SDPA backend on."""
    if device.type != "cuda" or sdpa_kernel is None or not torch.backends.cudnn.is_available():
        return False
    return torch.cuda.get_device_capability(device) >= (8, 0) and torch.backends.cuda.cudnn_sdp_enabled()


def _cudnn_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention over whole rows through cuDNN's fused kernel: q [B, S, nh, D], k/v [B, S, nkv, D] ->
    [B, S, nh, D]. GQA goes to the kernel as is where this cuDNN build takes it (probed once), else k/v are
    repeated per q-head group first (a copy, and autograd sums the group's gradients back)."""
    # [B, n, S, D] views of dense [B, S, n, D] tensors (v arrives as a slice of the fused q/k/v output: made dense,
    # a small copy at few kv heads, so cuDNN sees one of the layouts it takes)
    q, k, v = (t.contiguous().transpose(1, 2) for t in (q, k, v))
    gqa = k.shape[1] != q.shape[1]
    if gqa and _CUDNN_GQA != [False]:
        try:
            with sdpa_kernel(_CUDNN_BACKEND):
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            _CUDNN_GQA[:] = [True]
            return out.transpose(1, 2)
        except RuntimeError:  # "No available kernel": this cuDNN path has no GQA; never asked again
            if _CUDNN_GQA == [True]:
                raise
            _CUDNN_GQA[:] = [False]
    if gqa:
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    with sdpa_kernel(_CUDNN_BACKEND):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return out.transpose(1, 2)


def _varlen_causal(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, max_len: int
) -> torch.Tensor:
    """Causal varlen attention, q [T, nh, D], k/v [T, nkv, D] -> [T, nh, D], across the varlen API's versions
    (torch 2.11: ``is_causal``; later: ``window_size``, some with ``enable_gqa``). GQA needs no repeated k/v: the
    flash kernels behind it take fewer kv heads as they are (and sum their gradients)."""
    kwargs: dict[str, object] = {}
    if "window_size" in _VARLEN_ARGS:
        kwargs["window_size"] = (-1, 0)
    else:
        kwargs["is_causal"] = True
    if k.shape[1] != q.shape[1] and "enable_gqa" in _VARLEN_ARGS:
        kwargs["enable_gqa"] = True
    if q.dtype not in (torch.bfloat16, torch.float16):  # an fp32 model: the flash kernel takes half precision
        half = torch.bfloat16  # only; bf16 keeps fp32's range. Autograd casts the gradients back to fp32 too
        out = _varlen_attn(q.to(half), k.to(half), v.to(half), cu, cu, max_len, max_len, **kwargs)
        return out.to(q.dtype)
    return _varlen_attn(q, k, v, cu, cu, max_len, max_len, **kwargs)


def _flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: object) -> torch.Tensor:
    """FlexAttention over [B, n, S, D] with a block mask: compiled on CUDA (its fused kernel; made once per
    process), eager elsewhere (torch's reference implementation, which builds the scores: for tests)."""
    fn = _flex_attention
    if q.device.type == "cuda":
        if not _FLEX_COMPILED:
            _FLEX_COMPILED.append(torch.compile(_flex_attention, dynamic=False))
        fn = _FLEX_COMPILED[0]
    return fn(q, k, v, block_mask=block_mask, enable_gqa=k.shape[1] != q.shape[1])  # type: ignore[misc, operator]


class RMSNorm(nn.Module):
    """RMSNorm computed in fp32, scaled in the input dtype (as transformers' ``Glm4MoeRMSNorm``)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for the first ``rotary_dim`` dims of each head (partial RoPE, rotate-half layout)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        rot = cfg.rotary_dim
        inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, rot, 2, dtype=torch.float32) / rot))  # [rot/2]
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """position_ids [B, S] -> cos, sin [B, S, rot] in ``dtype`` (computed in fp32)."""
        freqs = position_ids[..., None].float() * self.inv_freq.float()  # [B, S, rot/2]
        emb = torch.cat((freqs, freqs), dim=-1)  # [B, S, rot]
        return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, S, n, D], cos/sin [B, S, rot] -> x with its first rot dims rotated (rotate-half), the rest untouched."""
    rot = cos.shape[-1]
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]  # [B, S, 1, rot]
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    x1, x2 = x_rot[..., : rot // 2], x_rot[..., rot // 2 :]
    rotated = torch.cat((-x2, x1), dim=-1)
    return torch.cat((x_rot * cos + rotated * sin, x_pass), dim=-1)


@dataclass
class DocLayout:
    """Where the documents of a packed batch are. Built once per forward by :func:`doc_layout`."""

    position_ids: torch.Tensor  # [B, S] int64, restarting at 0 in every segment
    segment_ids: torch.Tensor  # [B, S] int64, segment number inside the row (the pad tail is the last one)
    valid: torch.Tensor  # [B, S] bool, False on padding
    packed: bool  # False: one document per row, no padding (plain causal attention)
    # segment lengths of each row, pad tails included
    row_seg_lens: list[list[int]] = field(default_factory=list)
    _mask: torch.Tensor | None = None
    _cu: tuple[torch.Tensor, int] | None = None
    _block_mask: object | None = None

    @property
    def seg_lens(self) -> list[int]:
        """Every segment of every row, in order."""
        return [n for row in self.row_seg_lens for n in row]

    def per_document_is_cheaper(self) -> bool:
        """CPU choice between one masked SDPA call and one causal call per document (see _SEGMENT_CALL_COST)."""
        b, s = self.segment_ids.shape
        if b * s * s > _MAX_MASK_BYTES:
            return True
        return len(self.seg_lens) * _SEGMENT_CALL_COST < b * s * s

    def sdpa_mask(self) -> torch.Tensor:
        """[B, 1, S, S] bool, True where query i may attend key j (same segment, j <= i)."""
        if self._mask is None:
            s = self.segment_ids.shape[1]
            same = self.segment_ids[:, :, None] == self.segment_ids[:, None, :]  # [B, S, S]
            causal = torch.ones(s, s, dtype=torch.bool, device=same.device).tril()
            self._mask = (same & causal)[:, None]
        return self._mask

    def block_mask(self) -> object:
        """FlexAttention's block mask of this layout (same segment, causal), built once per layout from the
        segments' block ranges (:func:`doc_block_mask`): blocks wholly outside every document are skipped by the
        kernel, blocks wholly inside one document run without the mask function."""
        if self._block_mask is None:
            self._block_mask = doc_block_mask(self.segment_ids)
        return self._block_mask

    def cu_seqlens(self) -> tuple[torch.Tensor, int]:
        """Cumulative segment starts over the flattened [B*S] tokens (int32, [n+1]) and the longest segment; built
        once per layout (every layer reuses it)."""
        if self._cu is None:
            lens = torch.tensor([0, *self.seg_lens], dtype=torch.int32)
            cu = _to_device(torch.cumsum(lens, 0, dtype=torch.int32), self.position_ids.device)
            self._cu = (cu, max(self.seg_lens))
        return self._cu


def doc_block_mask(segment_ids: torch.Tensor, block: int = 128) -> object:
    """FlexAttention ``BlockMask`` of causal attention inside segments, segment_ids [B, S] non-decreasing along each
    row. Built at block granularity from each block's lowest and highest segment id (a few [B, S/block, S/block]
    tensors; ``create_block_mask`` evaluates the mask function on all B x S x S pairs instead, the same result):
    kv block j < q block i holds attended pairs iff its last segment is the q block's first; it is full (no mask
    function needed) iff both blocks lie in that one segment; the diagonal block is always partial."""
    b, s = segment_ids.shape
    n = -(-s // block)
    seg = segment_ids
    if (
        n * block > s
    ):  # pad with the last id (out-of-range positions are masked by the kernel; blocks touching
        seg = torch.cat([seg, seg[:, -1:].expand(b, n * block - s)], dim=1)  # them are kept partial below)
    lo, hi = seg.view(b, n, block).amin(-1), seg.view(b, n, block).amax(-1)  # [B, n]
    idx = torch.arange(n, device=seg.device)
    lower = idx[None, :] < idx[:, None]  # [n(q), n(kv)]: kv block strictly before q block
    touches = hi[:, None, :] == lo[:, :, None]  # [B, q, kv]: kv block's last segment is the q block's first
    one = (lo == hi)[:, :, None] & (lo == hi)[:, None, :]
    full = lower & touches & one
    if n * block > s:
        full[:, -1, :] = False
        full[:, :, -1] = False
    partial = ((lower & touches) | torch.eye(n, dtype=torch.bool, device=seg.device)) & ~full

    def ordered(
        dense: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # [B, n, n] -> [B, 1, n], [B, 1, n, n]
        num = dense.sum(-1, dtype=torch.int32)[:, None]
        order = torch.argsort(dense.to(torch.int32), dim=-1, descending=True, stable=True).to(torch.int32)
        return num, order[:, None]

    def doc_causal(b_i: torch.Tensor, h: torch.Tensor, q_i: torch.Tensor, kv_i: torch.Tensor) -> torch.Tensor:
        return (segment_ids[b_i, q_i] == segment_ids[b_i, kv_i]) & (q_i >= kv_i)

    from torch.nn.attention.flex_attention import BlockMask

    return BlockMask.from_kv_blocks(
        *ordered(partial), *ordered(full), BLOCK_SIZE=block, mask_mod=doc_causal, seq_lengths=(s, s)
    )


def doc_layout(
    doc_lens: Sequence[Sequence[int]] | None, batch: int, seq_len: int, device: torch.device | str
) -> DocLayout:
    """The :class:`DocLayout` of a [batch, seq_len] batch whose row b holds documents of lengths ``doc_lens[b]``
    followed by padding (``None``: every row is one document, no padding)."""
    if doc_lens is None:
        pos = torch.arange(seq_len, device=device).expand(batch, seq_len)
        zeros = torch.zeros(batch, seq_len, dtype=torch.long, device=device)
        ones = torch.ones(batch, seq_len, dtype=torch.bool, device=device)
        return DocLayout(pos, zeros, ones, packed=False, row_seg_lens=[[seq_len]] * batch)
    if len(doc_lens) != batch:
        raise ValueError(
            f"doc_lens has {len(doc_lens)} rows but input_ids has {batch}: give one list per row"
        )
    positions, segments, valid, row_seg_lens = [], [], [], []
    for row, lens in enumerate(doc_lens):
        lens = [int(n) for n in lens]
        if any(n <= 0 for n in lens) or sum(lens) > seq_len:
            raise ValueError(
                f"doc_lens row {row} = {lens}: lengths must be positive and sum to at most seq_len {seq_len} "
                "(the rest of the row is padding)"
            )
        pad = seq_len - sum(lens)
        parts = lens + ([pad] if pad else [])
        row_seg_lens.append(parts)
        positions.append(torch.cat([torch.arange(n) for n in parts]))
        segments.append(torch.repeat_interleave(torch.arange(len(parts)), torch.tensor(parts)))
        valid.append(torch.arange(seq_len) < sum(lens))
    return DocLayout(
        _to_device(torch.stack(positions), device),
        _to_device(torch.stack(segments), device),
        _to_device(torch.stack(valid), device),
        packed=True,
        row_seg_lens=row_seg_lens,
    )


def _to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A CPU tensor onto ``device`` without making the host wait for the GPU (pinned, asynchronous on CUDA)."""
    if torch.device(device).type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def check_attn_impl(attn_impl: str) -> AttnImpl:
    """``attn_impl`` if it names a kernel this module has, else a ValueError saying which ones it has (and why a
    removed one went)."""
    if attn_impl in _REMOVED_ATTN:
        raise ValueError(
            f"attn_impl={attn_impl!r}: {_REMOVED_ATTN[attn_impl]}; use 'auto' (varlen FlashAttention-2 for packed "
            "rows, cuDNN for whole rows) or 'flex'"
        )
    if attn_impl not in _ATTN_IMPLS:
        raise ValueError(f"unknown attn_impl {attn_impl!r}: use one of {', '.join(_ATTN_IMPLS)}")
    return attn_impl  # type: ignore[return-value]


class Attention(nn.Module):
    """GQA with partial RoPE, optional QK-norm (per head, before RoPE) and optional qkv bias. HF: ``Glm4MoeAttention``."""

    def __init__(self, cfg: ModelConfig, attn_impl: AttnImpl = "auto") -> None:
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        )
        h, bias = cfg.hidden_size, cfg.attention_bias
        self.q_proj = nn.Linear(h, self.n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, h, bias=False)
        self.use_qk_norm = cfg.use_qk_norm
        if self.use_qk_norm:
            self.q_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
        self.attn_impl: AttnImpl = check_attn_impl(attn_impl)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], layout: DocLayout
    ) -> torch.Tensor:
        """x [B, S, H] -> [B, S, H]."""
        return self.o_proj(self.attend(*self.project(x, *rope), layout))

    def project(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, S, H] -> q [B, S, nh, D], k and v [B, S, nkv, D]: projections, QK-norm, RoPE."""
        b, s, _ = x.shape
        projs = (self.q_proj, self.k_proj, self.v_proj)
        # on GPU one GEMM for q, k and v (the weights keep HF's names; their concatenation is a small copy)
        if x.is_cuda:
            weight = torch.cat([p.weight for p in projs])
            bias = torch.cat([p.bias for p in projs]) if self.q_proj.bias is not None else None
            q, k, v = F.linear(x, weight, bias).split([p.out_features for p in projs], dim=-1)
        else:  # on CPU the copy costs more than the GEMM calls it saves
            q, k, v = (p(x) for p in projs)
        q = q.view(b, s, self.n_heads, self.head_dim)  # [B, S, nh, D]
        k = k.view(b, s, self.n_kv, self.head_dim)  # [B, S, nkv, D]
        v = v.view(b, s, self.n_kv, self.head_dim)
        fused = project_tail(self, q, k, v, cos, sin)  # round 10, opt-in (model/kernels/qk.py); None when off
        if fused is not None:
            return fused
        if self.use_qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: DocLayout) -> torch.Tensor:
        """Causal attention inside each document: q [B, S, nh, D], k/v [B, S, nkv, D] -> [B, S, nh * D]."""
        b, s = q.shape[:2]
        if self._use_cudnn(q, layout):  # whole rows (one document each): cuDNN's fused causal kernel
            return _cudnn_causal(q, k, v).reshape(b, s, self.n_heads * self.head_dim)
        if layout.packed and self.attn_impl == "flex":
            if _flex_attention is None:
                raise RuntimeError("attn_impl='flex' needs torch.nn.attention.flex_attention (torch >= 2.5)")
            out = _flex(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), layout.block_mask())
            return out.transpose(1, 2).reshape(b, s, self.n_heads * self.head_dim)
        if self._use_varlen(q):  # packed or not: one flash call over the flattened rows
            cu, max_len = layout.cu_seqlens()
            out = _varlen_causal(
                q.reshape(b * s, self.n_heads, self.head_dim),
                k.reshape(b * s, self.n_kv, self.head_dim),
                v.reshape(b * s, self.n_kv, self.head_dim),
                cu,
                max_len,
            )
            return out.view(b, s, self.n_heads * self.head_dim)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, n, S, D]
        gqa = self.n_kv != self.n_heads
        if layout.packed and self._per_document(layout):
            rows = []
            for row, lens in enumerate(layout.row_seg_lens):
                docs, start = [], 0
                for n in lens:  # causal attention inside each document alone: [1, n_heads, n, D]
                    part = slice(start, start + n)
                    qd, kd, vd = (
                        q[row : row + 1, :, part],
                        k[row : row + 1, :, part],
                        v[row : row + 1, :, part],
                    )
                    docs.append(F.scaled_dot_product_attention(qd, kd, vd, is_causal=True, enable_gqa=gqa))
                    start += n
                rows.append(torch.cat(docs, dim=2))
            out = torch.cat(rows)  # [B, n_heads, S, D]
        elif layout.packed:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=layout.sdpa_mask(), enable_gqa=gqa)
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        return out.transpose(1, 2).reshape(b, s, self.n_heads * self.head_dim)

    def _per_document(self, layout: DocLayout) -> bool:
        if self.attn_impl in ("sdpa", "segments"):
            return self.attn_impl == "segments"
        return layout.per_document_is_cheaper()

    def _use_cudnn(self, q: torch.Tensor, layout: DocLayout) -> bool:
        """cuDNN for rows without document packing: asked for by name (``cudnn``; packed rows then go to varlen),
        or by ``auto`` in half precision where cuDNN attention runs (faster than FlashAttention-2 at head_dim 128
        on an H200: docs/TRAIN_SPEED.md)."""
        if layout.packed or self.attn_impl not in ("auto", "cudnn", "flex"):
            return False
        if self.attn_impl == "flex":  # whole rows as auto picks them
            return q.dtype in (torch.bfloat16, torch.float16) and cudnn_attention_available(q.device)
        available = q.dtype in (torch.bfloat16, torch.float16) and cudnn_attention_available(q.device)
        if self.attn_impl == "cudnn" and not available:
            raise RuntimeError(
                "attn_impl='cudnn' needs a CUDA GPU of compute capability >= 8.0 with cuDNN attention and a bf16 or "
                "fp16 model; use 'auto'"
            )
        return available

    def _use_varlen(self, q: torch.Tensor) -> bool:
        if self.attn_impl in ("sdpa", "segments"):
            return False
        if self.attn_impl == "flex":  # whole rows (packed ones went to FlexAttention) as auto
            return (
                _varlen_attn is not None
                and q.device.type == "cuda"
                and q.dtype in (torch.bfloat16, torch.float16)
            )
        available = _varlen_attn is not None and q.device.type == "cuda"
        if self.attn_impl in ("varlen", "cudnn"):  # by name: fp32 too (bf16 in the kernel, _varlen_causal)
            if not available:
                raise RuntimeError("attn_impl='varlen' needs CUDA and torch.nn.attention.varlen; use 'auto'")
            return True
        # auto: half precision only; an fp32 model keeps exact fp32 attention (SDPA), as on CPU
        return available and q.dtype in (torch.bfloat16, torch.float16)


class DecoderLayer(nn.Module):
    """Pre-norm block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``; the mlp is dense or MoE by layer index."""

    def __init__(
        self, cfg: ModelConfig, layer_idx: int, expert_impl: ExpertImpl = "auto", attn_impl: AttnImpl = "auto"
    ) -> None:
        super().__init__()
        self.self_attn = Attention(cfg, attn_impl)
        self.is_moe = cfg.is_moe_layer(layer_idx)
        self.mlp = MoE(cfg, expert_impl) if self.is_moe else MLP(cfg.hidden_size, cfg.intermediate_size)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.compiled = False  # set by GLMForCausalLM.compile_layers
        self.compile_mode: str | None = None  # torch.compile mode of the regions (None: its default)
        # inductor options instead of a mode (None: the defaults of region_options; (): none)
        self.compile_options: tuple[tuple[str, object], ...] | None = None
        # whole rows on cuDNN: the layer as one graph, attention inside (set by compile_layers)
        self.whole_rows_graph = False

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        layout: DocLayout,
        aux_weight: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [B, S, H] -> (x [B, S, H], this layer's unweighted aux balance loss or None).

        Three parts: :func:`layer_pre` (norm, projections, QK-norm, RoPE), the attention kernel, :func:`layer_post`
        (output projection, residuals, norm, MLP or MoE). The two outer parts run through ``torch.compile`` after
        :meth:`GLMForCausalLM.compile_layers`; the kernel between them stays eager, so the packed layout's Python
        lists never reach a compiled graph (no recompiles as documents change)."""
        if (
            self.compiled
            and self.whole_rows_graph
            and _CUDNN_GQA != [False]
            and self.self_attn._use_cudnn(x, layout)
        ):
            return _compiled_whole(self.compile_mode)(self, x, *rope, aux_weight)
        pre, post = (
            _compiled_regions(
                self.compile_mode, region_options(self.compile_mode, self.compile_options, x.device)
            )
            if self.compiled
            else (layer_pre, layer_post)
        )
        q, k, v = pre(self, x, *rope)
        attn = self.self_attn.attend(q, k, v, layout)
        return post(self, x, attn, None if not layout.packed else layout.valid, aux_weight)


def layer_pre(
    layer: DecoderLayer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The part of a decoder layer before the attention kernel: q, k, v of ``input_layernorm(x)``."""
    return layer.self_attn.project(layer.input_layernorm(x), cos, sin)


def layer_post(
    layer: DecoderLayer, x: torch.Tensor, attn: torch.Tensor, valid: torch.Tensor | None, aux_weight: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The part after it: ``x + o_proj(attn)``, then ``+ mlp(post_attention_layernorm(.))`` (dense or MoE)."""
    x = x + layer.self_attn.o_proj(attn)
    h = layer.post_attention_layernorm(x)
    if layer.is_moe:
        h, aux = layer.mlp(h, valid, aux_weight)
    else:
        h, aux = layer.mlp(h), None
    return x + h, aux


def layer_whole(
    layer: DecoderLayer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, aux_weight: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A whole decoder layer over rows without packing, cuDNN attention inside (one graph: no break around the
    kernel, which takes no Python lists here)."""
    b, s = x.shape[:2]
    q, k, v = layer_pre(layer, x, cos, sin)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, n, S, D]
    with sdpa_kernel(_CUDNN_BACKEND):
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=k.shape[1] != q.shape[1])
    return layer_post(layer, x, attn.transpose(1, 2).reshape(b, s, -1), None, aux_weight)


_WHOLE: dict[str | None, object] = {}


def _compiled_whole(mode: str | None = None) -> object:
    """``torch.compile`` of :func:`layer_whole` (in ``mode``), made once per process and shared by every layer."""
    if mode not in _WHOLE:
        _WHOLE[mode] = torch.compile(layer_whole, dynamic=False, mode=mode)
    return _WHOLE[mode]


CUDA_REGION_OPTIONS: tuple[tuple[str, object], ...] = (("combo_kernels", True),)


def region_options(
    mode: str | None, options: tuple[tuple[str, object], ...] | None, device: torch.device
) -> tuple[tuple[str, object], ...] | None:
    """The inductor options the compiled regions run with: ``options`` as given (``()``: none), or, when neither a
    mode nor options were given, :data:`CUDA_REGION_OPTIONS` on CUDA (inductor's combo kernels: independent kernels
    such as q's and k's QK-norm + RoPE share one launch; +0.9% forward + backward on an H200, docs/TRAIN_SPEED.md)
    and none elsewhere. None means no options (torch.compile's defaults)."""
    if options is not None:
        return options or None
    if mode is None and device.type == "cuda":
        return CUDA_REGION_OPTIONS
    return None


_REGIONS: dict[tuple[str | None, tuple[tuple[str, object], ...] | None], tuple[object, object]] = {}


def _compiled_regions(
    mode: str | None = None, options: tuple[tuple[str, object], ...] | None = None
) -> tuple[object, object]:
    """``torch.compile`` of :func:`layer_pre` and :func:`layer_post` (in ``mode``, or with inductor ``options``),
    made once per process and shared by every layer (the modules' parameters are graph inputs, so dense and MoE
    layers make one graph each, not one per layer)."""
    key = (mode, options)
    if key not in _REGIONS:
        how: dict[str, object] = {"mode": mode} if options is None else {"options": dict(options)}
        _REGIONS[key] = (
            torch.compile(layer_pre, dynamic=False, **how),  # type: ignore[arg-type]
            torch.compile(layer_post, dynamic=False, **how),  # type: ignore[arg-type]
        )
    return _REGIONS[key]


def apply_norm(norm: RMSNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)``: the final norm and the MTP layer's output norm, run through :func:`_compiled_norm_fns` when
    ``compile_layers(norms=True)`` (eager they are about eight kernels forward and ten backward over [B, S, H])."""
    return norm(x)


def mtp_input(layer: MTPLayer, next_embeds: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """The MTP layer's input: ``eh_proj([enorm(next_embeds); hnorm(hidden)])``."""
    return layer.eh_proj(torch.cat([layer.enorm(next_embeds), layer.hnorm(hidden)], dim=-1))


def norms_compiled(setting: bool | None, device: torch.device) -> bool:
    """Whether the norms outside the layer regions run compiled on ``device``: ``setting`` as
    :meth:`GLMForCausalLM.compile_layers` left it (``None``: on CUDA only)."""
    return device.type == "cuda" if setting is None else setting


# torch.compile keywords of the norms outside the layer regions (tests trace them with backend="aot_eager")
NORM_COMPILE_KW: dict[str, object] = {"dynamic": False}
_NORM_FNS: list[tuple[object, object]] = []


def _compiled_norm_fns() -> tuple[object, object]:
    """``torch.compile`` of :func:`apply_norm` and :func:`mtp_input`, made once per process (the modules are graph
    inputs: every norm of one shape shares a graph)."""
    if not _NORM_FNS:
        _NORM_FNS.append(
            (torch.compile(apply_norm, **NORM_COMPILE_KW), torch.compile(mtp_input, **NORM_COMPILE_KW))
        )  # type: ignore[arg-type]
    return _NORM_FNS[0]


class SharedHead(nn.Module):
    """The MTP layer's output norm (``shared_head.norm``); the head matrix itself is the model's ``lm_head``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class MTPLayer(DecoderLayer):
    """Multi-token prediction layer (always MoE): ``eh_proj([enorm(e_{t+1}); hnorm(h_t)])`` then a decoder block."""

    def __init__(
        self, cfg: ModelConfig, layer_idx: int, expert_impl: ExpertImpl = "auto", attn_impl: AttnImpl = "auto"
    ) -> None:
        super().__init__(cfg, layer_idx, expert_impl, attn_impl)
        self.enorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.hnorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.eh_proj = nn.Linear(2 * cfg.hidden_size, cfg.hidden_size, bias=False)
        self.shared_head = SharedHead(cfg)
        # set by GLMForCausalLM.compile_layers: True / False, or None (compiled on CUDA only: norms_compiled)
        self.compiled_norms: bool | None = False

    def forward_mtp(
        self,
        next_embeds: torch.Tensor,
        hidden: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        layout: DocLayout,
        aux_weight: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """next_embeds [B, S, H] (embedding of x[t+1]), hidden [B, S, H] -> (normed output [B, S, H], aux or None)."""
        compiled = norms_compiled(self.compiled_norms, hidden.device)
        norm, first = _compiled_norm_fns() if compiled else (apply_norm, mtp_input)
        x = first(self, next_embeds, hidden)  # type: ignore[operator]
        x, aux = self.forward(x, rope, layout, aux_weight)
        return norm(self.shared_head.norm, x), aux  # type: ignore[operator]


class GLMModel(nn.Module):
    """Embedding, decoder layers (the MTP layer last, if any) and the final norm. HF: ``Glm4MoeModel``."""

    def __init__(
        self, cfg: ModelConfig, expert_impl: ExpertImpl = "auto", attn_impl: AttnImpl = "auto"
    ) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        layers: list[nn.Module] = [
            DecoderLayer(cfg, i, expert_impl, attn_impl) for i in range(cfg.num_hidden_layers)
        ]
        if cfg.num_nextn_predict_layers:
            layers.append(MTPLayer(cfg, cfg.num_hidden_layers, expert_impl, attn_impl))
        self.layers = nn.ModuleList(layers)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(cfg)


@dataclass
class LMOutput:
    """What :meth:`GLMForCausalLM.forward` returns. Losses are means over the counted target tokens."""

    logits: torch.Tensor | None  # [B, S, V] (None when return_logits=False)
    loss: torch.Tensor | None = None  # lm + mtp_weight * mtp + aux_weight * aux
    lm_loss: torch.Tensor | None = None
    mtp_loss: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None  # unweighted, mean over MoE layers (main + MTP)
    n_targets: torch.Tensor | None = None  # targets counted in lm_loss (a tensor: no wait for the GPU)

    @property
    def n_tokens(self) -> int:
        """Targets counted in lm_loss, as an int (reading it waits for the GPU)."""
        return 0 if self.n_targets is None else int(self.n_targets)


class GLMForCausalLM(nn.Module):
    """The GLM-4.5-style causal LM. HF: ``Glm4MoeForCausalLM`` (``model`` + ``lm_head``), plus the MTP layer.

    ``seed``: weights from :meth:`init_weights`; ``None`` leaves them uninitialised (for a state-dict load).
    ``expert_impl`` / ``attn_impl``: kernels (model/moe.py, module docstring here); ``auto`` picks per device.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        expert_impl: ExpertImpl = "auto",
        attn_impl: AttnImpl = "auto",
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        self.config = cfg
        self.model = GLMModel(cfg, expert_impl, attn_impl)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        # rows per block of the fused head + loss (return_logits=False); None: model/loss.default_chunk_size, on
        # CUDA one block per call while its logits fit 1/16 of the device's memory (1.024x the H200 step, round 8),
        # elsewhere as many rows as keep a block's fp32 logits within 1 GiB (4096 rows at a 64K vocabulary)
        self.ce_chunk_size: int | None = None
        self.ce_compiled = False
        # the final norm compiled too (compile_layers): True / False, or None (on CUDA only: norms_compiled)
        self.compiled_norms: bool | None = False
        if seed is not None:
            self.init_weights(seed)

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        """Normal(0, initializer_range) matrices, unit norms, zero biases and correction biases, drawn from one seeded
        CPU generator in parameter-name order (device- and thread-count independent)."""
        gen = torch.Generator().manual_seed(seed)
        std = self.config.initializer_range
        for name, p in sorted(self.named_parameters()):
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith(".bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * std)
        for router in self.routers():
            router.e_score_correction_bias.zero_()
            router.load.zero_()

    @property
    def main_layers(self) -> nn.ModuleList:
        """The ``num_hidden_layers`` decoder layers (the MTP layer left out)."""
        return self.model.layers[: self.config.num_hidden_layers]

    @property
    def mtp_layer(self) -> MTPLayer | None:
        """``model.layers[num_hidden_layers]`` when the config has one."""
        return (
            self.model.layers[self.config.num_hidden_layers] if self.config.num_nextn_predict_layers else None
        )

    def compile_layers(
        self,
        enabled: bool = True,
        mode: str | None = None,
        whole_rows_graph: bool = False,
        options: dict[str, object] | None = None,
        norms: bool | None = None,
    ) -> GLMForCausalLM:
        """Regional ``torch.compile``: the parts of every decoder layer (the MTP layer too) around the attention
        kernel, and the fused head + loss's per-block arithmetic, compile once and are reused by every layer. Off by
        default: on GPU it is the largest single gain (docs/TRAIN_SPEED.md); on CPU the compile time outweighs it
        for the small models trained there. Numbers stay those of the eager model up to rounding. ``mode``: the
        layers' ``torch.compile`` mode (None: the default; e.g. ``"max-autotune-no-cudagraphs"``).
        ``whole_rows_graph``: rows without packing that run on cuDNN compile each layer as one graph, attention
        inside (packed rows keep the regions). ``options``: inductor options for the regions instead of a mode;
        None (and no mode) takes :func:`region_options`' defaults (combo kernels on CUDA), ``{}`` none.
        ``norms``: also compile the norms outside the layers (the final norm; the MTP layer's input norms and
        projection and its output norm), which otherwise run eagerly between the regions: ``None`` (the default)
        compiles them with the layers when the model runs on CUDA (1.008x the H200 step, docs/TRAIN_SPEED.md round
        8; decided per forward by the hidden states' device, so a model compiled before it moves to the GPU gets
        them) and leaves them eager elsewhere (CPU as before); ``True``/``False`` on every device. Nothing is
        compiled when ``enabled`` is False."""
        if mode is not None and options is not None:
            raise ValueError(
                "compile_layers takes a mode or inductor options, not both (torch.compile's rule)"
            )
        for layer in self.model.layers:
            layer.compiled = enabled
            layer.compile_mode = mode
            layer.compile_options = None if options is None else tuple(sorted(options.items()))
            layer.whole_rows_graph = whole_rows_graph
        self.ce_compiled = enabled
        self.compiled_norms = norms if enabled else False
        if self.mtp_layer is not None:
            self.mtp_layer.compiled_norms = norms if enabled else False
        return self

    def set_moe_path(
        self, dispatch: str = "auto", fuse_shared: bool = False, narrow_sort_keys: bool | None = None
    ) -> GLMForCausalLM:
        """How every MoE layer moves tokens to its experts (model/moe.py): ``auto`` (the default: ``gather`` on
        CUDA, ``index`` elsewhere), ``gather`` (gathers both ways, gate weights folded before the down projection:
        model/moe_dispatch.py) or ``index``; ``fuse_shared`` also runs the shared expert as one more group of the
        grouped GEMM (implies ``gather``; opt-in, measured 0.99x on an H200: docs/TRAIN_SPEED.md);
        ``narrow_sort_keys``: the gather path sorts the expert ids as uint8 (int16 above 256 experts; one radix pass
        instead of eight; the same permutation): ``None`` (the default) on CUDA tensors only, where it measured
        1.011x the H200 step (docs/TRAIN_SPEED.md, round 8), ``True``/``False`` on every device (model/moe.py)."""
        if dispatch not in ("auto", "index", "gather"):
            raise ValueError(f"unknown MoE dispatch {dispatch!r}: use auto, index or gather")
        for layer in self.model.layers:
            if layer.is_moe:
                layer.mlp.dispatch = dispatch  # type: ignore[assignment]
                layer.mlp.fuse_shared = fuse_shared
                layer.mlp.experts.narrow_sort_keys = narrow_sort_keys
        return self

    def set_router_topk(self, impl: str = "auto") -> GLMForCausalLM:
        """How every router picks its top-k experts (model/moe.py): ``topk`` (torch's top-k, the picks counted by an
        index_add), ``argmax`` (k argmax rounds and a one-hot count, which fuse into the compiled region; the same
        picks wherever the k+1 best scores of a token are not tied) or ``auto`` (the default: ``argmax`` on CUDA
        tensors, where it measured 1.020x the H200 step, docs/TRAIN_SPEED.md round 8, and ``topk`` elsewhere, so
        CPU runs as before)."""
        if impl not in ("auto", "topk", "argmax"):
            raise ValueError(f"unknown router top-k {impl!r}: use auto, topk or argmax")
        for router in self.routers():
            router.topk_impl = impl  # type: ignore[assignment]
        return self

    def routers(self) -> list[TopkRouter]:
        """Every MoE router, in layer order (the MTP layer's last)."""
        return [layer.mlp.gate for layer in self.model.layers if layer.is_moe]

    def moe_layer_indices(self) -> list[int]:
        """Layer index of each entry of :meth:`routers`."""
        return [i for i, layer in enumerate(self.model.layers) if layer.is_moe]

    def update_router_biases(self, u: float, process_group: object | None = None) -> dict[int, float]:
        """Loss-free balance step (after ``optimizer.step()``): load counts summed over the data-parallel ranks of
        ``process_group`` (default: the world, when torch.distributed is initialised), ``b += u * sign(mean - load)``;
        returns MaxVio per MoE layer index (the MTP layer's is ``num_hidden_layers``)."""
        vios = update_router_biases(self.routers(), u, process_group)  # type: ignore[arg-type]
        return dict(zip(self.moe_layer_indices(), vios, strict=True))

    def forward(
        self,
        input_ids: torch.Tensor,
        doc_lens: Sequence[Sequence[int]] | None = None,
        labels: torch.Tensor | None = None,
        *,
        mtp_weight: float = 0.0,
        aux_weight: float = 0.0,
        return_logits: bool = True,
    ) -> LMOutput:
        """input_ids [B, S] int64; doc_lens one list of segment lengths per row (see the module docstring); labels
        [B, S] in HF's convention (unshifted; -100 = no loss; ``labels=input_ids`` for pre-training). The loss at
        position t targets labels[t+1] when t+1 is in t's document; the MTP loss targets labels[t+2] likewise.
        ``return_logits=False`` (training) fuses the head with the loss and never builds the [B, S, V] logits; the
        MTP loss is always computed that way."""
        b, s = input_ids.shape
        layout = doc_layout(doc_lens, b, s, input_ids.device)
        embeds = self.model.embed_tokens(input_ids)  # [B, S, H]
        rope = self.model.rotary_emb(layout.position_ids, embeds.dtype)
        h = embeds
        aux_terms: list[torch.Tensor] = []
        for layer in self.main_layers:
            h, aux = layer(h, rope, layout, aux_weight)
            if aux is not None:
                aux_terms.append(aux)
        norm = _compiled_norm_fns()[0] if norms_compiled(self.compiled_norms, h.device) else apply_norm
        h = norm(self.model.norm, h)  # type: ignore[operator]  # [B, S, H], also the MTP layer's hidden input
        if labels is None and not return_logits:
            raise ValueError("forward with labels=None and return_logits=False computes nothing")
        out = LMOutput(logits=self.lm_head(h) if return_logits else None)  # [B, S, V]
        if labels is None:
            return out
        out.lm_loss, out.n_targets = self._ce(h, out.logits, shifted_targets(labels, layout, 1))
        loss = out.lm_loss
        mtp = self.mtp_layer
        if mtp is not None and mtp_weight > 0:
            next_ids = F.pad(
                input_ids[:, 1:], (0, 1), value=0
            )  # x[t+1] at t; the last slot is never a target
            next_rope = self.model.rotary_emb(layout.position_ids + 1, embeds.dtype)
            h_mtp, aux = mtp.forward_mtp(self.model.embed_tokens(next_ids), h, next_rope, layout, aux_weight)
            if aux is not None:
                aux_terms.append(aux)
            out.mtp_loss, _ = self._ce(h_mtp, None, shifted_targets(labels, layout, 2))
            loss = loss + mtp_weight * out.mtp_loss
        if aux_terms:
            out.aux_loss = torch.stack(aux_terms).mean()
            loss = loss + aux_weight * out.aux_loss
        out.loss = loss
        return out

    def _ce(
        self, h: torch.Tensor, logits: torch.Tensor | None, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean fp32 cross-entropy over targets != -100 (0 when there are none), and their count (a tensor); from
        the logits when they were computed anyway, else fused with the head (model/loss.py, no [B, S, V] tensor
        kept)."""
        n = (targets != -100).sum()
        if logits is not None:
            total = F.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]),
                targets.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
        else:
            total = linear_cross_entropy(
                h, self.lm_head.weight, targets, self.ce_chunk_size, compiled=self.ce_compiled
            )
        return total / n.clamp(min=1), n


def shifted_targets(labels: torch.Tensor, layout: DocLayout, shift: int) -> torch.Tensor:
    """[B, S] targets: labels[t+shift] where t+shift is in t's segment and not padding, else -100."""
    b, s = labels.shape
    targets = torch.full_like(labels, -100)
    if shift >= s:
        return targets
    same_doc = layout.segment_ids[:, shift:] == layout.segment_ids[:, :-shift]  # [B, S-shift]
    ok = same_doc & layout.valid[:, shift:] & layout.valid[:, :-shift]
    targets[:, :-shift] = torch.where(ok, labels[:, shift:], torch.full_like(labels[:, shift:], -100))
    return targets
