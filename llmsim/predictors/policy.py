"""A trained predictor as a scheduling policy: score every request of a workload, then
shortest-predicted-job-first (`policies.predicted_sjf`).

Requests drawn from a prompt pool are scored once per distinct prompt (a million requests
from ten thousand prompts cost ten thousand scorings); a workload that carries texts
itself is scored once per distinct text. The prompt-length predictor needs no text.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..policies import Policy, with_starvation_prevention
from ..policies.predicted import predicted_sjf
from ..traces.workload import Workload, WorkloadError
from .artifact import load_predictor
from .encoder import EmbeddingCache


def score_workload(predictor, workload: Workload,
                   progress: Callable[[int], None] | None = None) -> np.ndarray:
    """One score per request (higher = longer expected answer)."""
    if predictor.kind == "length":
        return predictor.score(None, workload.prompt_tokens, progress)
    pool = workload.meta.get("pool")
    if pool is not None and pool.text is not None and workload.prompt_id is not None:
        rows, where = np.unique(workload.prompt_id, return_inverse=True)
        return predictor.score(pool.text[rows], pool.input_size[rows], progress)[where]
    if workload.prompt_text is None:
        raise WorkloadError(f"{workload.source}: no prompt texts, and predictor "
                            f"{predictor.kind!r} ranks by text; use a trace with prompts "
                            "(CASTILLO, ShareGPT, prompt_output)")
    texts, first, where = np.unique(workload.prompt_text.astype(str), return_index=True,
                                    return_inverse=True)
    return predictor.score(texts, workload.prompt_tokens[first], progress)[where]


def predictor_policy(name: str, predictor, workload: Workload, *, starvation: bool = False,
                     scoring_delay: float = 0.0, origin: str = "",
                     progress: Callable[[int], None] | None = None) -> Policy:
    scores = score_workload(predictor, workload, progress)
    learned = getattr(predictor, "card", {}).get("learned_lengths_of", "?")
    policy = predicted_sjf(name, scores, f"shortest predicted job first: {predictor.kind} "
                           f"predictor (lengths of {learned}){origin}", scoring_delay)
    return with_starvation_prevention(policy) if starvation else policy


def is_predictor_name(name: str) -> bool:
    """A policy name that points at a predictor folder (`path/to/pars`, `...+sp`)."""
    base = name[:-3] if name.lower().endswith("+sp") else name
    return (Path(base) / "card.json").is_file()


def load_predictor_policy(name: str, workload: Workload, cache_dir: Path | None = None,
                          scoring_delay=0.0, progress=None) -> Policy:
    """`name` = a predictor folder, optionally with `+sp` for starvation prevention;
    neural predictors keep prompt embeddings in `cache_dir` (None: no cache)."""
    starvation = name.lower().endswith("+sp")
    folder = Path(name[:-3] if starvation else name)
    predictor = load_predictor(folder)
    if cache_dir is not None and hasattr(predictor, "cache"):
        predictor.cache = EmbeddingCache(cache_dir, predictor.config.max_tokens)
    return predictor_policy(folder.name, predictor, workload, starvation=starvation,
                            scoring_delay=scoring_delay, origin=f" from {folder}",
                            progress=progress)
