"""Per-request records of a run, as preallocated numpy columns indexed by request id.

Times are seconds on the simulated clock; NaN means "never happened" (a rejected request
has no first token). Written out as one Parquet table by `llmsim run`.
"""

from __future__ import annotations

import numpy as np

from .histogram import LogHistogram


class Records:
    def __init__(self, arrival: np.ndarray, prompt_tokens: np.ndarray,
                 output_tokens: np.ndarray) -> None:
        n = len(arrival)
        self.arrival = np.asarray(arrival, dtype=np.float64)
        self.prompt_tokens = np.asarray(prompt_tokens, dtype=np.int64)
        self.output_tokens = np.asarray(output_tokens, dtype=np.int64)
        self.first_scheduled = np.full(n, np.nan)
        self.first_token = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.emitted_tokens = np.zeros(n, dtype=np.int64)
        self.preemptions = np.zeros(n, dtype=np.int64)
        self.recomputed_tokens = np.zeros(n, dtype=np.int64)  # KV thrown away by preemption
        self.cached_tokens = np.zeros(n, dtype=np.int64)  # prompt tokens hit in the prefix
        # cache at first admission
        self.replica = np.full(n, -1, dtype=np.int64)
        self.rejected = np.zeros(n, dtype=bool)
        self.itl = LogHistogram()  # inter-token latencies, all requests together

    def token(self, req, now: float) -> None:
        """`req` emitted a token at `now`: its first token, or one more inter-token gap."""
        if req.emitted == 1:
            self.first_token[req.id] = now
        else:
            self.itl.add(now - req.last_token_at)
        req.last_token_at = now

    def finished(self, req, now: float) -> None:
        self.finish[req.id] = now
        self.emitted_tokens[req.id] = req.emitted
        self.recomputed_tokens[req.id] = req.discarded
        if req.cached > 0:
            self.cached_tokens[req.id] = req.cached

    def __len__(self) -> int:
        return len(self.arrival)

    @property
    def completed(self) -> np.ndarray:
        return ~np.isnan(self.finish)

    def columns(self) -> dict[str, np.ndarray]:
        """The per-request table, with derived latencies, in output order."""
        done_tokens = np.maximum(self.output_tokens - 1, 1)
        e2e = self.finish - self.arrival
        tpot = np.where(self.output_tokens > 1, (self.finish - self.first_token) / done_tokens,
                        np.nan)
        return {
            "request_id": np.arange(len(self), dtype=np.int64),
            "arrival": self.arrival,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "replica": self.replica,
            "first_scheduled": self.first_scheduled,
            "first_token": self.first_token,
            "finish": self.finish,
            "queueing_delay": self.first_scheduled - self.arrival,
            "ttft": self.first_token - self.arrival,
            "e2e": e2e,
            "tpot": tpot,
            "normalized_latency": e2e / self.output_tokens,
            "preemptions": self.preemptions,
            "recomputed_tokens": self.recomputed_tokens,
            "cached_tokens": self.cached_tokens,
            "emitted_tokens": self.emitted_tokens,
            "rejected": self.rejected,
        }
