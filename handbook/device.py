"""Device choice and seeding, shared by every notebook and training loop."""

from __future__ import annotations

import contextlib
import platform
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return a torch device; "auto" picks CUDA, then Apple MPS, then CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device={device!r} is not a torch device; use 'auto', 'cpu' or 'cuda'") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but torch sees no CUDA GPU; use device='auto' or 'cpu'")
    return resolved


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, and return a torch.Generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def flush_denormals() -> bool:
    """Compute float32 values under 1.2e-38 (denormals) as zero on CPU, from now on in this process.

    CPUs take a slow path on denormals, and they appear as training sharpens attention and output
    distributions: TIGER's training steps on Beauty (one thread, beside two other jobs) took 2.1 s
    from epoch 5's weights and 0.8 s with denormals flushed, the same weights and batches. No
    probability or gradient that changes a result is that small.

    The setting belongs to each thread, and torch's worker threads copy it from the thread that
    starts them: called after torch's first parallel operation, it reaches the calling thread only
    (half the elements of a 2-thread product stay denormal). `import handbook` calls it first.
    Not undone (torch has no getter to restore it); False where the CPU cannot (x86 without SSE3).
    """
    return torch.set_flush_denormal(True)


def get_rng_state() -> dict[str, Any]:
    """The state of Python's, NumPy's and torch's (CPU and CUDA) generators, for `set_rng_state`."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generators saved by `get_rng_state`, so a resumed run draws what it would have drawn."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def cpu_model() -> str:
    """The CPU's marketing name ("AMD EPYC 7B13"), from /proc/cpuinfo where there is one."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX); without it torch emulates
    bf16, and a bf16 matmul runs tens of times slower than fp32 (`make bench` measures both)."""
    check = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(fn() for fn in check if fn is not None)


def device_name(device: torch.device) -> str:
    """A readable name of the device, e.g. "NVIDIA H100 80GB HBM3" or "cpu (AMD EPYC 7B13, 2 threads)"."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({cpu_model()}, {torch.get_num_threads()} threads)"
