"""The entry point the launcher runs on every rank: ``python -m model.train.main spec.json``.

One run: read the spec (:mod:`model.train.spec`), check the data against the model (:mod:`model.train.validate`;
rank 0 checks, every rank raises its error), build the model (``model/glm.py``; from ``model.init_from`` when
given) and the optimizer (torch's AdamW, or Muon + AdamW from ``model/muon.py`` as DeepSpeed's client optimizer; at
ZeRO 1/2 only Muon's AdamW part goes to DeepSpeed and the Muon matrices are sharded whole by ``model/muon_zero.py``),
wrap them with ``deepspeed.initialize`` (ZeRO stage from the spec; bf16 on GPU as bf16 parameters with fp32 routers,
as the model's own GPU tests train, because DeepSpeed's bf16 optimizer flattens the groups Muon needs as matrices;
there is no fp32 master copy), resume from the latest checkpoint, then train.

A step: this rank's micro-batches of the next global batch (:class:`model.train.data.PackedLoader`). Each
micro-batch's loss is weighted by its share of the global batch's target tokens, so the sum over all micro-batches
and ranks is the token mean of the whole global batch, whatever the rank count; DeepSpeed averages gradients over
ranks, so the weight is multiplied by the world size (and gradient-accumulation scaling is off). At the boundary:
raw-gradient clipping (ours at ZeRO 0, so the norm is of the raw gradients before Muon; with Muon at ZeRO 1/2, one
factor from DeepSpeed's norm of the AdamW partitions and the owners' norm of the Muon matrices, applied to both
before their step, DeepSpeed's own clipping off; DeepSpeed's for plain AdamW at ZeRO 1/2; on CUDA DeepSpeed's ZeRO
1/2 norm runs as one fp32 foreach pass, :func:`cuda_step_defaults`), the optimizer step with
the learning rate of ``model/schedule.py``, then the loss-free balance update of the router biases (load counts
all-reduced over ranks). A non-finite loss or gradient norm stops the run naming the step, before anything of
that step is logged or checkpointed (DeepSpeed's bf16 overflow check is off, so a non-finite gradient is caught by
its norm here rather than skipped inside DeepSpeed), and so does a GPU out-of-memory error, naming the micro-batch
size and sequence length to lower with their values; the last checkpoint is left as it was. At the end,
``consumed.json`` in the checkpoint folder says how many samples were drawn from each shard file.

CPU: ``DS_ACCELERATOR=cpu`` and gloo (set here when no GPU is visible). Plain ``python -m model.train.main spec``
without a launcher runs one rank.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import socket
import sys
import time
from typing import Any

import torch
import torch.distributed as dist

from model.train.spec import TrainSpec, load_spec


def _single_process_env() -> None:
    """Rank variables for a run started without a launcher (one rank)."""
    if "RANK" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )


def _skip_op_builds() -> None:
    """On CPU, tell DeepSpeed that none of its C++/CUDA ops is buildable. It would otherwise probe compilers and
    JIT-build its shared-memory all-reduce (minutes on a small machine), which only its inference all-reduce uses;
    training all-reduces through torch.distributed (gloo) and steps with torch's own optimizers."""
    import deepspeed.ops

    if "__compatible_ops__" not in vars(deepspeed.ops):
        deepspeed.ops.__compatible_ops__ = collections.defaultdict(bool)


def _first_error(fn: Any, *args: Any) -> Any:
    """Run ``fn`` on rank 0 and share its result or error with every rank (an error raises everywhere)."""
    box: list[Any] = [None, None]
    if dist.get_rank() == 0:
        try:
            box[0] = fn(*args)
        except Exception as exc:  # noqa: BLE001 - re-raised below on every rank, with its type
            box[1] = (type(exc).__name__, str(exc))
    dist.broadcast_object_list(box, src=0)
    if box[1] is not None:
        name, msg = box[1]
        raise (ValueError if name != "FileNotFoundError" else FileNotFoundError)(msg)
    return box[0]


