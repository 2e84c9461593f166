"""Timing GPU (or CPU) work: warm-up, then the median of repeats.

On CUDA each repeat is bracketed by CUDA events, so launch latency on the host is not
counted as kernel time; an optional L2 flush (writing a buffer larger than the cache)
before each repeat keeps weights from staying cached between repeats. On CPU the wall
clock is used: the same code path, for tests without a GPU.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

L2_FLUSH_BYTES = 256 * 1024**2  # larger than any current GPU's L2 (H100: 50 MB)


class Timer:
    def __init__(self, device: torch.device, warmup: int = 3, repeats: int = 10,
                 flush_l2: bool = False) -> None:
        if warmup < 0 or repeats < 1:
            raise ValueError(f"need warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
        self.device = device
        self.warmup = warmup
        self.repeats = repeats
        self.cuda = device.type == "cuda"
        self._flush = (torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.float32, device=device)
                       if flush_l2 and self.cuda else None)

    def median(self, fn: Callable[[], object]) -> float:
        """Median seconds of `fn()` over the repeats."""
        for _ in range(self.warmup):
            fn()
        samples = [self._once(fn) for _ in range(self.repeats)]
        return statistics.median(samples)

    def _once(self, fn: Callable[[], object]) -> float:
        if self._flush is not None:
            self._flush.zero_()
        if self.cuda:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
