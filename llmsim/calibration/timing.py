"""Timing GPU (or CPU) work: warm-up, then the median of repeats.

On CUDA the work is captured once in a CUDA graph and each repeat is one replay bracketed
by CUDA events. Without the graph, events around eager torch time the host's launches, not
the GPU: a decode layer's twenty small kernels took 0.77 ms on an H200 (about 38 us each,
launch-bound), their graph replays a fraction of that. vLLM replays graphs too. Work that
cannot be captured (a host sync inside) is timed eagerly and counted in `eager_fallbacks`.
An optional L2 flush (writing a buffer larger than the cache) before each repeat keeps
weights from staying cached between repeats. On CPU the wall clock is used: the same code
path, for tests without a GPU.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

L2_FLUSH_BYTES = 256 * 1024**2  # larger than any current GPU's L2 (H100: 50 MB)


class Timer:
    def __init__(self, device: torch.device, warmup: int = 3, repeats: int = 10,
                 flush_l2: bool = False, cuda_graphs: bool = True) -> None:
        if warmup < 0 or repeats < 1:
            raise ValueError(f"need warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
        self.device = device
        self.warmup = warmup
        self.repeats = repeats
        self.cuda = device.type == "cuda"
        self.graphs = cuda_graphs and self.cuda
        self.eager_fallbacks = 0
        self._flush = (torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.float32, device=device)
                       if flush_l2 and self.cuda else None)

    def median(self, fn: Callable[[], object]) -> float:
        """Median seconds of `fn()` over the repeats."""
        if self.graphs:
            graph = self._capture(fn)
            if graph is not None:
                try:
                    return self._median(graph.replay)
                finally:
                    del graph  # its memory pool goes with it
            self.eager_fallbacks += 1
        return self._median(fn)

    def _median(self, fn: Callable[[], object]) -> float:
        for _ in range(self.warmup):
            fn()
        return statistics.median(self._once(fn) for _ in range(self.repeats))

    def _capture(self, fn: Callable[[], object]):
        """`fn` as a CUDA graph, or None if it cannot be captured. Warmed up on a side
        stream first, as capture requires (lazy handles and workspaces made outside)."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                fn()
        except RuntimeError:
            torch.cuda.synchronize(self.device)
            return None
        return graph

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
