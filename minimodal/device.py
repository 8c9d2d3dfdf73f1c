"""One device choice and one seed for the whole course.

Every lesson runs unchanged on a laptop CPU and on a CUDA GPU: it asks ``pick_device``
which to use and wraps its forward passes in ``autocast``, which is bf16 on CUDA and
does nothing on CPU.
"""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA when present, else CPU; MINIMODAL_DEVICE or ``prefer`` overrides.

    Under torchrun each process on a machine takes its own GPU, the one numbered LOCAL_RANK.
    """
    name = prefer or os.environ.get("MINIMODAL_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all GPUs too) so a run can be repeated exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def autocast(device: torch.device):
    """bf16 mixed precision on CUDA; plain fp32 elsewhere."""
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def exact_matmul(device: torch.device) -> None:
    """Turn off TF32 so parity checks on CUDA compare true fp32 arithmetic."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
