"""Glue ops of the model written so that inductor fuses them into fewer or faster kernels (round 10; SwiGLU's
backward as one Triton kernel is the CUDA default since round 11, the rest opt-in).

Each module here gives the same values as the op it replaces in model/glm.py or model/moe.py (its tests compare
them, fp32 and bf16); only the shape of the computation differs: no pointwise ``cat`` (which inductor lowers to
masked loads of every input at every output element), so the generated kernels read contiguous, unmasked rows.
"""

from __future__ import annotations

from torch import nn


def set_fused_glue(model: nn.Module, swiglu: bool | str | None = None, rope: bool | str = False) -> nn.Module:
    """Set the round-10 glue paths of ``model`` (a :class:`model.glm.GLMForCausalLM`): ``swiglu``, the SwiGLU of
    the routed experts (gather path), the shared experts and the dense MLPs: ``None`` (the model's default since
    round 11) the backward as one Triton kernel on CUDA where triton imports and the ``chunk`` path elsewhere
    (:func:`model.kernels.swiglu.resolve_swiglu`), ``False`` the ``chunk`` path everywhere (the opt-out), ``True``
    the ``cat``-free PyTorch backward (:mod:`model.kernels.swiglu`), ``"triton"`` the Triton backward on CUDA
    (:mod:`model.kernels.swiglu_triton`; needs triton); ``rope`` (opt-in: no gain measured in round 10), RoPE
    without ``cat`` (:mod:`model.kernels.rope`) and v made contiguous inside the compiled pre-attention region
    (``"triton"``: QK-norm and RoPE as one Triton kernel each way on CUDA, :mod:`model.kernels.qknorm_rope_triton`,
    where the model has QK-norm). All give the default path's values (their tests). Returns ``model``."""
    from model.glm import Attention
    from model.moe import MLP, GroupedExperts

    if swiglu not in (None, False, True, "triton"):
        raise ValueError(f"set_fused_glue: swiglu is None, False, True or 'triton', not {swiglu!r}")
    if rope not in (False, True, "triton"):
        raise ValueError(f"set_fused_glue: rope is False, True or 'triton', not {rope!r}")
    if swiglu == "triton":
        from model.kernels import swiglu_triton  # noqa: F401 - registers arcflow::swiglu_backward (needs triton)
    if rope == "triton":
        from model.kernels import qknorm_rope_triton  # registers arcflow::qknorm_rope_* (needs triton)

    found = 0
    for module in model.modules():
        if isinstance(module, (GroupedExperts, MLP)):
            module.fused_swiglu = swiglu
            found += 1
        elif isinstance(module, Attention):
            module.fused_rope = rope
            if rope == "triton":
                module.qknorm_rope_kernel = qknorm_rope_triton.qknorm_rope
            found += 1
    if not found:
        raise ValueError(f"set_fused_glue: {type(model).__name__} has no attention, MLP or expert modules")
    return model
