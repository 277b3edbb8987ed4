"""Learning-rate schedule and mixed precision: pure helpers of the step loop (torch only)."""

from __future__ import annotations

import contextlib
import math
import os

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def lr_factor(step: int, total: int, warmup: int = 0, schedule: str = "constant") -> float:
    """Multiplier of the base learning rate for optimizer step `step` (0-based) of `total`:
    linear warm-up over `warmup` steps (from 1/warmup up to 1), then constant or a cosine
    decay that reaches 0 at `total`. A function of the step alone, so a resumed run continues
    the same curve with no scheduler state to save."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"lr schedule must be constant or cosine, got {schedule!r}")
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    lr = base_lr * factor
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below AVX512_CORE_BF16: bf16 would be emulated
CAPS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


def native_bf16(device: torch.device) -> bool:
    """Does `device` compute bf16 natively? CUDA: the GPU says (Ampere and later); CPU: the
    AVX512-BF16 or AMX instructions (read from /proc/cpuinfo; other systems say no), unless
    `ONEDNN_MAX_CPU_ISA` caps oneDNN below them (how a bf16 CPU stands in for one without).
    Without them autocast emulates bf16 and runs slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    if cap.strip().upper() in CAPS_WITHOUT_BF16:
        return False
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` -> bf16 where the device computes it natively (`native_bf16`), else fp32; any
    other setting is kept."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(precision: str, device: torch.device):
    """The forward pass's autocast context: fp32 = none; bf16 on CPU or CUDA; fp16 on CUDA."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in DTYPES:
        raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A loss scaler for fp16 (whose gradients underflow); disabled (a pass-through) otherwise."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
