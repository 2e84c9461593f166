"""Ranking data: prompts with several real output lengths each, from CASTILLO.

A predictor learns one model's lengths (Llama-3.1-8B's, say): the lengths of the 10
generations of each prompt by that model. `rank_data(path, model, splits)` gives them as
columns; `rank_data_file(path)` reads any `{prompt, output_len}` JSONL/CSV instead (rows
with the same prompt text are that prompt's samples); `training_and_test(path, model)`
gives the train/test pair every command uses:
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
    parts = [load_castillo_pool(path, model=model, split=split) for split in splits]
    return _from_pools(parts, f"CASTILLO {Path(path)} ({'+'.join(splits)}, "
                              f"{parts[0].model[0]})", path)


def _from_pools(parts: list, source: str, path) -> RankData:
    if any(p.text is None for p in parts):
        raise FileNotFoundError(f"{path}: ranking needs the prompt texts "
                                "(castillo_prompts.jsonl beside the lengths)")
    ids = np.concatenate([p.prompt_id for p in parts])
    _, first = np.unique(ids, return_index=True)
    keep = np.sort(first)
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])[keep]  # noqa: E731
    dataset = (cat("dataset") if all(p.dataset is not None for p in parts)
               else np.full(len(keep), "unknown", dtype=object))
    return RankData(ids[keep], cat("text"), cat("input_size"), cat("output_sizes"), dataset,
                    str(parts[0].model[0]), source)


def other_llms_training(path: str | Path, scored: str, models: str,
                        test: RankData) -> list[RankData]:
    """The lengths of other CASTILLO LLMs on training prompts (train and validate splits,
    minus every prompt of `test` by id or text), for multi-model training. `models`:
    comma-separated names (the part after '--' is enough) or `all`; `scored` is left out."""
    from ..traces.castillo import _match_model, castillo_files

    pools = [load_castillo_pool(path, model=None, split=s) for s in ("train", "validate")]
    known = sorted(set(np.concatenate([p.model for p in pools])))
    _, lengths_file = castillo_files(Path(path))
    wanted = (known if models.strip().lower() == "all"
              else [_match_model(lengths_file, m.strip(), known) for m in models.split(",")
                    if m.strip()])
    out = []
    for name in wanted:
        if name == scored:
            continue
        parts = [_select_pool(p, p.model == name) for p in pools]
        parts = [p for p in parts if p is not None]
        if parts:
            out.append(_unseen(_from_pools(parts, f"CASTILLO {Path(path)} (train+validate, "
                                                  f"{name})", path), test))
    return out


def _select_pool(pool, keep: np.ndarray):
    from ..traces.pool import PromptPool

    rows = np.flatnonzero(keep)
    if not len(rows):
        return None
    return PromptPool(pool.prompt_id[rows], pool.input_size[rows], pool.output_sizes[rows],
                      text=pool.text[rows], model=pool.model[rows],
                      dataset=None if pool.dataset is None else pool.dataset[rows],
                      source=pool.source)


def rank_data_file(path: str | Path) -> RankData:
    """A `{prompt, output_len[, prompt_len]}` file as ranking data. Rows with the same
    prompt text are one prompt's samples when every prompt has the same number of them
    (a noise ceiling then exists); otherwise each row is a prompt of its own."""
    from ..traces.prompt_output import load_prompt_output

    w = load_prompt_output(path)
    texts = w.prompt_text.astype(str)
    _, first, inverse, counts = np.unique(texts, return_index=True, return_inverse=True,
                                          return_counts=True)
    if len(set(counts.tolist())) == 1 and counts[0] > 1:
        order = np.argsort(inverse, kind="stable")  # rows grouped by prompt, file order within
        keep = np.sort(first)
        by_prompt = w.output_tokens[order].reshape(len(first), counts[0])
        rank = np.empty(len(first), dtype=np.int64)
        rank[np.argsort(first)] = np.arange(len(first))  # prompts in order of first sight
        lengths = np.empty_like(by_prompt)
        lengths[rank] = by_prompt
        rows = keep
    else:
        lengths, rows = w.output_tokens[:, None], np.arange(len(w))
    ids = np.array([f"row{r + 1}" for r in rows], dtype=object)
    return RankData(ids, w.prompt_text[rows], w.prompt_tokens[rows], lengths,
                    np.full(len(rows), "all", dtype=object), Path(path).stem,
                    f"{path} ({len(rows)} prompts, {lengths.shape[1]} sample(s) each; "
                    f"{w.meta.get('token_counts', '')})")


def training_and_test(path: str | Path, model: str) -> tuple[RankData, RankData]:
    test = rank_data(path, model, ("test",))
    return _unseen(rank_data(path, model, ("train", "validate")), test), test


def _unseen(train: RankData, test: RankData) -> RankData:
    """`train` minus any prompt of `test`, by id or by identical text."""
    seen_ids = set(test.prompt_id)
    seen_texts = {text_key(t) for t in test.text}
    unseen = np.array([pid not in seen_ids and text_key(t) not in seen_texts
                       for pid, t in zip(train.prompt_id, train.text, strict=True)])
    return train.select(np.flatnonzero(unseen))


def text_key(text: str) -> bytes:
    """A prompt's identity for caches and de-duplication: 16 bytes of its SHA-256."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:16]


def holdout(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, held-out rows): a random `fraction` of n held out for early stopping."""
    order = rng.permutation(n)
    k = max(1, int(round(n * fraction))) if n > 1 else 0
    return np.sort(order[k:]), np.sort(order[:k])