def _prepare_data(spec: TrainSpec, cfg: Any) -> tuple[list[str], int, list[str]]:
    """(shard files, seq_len, notes) after validation; SFT chat records are packed into the checkpoint folder."""
    from model.train.data import shard_files
    from model.train.validate import check_shards, check_tokenizer

    notes: list[str] = []
    if spec.data.chat:
        from model.train.sft import build_sft_shard

        out = os.path.join(spec.checkpoint.dir, "sft_rows", "part-00000.parquet")
        stats = build_sft_shard(
            shard_files(spec.data.chat), spec.data.tokenizer, spec.data.seq_len, spec.data.seed, out
        )
        notes.append(f"sft: {json.dumps(stats.__dict__)}")
        files = [out]
    else:
        files = shard_files(spec.data.shards)
        if spec.data.tokenizer:
            notes += check_tokenizer(spec.data.shards, spec.data.tokenizer)
    seq_len = check_shards(files, cfg, flavour=spec.model.flavour)
    return files, seq_len, notes


def _model_config(spec: TrainSpec) -> Any:
    """The flavour's config with the overrides; with ``init_from``, the parent checkpoint's config with them (e.g.
    midtraining's longer positions and larger RoPE base), the flavour name then only labels messages."""
    from model.config import ModelConfig, model_config

    if not spec.model.init_from:
        return model_config(spec.model.flavour, **spec.model.overrides)
    from model.config import from_hf
    from model.hf import hf_import

    AutoConfig = hf_import("AutoConfig")

    if not os.path.isfile(os.path.join(spec.model.init_from, "config.json")):
        raise FileNotFoundError(
            f"model.init_from {spec.model.init_from}: no config.json here; give the HF folder a stage exported"
        )
    parent = from_hf(AutoConfig.from_pretrained(spec.model.init_from, local_files_only=True))
    unknown = sorted(set(spec.model.overrides) - set(ModelConfig.model_fields))
    if unknown:
        raise ValueError(
            f"model.overrides: unknown field(s) {unknown}; valid fields are {sorted(ModelConfig.model_fields)}"
        )
    return ModelConfig(**{**parent.model_dump(), **spec.model.overrides})


def _build_model(spec: TrainSpec, cfg: Any, cuda: bool) -> torch.nn.Module:
    """The model in the spec's precision. bf16 (GPU) casts the parameters, routers stay fp32 (as HF keeps them);
    fp32 on CUDA uses SDPA: exact fp32 attention (the varlen flash kernel would run it in bf16)."""
    from model.glm import GLMForCausalLM

    attn = "sdpa" if cuda and spec.precision == "fp32" else "auto"
    kw = {"expert_impl": spec.model.expert_impl, "attn_impl": attn}
    if spec.model.init_from:
        from model.export import load_hf

        model = load_hf(spec.model.init_from, **kw)
        if spec.model.overrides:  # e.g. midtraining's rope_theta / max_position_embeddings
            fresh = GLMForCausalLM(cfg, seed=None, **kw)
            fresh.load_state_dict(model.state_dict())
            model = fresh
    else:
        model = GLMForCausalLM(cfg, seed=spec.seed, **kw)
    if spec.precision == "bf16":
        model.to(torch.bfloat16)
        for router in model.routers():
            router.float()
    # regional torch.compile: about 2x the tokens/s on an H200 (docs/TRAIN_SPEED.md); on CPU the compile time
    # outweighs the gain for the models trained there, and its grouped GEMM compiles in bf16 only
    compile_on = spec.model.compile if spec.model.compile is not None else cuda and spec.precision == "bf16"
    if compile_on:
        # norms=None: the final norm and the MTP layer's norms compile too once the model runs on CUDA (1.008x the
        # H200 step, docs/TRAIN_SPEED.md round 8; DeepSpeed moves the model there after this call), eager on CPU.
        # The other round-8 defaults need no call: the router's top-k, the sort keys and the loss's block size are
        # chosen per device by the model itself; so is SwiGLU's backward as one Triton kernel (round 11: the MLPs'
        # and experts' fused_swiglu None resolves to it on CUDA where triton imports, model/kernels/swiglu.py;
        # 1.024x the H200 step at 8 x 4, 1.028x at 16 x 16; model.kernels.set_fused_glue(model, swiglu=False)
        # opts out)
        model.compile_layers(norms=None)
    return model


