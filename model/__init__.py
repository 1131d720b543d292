"""The model half of arcflow: a GLM-4.5-style MoE in plain PyTorch, its optimizer and its HF checkpoints.

Single-device library code; it never imports Prefect or ``flows/``. Parallelism (DeepSpeed, torch.distributed) lives
in ``model/train/``, which builds on these modules:

- ``model.config``: the flavours table (``debug``, ``tiny``, ``small``, ``air``), :func:`~model.config.model_config`
  with per-field overrides, ``Glm4MoeConfig`` conversion, parameter and FLOP counts.
- ``model.glm``: :class:`~model.glm.GLMForCausalLM` (HF parameter names; packed rows via ``doc_lens``; MTP; losses).
- ``model.moe``: sigmoid router with correction bias, grouped experts, shared expert, loss-free balance
  (:func:`~model.moe.update_router_biases`), sequence-level aux loss.
- ``model.loss``: the output head fused with cross-entropy (no [B, S, V] logits kept in training).
- ``model.muon``: Muon (per expert) + AdamW in one optimizer, :func:`~model.muon.clip_and_step` on raw gradients.
- ``model.schedule``: learning-rate, batch-size and piecewise schedules as pure functions of the step.
- ``model.export``: :func:`~model.export.save_hf` / :func:`~model.export.load_hf`, HF folders in and out.
"""
