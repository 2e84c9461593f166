"""A prompt pool: distinct prompts, each with its prompt length and several real output
lengths, to draw synthetic requests from.

Why several output lengths: the same prompt sampled twice gives answers of different
lengths (CASTILLO keeps 10 generations per prompt and model). A request drawn from the
pool takes one of them at random, so a synthetic workload carries the real per-prompt
noise that a length predictor cannot remove -- drawing the mean would flatter every
predictor. Columns, one row per prompt (per prompt and model for a multi-model pool).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .workload import Workload, WorkloadError


@dataclass(frozen=True, eq=False)
class PromptPool:
    prompt_id: np.ndarray  # object array of str: the dataset's id of each prompt
    input_size: np.ndarray  # int64 >= 1: prompt tokens
    output_sizes: np.ndarray  # int64 >= 1, shape (prompts, samples): real output lengths
    text: np.ndarray | None = None  # object array of str, or None when not loaded
    model: np.ndarray | None = None  # object array of str: the model that produced the row
    dataset: np.ndarray | None = None  # object array of str: the prompt's source set
    source: str = "unknown"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        sizes = np.ascontiguousarray(self.output_sizes, dtype=np.int64)
        if sizes.ndim == 1:
            sizes = sizes[:, None]
        object.__setattr__(self, "output_sizes", sizes)
        object.__setattr__(self, "input_size",
                           np.ascontiguousarray(self.input_size, dtype=np.int64))
        n = len(self.prompt_id)
        if n == 0:
            raise WorkloadError("a prompt pool needs at least one prompt")
        for name in ("input_size", "output_sizes", "text", "model", "dataset"):
            col = getattr(self, name)
            if col is not None and len(col) != n:
                raise WorkloadError(f"pool column {name} has {len(col)} rows, prompt_id has {n}")
        if sizes.shape[1] == 0:
            raise WorkloadError("a prompt pool needs at least one output length per prompt")
        for name, col in (("input_size", self.input_size), ("output_sizes", sizes)):
            bad = np.flatnonzero((col < 1).reshape(n, -1).any(axis=1))
            if len(bad):
                raise WorkloadError(f"pool {name} must be >= 1: row {int(bad[0])} "
                                    f"({len(bad)} such rows)")

    def __len__(self) -> int:
        return len(self.prompt_id)

    @property
    def samples(self) -> int:
        """Output lengths per prompt."""
        return self.output_sizes.shape[1]

    def as_workload(self, sample: int = 0) -> Workload:
        """One request per pool row, output = its `sample`-th length, all arriving at 0
        (`meta["has_arrivals"]` False); `prompt_id` is the pool row, `meta["pool"]` the
        pool, and the texts are shared with the pool, not copied."""
        return Workload(
            np.zeros(len(self)), self.input_size, self.output_sizes[:, sample],
            prompt_id=np.arange(len(self), dtype=np.int64), prompt_text=self.text,
            model=self.model, source=f"{self.source}; output sample {sample}",
            meta={**self.meta, "pool": self, "has_arrivals": False},
        )

    @classmethod
    def from_workload(cls, workload: Workload) -> PromptPool:
        """A pool of one output length per prompt from any workload (e.g. a ShareGPT or
        Azure trace), for `synthesize` to draw from."""
        ids = (workload.prompt_id.astype(str).astype(object) if workload.prompt_id is not None
               else np.arange(len(workload)).astype(str).astype(object))
        return cls(ids, workload.prompt_tokens, workload.output_tokens[:, None],
                   text=workload.prompt_text, model=workload.model,
                   source=f"pool of {workload.source}")