def cuda_step_defaults(engine: Any, cuda: bool) -> bool:
    """The step changes measured on an H200 that act on DeepSpeed's engine, on CUDA only (CPU keeps DeepSpeed's
    own code): its ZeRO 1/2 gradient norm as one fp32 foreach pass (model/zero_grad_norm.py; round 10: 1.012x the
    step at 8 x 4, neutral at 16 x 16). The same norm within fp32 rounding (relative ~1e-7), so the same clipping:
    DeepSpeed's for AdamW at ZeRO 1/2, and the factor RawGradClip takes from ``_global_grad_norm`` for Muon at ZeRO
    1/2; a non-finite gradient gives DeepSpeed's masked norm as before. ZeRO 0 (our clipping) is untouched. Returns
    whether it was installed."""
    if not cuda:
        return False
    from model.zero_grad_norm import use_foreach_grad_norm

    return use_foreach_grad_norm(engine)


def _build_optimizer(
    spec: TrainSpec, model: torch.nn.Module, rank: int, world: int
) -> tuple[torch.optim.Optimizer, Any]:
    """(the optimizer DeepSpeed wraps, the Muon part kept outside DeepSpeed or None). Muon at ZeRO 0 is one
    ``MuonAdamW``; at ZeRO 1/2 DeepSpeed partitions only its AdamW part (``model/muon_zero.py``)."""
    from model.muon import OptimConfig, build_optimizer

    o = spec.optim
    if o.name == "muon":
        cfg = OptimConfig(**{k: getattr(o, k) for k in OptimConfig.model_fields})
        if spec.zero_stage > 0:
            from model.muon_zero import build_zero_muon

            return build_zero_muon(model, cfg, rank, world)
        return build_optimizer(model, cfg), None
    decay = [p for n, p in sorted(model.named_parameters()) if p.requires_grad and p.ndim >= 2]
    rest = [p for n, p in sorted(model.named_parameters()) if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    # CUDA: torch's fused AdamW, one kernel over DeepSpeed's flat fp32 partitions (what benchmarks/train.py times;
    # the single-tensor loop makes about ten passes over them); CPU: the single-tensor loop, as before
    how = {"fused": True} if torch.cuda.is_available() else {"foreach": False}
    return torch.optim.AdamW(groups, lr=o.lr, betas=o.adam_betas, eps=o.adam_eps, **how), None


def ds_config(
    *,
    global_batch: int,
    micro_batch: int,
    world: int,
    zero_stage: int,
    clip: float,
    optimizer: str,
    precision: str,
) -> dict[str, Any]:
    """DeepSpeed's config for one run (what :func:`run` passes to ``deepspeed.initialize``; benchmarks/train.py's
    headline times the same dict, so it measures what users run)."""
    gas = global_batch // (micro_batch * world)
    config: dict[str, Any] = {
        "train_batch_size": global_batch,
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": gas,
        "zero_optimization": {"stage": zero_stage},
        # clipping of the raw gradients: ours at ZeRO 0 and for Muon at ZeRO 1/2 (DeepSpeed's would clip Muon's
        # orthogonalised update, DeepSpeed PR #7776); DeepSpeed's for AdamW at ZeRO 1/2 (its gradients are raw)
        "gradient_clipping": clip if zero_stage > 0 and optimizer == "adamw" else 0.0,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
        # DeepSpeed's throughput timer synchronizes the device at every micro-batch's forward and step (the metrics
        # here time the steps themselves): off, so the host never waits for the GPU inside a step
        "timers": {"throughput": {"enabled": False}},
        "zero_allow_untested_optimizer": True,
    }
    # bf16: the parameters themselves are bf16 (see _build_model). At ZeRO 0 DeepSpeed's bf16 optimizer stays off (it
    # flattens the groups Muon needs as matrices); ZeRO 1/2 (AdamW only) need it and keep fp32 master weights.
    # check_grad_overflow off: bf16 has no loss scale to adjust, and DeepSpeed's check reads every gradient and makes
    # the host wait for the answer (round 7: 1.048x the step without it, docs/TRAIN_SPEED.md). A non-finite gradient
    # then no longer skips the step inside DeepSpeed; its norm still comes back non-finite (DeepSpeed folds an
    # inf/NaN group norm into an infinite global norm), and run() stops on it, naming the step, before that step's
    # weights can reach a checkpoint (tests/model/train/test_bf16_overflow.py). The same on CPU and GPU. A DeepSpeed
    # without combine_grad_norm_groups (0.19.8 has it) folds the -1 it masks a bad group norm to into a finite global
    # norm, so run() also checks every group norm (model.zero_grad_norm.track_invalid_group_norms) and counts a
    # negative norm as not finite: the stop does not depend on the DeepSpeed version.
    if precision == "bf16" and zero_stage > 0:
        config["bf16"] = {"enabled": True, "check_grad_overflow": False}
    return config


def _ds_config(spec: TrainSpec, world: int) -> dict[str, Any]:
    return ds_config(
        global_batch=spec.batch.global_batch, micro_batch=spec.batch.micro_batch, world=world,
        zero_stage=spec.zero_stage, clip=spec.optim.clip, optimizer=spec.optim.name, precision=spec.precision,
    )  # fmt: skip


def _spec_digest(spec: TrainSpec) -> str:
    """What must not change between a checkpoint and its resume (steps and checkpoint cadence may)."""
    keep = spec.model_dump(mode="json", include={"model", "data", "batch", "seed"})
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def _all_sum(values: list[float] | torch.Tensor, device: torch.device) -> list[float]:
    """Sum over ranks of ``values`` (floats, or a float64 tensor already on ``device``), read back as floats."""
    t = (
        values
        if isinstance(values, torch.Tensor)
        else torch.tensor(values, dtype=torch.float64, device=device)
    )
    if dist.get_world_size() > 1:
        dist.all_reduce(t)  # NCCL reduces CUDA tensors only: ``device`` is the rank's GPU there
    return t.tolist()


def _loss_parts(out: Any) -> torch.Tensor:
    """[lm, mtp, aux] losses of one forward as a float64 tensor on their device (absent parts are 0), no host wait."""
    lm = out.lm_loss.detach()
    parts = [
        p.detach() if p is not None else torch.zeros((), device=lm.device)
        for p in (out.mtp_loss, out.aux_loss)
    ]
    return torch.stack([lm.double(), *(p.double() for p in parts)])


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A loader tensor onto the rank's device; on CUDA from pinned memory without making the host wait."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def run(spec: TrainSpec) -> list[dict]:
    """Train as the spec says; returns the metrics rows (on rank 0; other ranks return [])."""
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    _single_process_env()
    torch.set_num_threads(spec.threads)
    import deepspeed

    if not cuda:
        _skip_op_builds()

    from model.muon import set_lr
    from model.schedule import LRSchedule, lr_at, piecewise
    from model.train import checkpoint
    from model.train.data import PackedLoader, batch_rows_at
    from model.train.metrics import METRICS_NAME, MetricsLog, read_parquet

    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", verbose=False)
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    cfg = _model_config(spec)
    files, seq_len, notes = _first_error(_prepare_data, spec, cfg)
    loader = PackedLoader(
        files, seed=spec.data.seed, micro_batch=spec.batch.micro_batch, rank=rank, world=world,
        shuffle=spec.data.shuffle,
    )  # fmt: skip
    loader.check_batch(spec.batch.global_batch)

    model = _build_model(spec, cfg, cuda)
    optimizer, sharded = _build_optimizer(spec, model, rank, world)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=_ds_config(spec, world))
    cuda_step_defaults(engine, cuda)
    from model.zero_grad_norm import is_invalid_norm, track_invalid_group_norms

    bad_group_norm = track_invalid_group_norms(
        engine
    )  # ZeRO 1/2: DeepSpeed's -1 sentinel, whatever its version
    clip = None
    if sharded is not None:  # Muon at ZeRO 1/2: one raw-gradient clip factor for both parts
        from model.muon_zero import RawGradClip

        clip = RawGradClip(spec.optim.clip, lambda: getattr(engine.optimizer, "_global_grad_norm", None))
        optimizer.clip = clip
    torch.set_num_threads(spec.threads)  # DeepSpeed's CPU accelerator may have changed it
    module = engine.module

    ckpt_dir = spec.checkpoint.dir
    metrics_path = spec.metrics or os.path.join(ckpt_dir, METRICS_NAME)
    step, tokens, saved_rows = 0, 0, []
    resumed = checkpoint.load(engine, ckpt_dir)
    if resumed is not None:
        tag, client = resumed
        if client.get("spec") != _spec_digest(spec):
            raise ValueError(
                f"{ckpt_dir}/{tag} was written by a run with other model/data/batch/seed settings; use a fresh "
                "checkpoint.dir, or restore the spec it was written with"
            )
        step, tokens = int(client["step"]), int(client["tokens"])
        if sharded is not None:
            sharded.load(os.path.join(ckpt_dir, tag))
        loader.load_state_dict(client["loader"])
        saved_rows = read_parquet(os.path.join(ckpt_dir, tag, checkpoint.METRICS))
    log = MetricsLog(metrics_path, saved_rows, active=rank == 0)
    if rank == 0:
        for note in notes:
            print(f"[train] {note}", flush=True)
        print(
            f"[train] world {world}, seq_len {seq_len}, {len(loader.rows)} rows, "
            + (f"resumed at step {step}" if resumed else "from scratch"),
            flush=True,
        )

    schedule = LRSchedule(
        peak=spec.optim.lr, floor=min(spec.schedule.floor, spec.optim.lr),
        warmup_steps=min(spec.schedule.warmup_steps, spec.steps), total_steps=spec.steps,
    )  # fmt: skip
    sched = spec.schedule
    params = [p for p in module.parameters() if p.requires_grad]

    def save(at: int) -> None:
        client = {"step": at, "tokens": tokens, "loader": loader.state_dict(), "spec": _spec_digest(spec)}
        tag = checkpoint.save(engine, ckpt_dir, at, client)
        if sharded is not None:  # each rank's Muon momentum, beside DeepSpeed's files
            os.makedirs(os.path.join(ckpt_dir, tag), exist_ok=True)
            sharded.save(os.path.join(ckpt_dir, tag))
        dist.barrier()  # every rank's files are in the tag folder
        if rank == 0:
            log.save(os.path.join(ckpt_dir, tag, checkpoint.METRICS))
            checkpoint.mark_latest(ckpt_dir, tag)
            checkpoint.prune(ckpt_dir, spec.checkpoint.keep)
        dist.barrier()

    last = min(spec.steps, spec.stop_after) if spec.stop_after else spec.steps
    while step < last:
        started = time.perf_counter()
        lr = lr_at(step, schedule)
        set_lr(engine.optimizer, lr)
        mtp_w = piecewise(step, sched.mtp_weight, sched.mtp_boundaries)
        u = piecewise(step, sched.bias_update, sched.bias_boundaries)
        rows = batch_rows_at(
            loader.sample, seq_len, spec.batch.global_batch, spec.batch.warmup_start,
            spec.batch.warmup_tokens, spec.batch.micro_batch * world,
        )  # fmt: skip
        if rows != engine.train_batch_size():
            engine.set_train_batch_size(rows)
        micro = loader.next_batch(rows)
        local = [float(sum(mb.n_targets for mb in micro)), float(sum(mb.n_real for mb in micro))]
        n_targets, n_real = _all_sum(local, device)
        # the step's loss parts, summed on the device and read once per step (a float() per micro-batch would make
        # the host wait for the GPU before launching the next micro-batch)
        sums = torch.zeros(3, dtype=torch.float64, device=device)
        try:
            for j, mb in enumerate(micro):
                out = engine(
                    _to_device(mb.input_ids, device),
                    doc_lens=mb.doc_lens,
                    labels=_to_device(mb.labels, device),
                    mtp_weight=mtp_w,
                    aux_weight=sched.aux_weight,
                )
                share = mb.n_targets / max(n_targets, 1.0)
                engine.backward(out.loss * (share * world), scale_wrt_gas=False)
                sums += _loss_parts(out) * share
                if j == len(micro) - 1:  # DeepSpeed has reduced its gradients now
                    if spec.zero_stage == 0:  # all of them, all-reduced: clip them raw
                        grad_norm = _clip(params, spec.optim.clip)
                    elif sharded is not None and clip is not None:  # Muon's go to their owners (ZeRO 1/2)
                        clip.muon_sq = sharded.reduce_grads()
                engine.step()  # ZeRO 1/2 + Muon: ClippedAdamW scales the AdamW partitions by clip.coef() here
            if sharded is not None and clip is not None:
                grad_norm = clip.norm()
                sharded.step(lr, clip.coef())
            elif spec.zero_stage > 0:
                grad_norm = float(engine.get_global_grad_norm() or 0.0)
        except torch.cuda.OutOfMemoryError as exc:
            raise _out_of_memory(exc, step + 1, spec, seq_len, rank) from exc
        loss, mtp_loss, aux_loss = _all_sum(sums, device)  # the step's one wait for the GPU's losses
        if bad_group_norm is not None and bad_group_norm():
            grad_norm = float("nan")  # an older DeepSpeed folds a -1 group norm into a finite global norm
        if not math.isfinite(loss) or is_invalid_norm(grad_norm):  # < 0: DeepSpeed's overflow sentinel
            raise FloatingPointError(
                f"step {step + 1}: loss {loss} / grad norm {grad_norm} is not finite; stopping. The last "
                f"checkpoint in {ckpt_dir} is kept; lower optim.lr or check the data of samples "
                f"{loader.sample - rows}..{loader.sample - 1}"
            )
        vios = module.update_router_biases(u)
        step += 1
        tokens += int(n_real)
        elapsed = time.perf_counter() - started
        log.add(
            {
                "step": step, "samples": loader.sample, "batch": rows, "tokens": tokens, "loss": loss,
                "mtp_loss": mtp_loss, "aux_loss": aux_loss, "lr": lr, "grad_norm": grad_norm,
                "max_vio": max(vios.values(), default=0.0), "tok_s": n_real / max(elapsed, 1e-9),
            }
        )  # fmt: skip
        if spec.checkpoint.every and step % spec.checkpoint.every == 0 and step < spec.steps:
            save(step)
    if step >= spec.steps:
        if checkpoint.latest_tag(ckpt_dir) != checkpoint.tag_of(step):
            save(step)
        if rank == 0:
            if spec.checkpoint.export:
                _export(spec, module)
            consumed = {"samples": loader.sample, "epochs": loader.epoch(), "shards": loader.consumed()}
            with open(os.path.join(ckpt_dir, "consumed.json"), "w", encoding="utf-8") as fh:
                json.dump(consumed, fh, indent=1)
        log.save()
    dist.barrier()
    return log.rows if rank == 0 else []


