"""Timing and peak memory of calls, and the fields every benchmark record starts from."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch


def sync_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _malloc_trim() -> None:
    """Give freed heap memory back to the OS (glibc), so that RSS peaks are not hidden by reuse."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Context manager: peak memory above the level at entry (`peak_mb`) and that level (`held_mb`)."""

    def __init__(self, device: torch.device, interval_s: float = 0.001) -> None:
        self.device = device
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self.held_mb = 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._before = torch.cuda.memory_allocated(self.device)
        else:
            import psutil

            gc.collect()
            _malloc_trim()
            self._process = psutil.Process()
            self._before = self._max = self._process.memory_info().rss
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, self._process.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            sync_device(self.device)
            self._stop.set()
            self._thread.join()
            peak = max(self._max, self._process.memory_info().rss)
        self.peak_mb = max(0, peak - self._before) / 2**20
        self.held_mb = self._before / 2**20


def time_calls(fn: Callable[[Any], Any], inputs: Sequence[Any], device: torch.device) -> list[float]:
    """Wall seconds of `fn(x)` for each x of `inputs`, synchronising the device around each call."""
    seconds = []
    for x in inputs:
        sync_device(device)
        tick = time.perf_counter()
        fn(x)
        sync_device(device)
        seconds.append(max(time.perf_counter() - tick, 1e-9))
    return seconds


def is_resource_error(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower()
    )


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def base_record(kind: str, method: str, axes: list[str], n: int, m: int, beam: int | None) -> dict[str, Any]:
    return {"kind": kind, "method": method, "axes": axes, "n_items": n, "sid_length": m, "beam": beam}


def build_record(what: str, method: str, n: int, m: int, seconds: float | None, **extra: Any) -> dict:
    return {
        "kind": "build",
        "what": what,
        "method": method,
        "axes": [],
        "n_items": n,
        "sid_length": m,
        "beam": None,
        "batch_size": None,
        "status": "ok" if seconds is not None else "skipped",
        "seconds": seconds,
        "estimated": False,
        **extra,
    }
