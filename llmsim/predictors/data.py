"""Ranking data: prompts with several real output lengths each, from CASTILLO.

A predictor learns one model's lengths (Llama-3.1-8B's, say): the lengths of the 10
generations of each prompt by that model. `rank_data(path, model, splits)` gives them as
columns; `training_and_test(path, model)` gives the train/test pair every command uses:
- test: CASTILLO's `test` split (complete in the published files);
- train: the `train` and `validate` splits (the published train split is partial: 37 of
  92 files), minus any prompt that also appears in test, by id or by identical text, so
  that the test prompts are unseen in training.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..traces.castillo import load_castillo_pool


@dataclass(frozen=True, eq=False)
class RankData:
    prompt_id: np.ndarray  # object array of str
    text: np.ndarray  # object array of str
    prompt_tokens: np.ndarray  # int64: chat-templated prompt tokens of the model
    lengths: np.ndarray  # int64 (prompts, samples): real output lengths
    dataset: np.ndarray  # object array of str: the prompt's source set
    model: str  # whose lengths these are
    source: str

    def __len__(self) -> int:
        return len(self.prompt_id)

    @property
    def mean_length(self) -> np.ndarray:
        return self.lengths.mean(axis=1)

    def select(self, rows: np.ndarray) -> RankData:
        return RankData(self.prompt_id[rows], self.text[rows], self.prompt_tokens[rows],
                        self.lengths[rows], self.dataset[rows], self.model,
                        f"{self.source}; {len(rows)} of {len(self)} prompts")


def rank_data(path: str | Path, model: str, splits: tuple[str, ...]) -> RankData:
    """One model's lengths over the given CASTILLO splits (a prompt kept once)."""
    parts = []
    for split in splits:
        pool = load_castillo_pool(path, model=model, split=split)
        if pool.text is None:
            raise FileNotFoundError(f"{path}: ranking needs the prompt texts "
                                    "(castillo_prompts.jsonl beside the lengths)")
        parts.append(pool)
    ids = np.concatenate([p.prompt_id for p in parts])
    _, first = np.unique(ids, return_index=True)
    keep = np.sort(first)
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])[keep]  # noqa: E731
    dataset = (cat("dataset") if all(p.dataset is not None for p in parts)
               else np.full(len(keep), "unknown", dtype=object))
    return RankData(ids[keep], cat("text"), cat("input_size"), cat("output_sizes"), dataset,
                    str(parts[0].model[0]),
                    f"CASTILLO {Path(path)} ({'+'.join(splits)}, {parts[0].model[0]})")


def training_and_test(path: str | Path, model: str) -> tuple[RankData, RankData]:
    test = rank_data(path, model, ("test",))
    train = rank_data(path, model, ("train", "validate"))
    seen_ids = set(test.prompt_id)
    seen_texts = {text_key(t) for t in test.text}
    unseen = np.array([pid not in seen_ids and text_key(t) not in seen_texts
                       for pid, t in zip(train.prompt_id, train.text, strict=True)])
    return train.select(np.flatnonzero(unseen)), test


def text_key(text: str) -> bytes:
    """A prompt's identity for caches and de-duplication: 16 bytes of its SHA-256."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:16]


def holdout(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, held-out rows): a random `fraction` of n held out for early stopping."""
    order = rng.permutation(n)
    k = max(1, int(round(n * fraction))) if n > 1 else 0
    return np.sort(order[k:]), np.sort(order[:k])