def _export(spec: TrainSpec, module: torch.nn.Module) -> None:
    """The final model as an HF folder; with a tokenizer, its files go beside it with the one chat template, so
    ``AutoTokenizer.from_pretrained`` on the folder renders chats exactly as training did."""
    import shutil

    from model.export import save_hf, set_generation_stops
    from model.train.chat import install_chat_template
    from model.train.validate import tokenizer_json_path

    out = spec.checkpoint.export
    save_hf(module, out, dtype=torch.bfloat16 if spec.precision == "bf16" else None)
    if spec.data.tokenizer:
        src = os.path.dirname(tokenizer_json_path(spec.data.tokenizer))
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if os.path.isfile(os.path.join(src, name)):
                shutil.copyfile(os.path.join(src, name), os.path.join(out, name))
        install_chat_template(out)
        set_generation_stops(out, os.path.join(out, "tokenizer.json"))  # generate stops at a turn's end


class TrainOutOfMemoryError(RuntimeError):
    """A step ran out of accelerator memory; the message names the settings to lower and their values."""


def _out_of_memory(
    exc: BaseException, step: int, spec: TrainSpec, seq_len: int, rank: int
) -> TrainOutOfMemoryError:
    mb = spec.batch.micro_batch
    where = (
        f"the sft node's seq_len param (data.seq_len), now {seq_len}"
        if spec.data.chat
        else f"the seq_len of the pack node the rows come from, now {seq_len}"
    )
    cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return TrainOutOfMemoryError(
        f"step {step}: out of GPU memory on rank {rank} with batch.micro_batch {mb} rows of seq_len {seq_len} "
        f"({mb * seq_len} tokens per forward pass). Lower batch.micro_batch (now {mb}; global_batch "
        f"{spec.batch.global_batch} stays, through more gradient accumulation) or the sequence length ({where}); "
        f"zero_stage 1/2 or more GPUs also free memory. The last checkpoint in {spec.checkpoint.dir} is kept. "
        f"({cause})"
    )


def _clip(params: list[torch.nn.Parameter], max_norm: float) -> float:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm, error_if_nonfinite=False))
    return float(torch.nn.utils.get_total_norm(grads))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    args = [
        a for a in args if not a.startswith("--local_rank")
    ]  # the DeepSpeed launcher adds it (LOCAL_RANK too)
    if len(args) != 1:
        print("usage: python -m model.train.main <spec.json>", file=sys.stderr)
        return 2
    spec = load_spec(args[0])
    try:
        run(spec)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
