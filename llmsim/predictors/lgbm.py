"""The fast CPU baseline: LightGBM's `lambdarank` on cheap prompt features.

Training queries are random groups of `group_size` training prompts (each prompt in
`repeats` groups); a prompt's relevance is the quantile bin of its label among the
training prompts (0 = cheapest), so a higher score means a costlier answer. The label is
the prompt's mean length (`target="mean_length"`, the default) or its expected cost over
its samples (`target="cost"`, see `cost`; lengths capped at `cap` when given). The number
of trees kept is the one with the best held-out figure (`select`: Kendall tau with the
mean length, or the cost share of the top 1/2/5%, as for the neural predictors). The
model is saved as LightGBM's own text format, which loads without running code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import RankData, holdout
from .features import feature_names, prompt_features
from .labels import SELECT, TARGETS, Rows, label, validation_figure


@dataclass(frozen=True, slots=True)
class LightGBMConfig:
    trees: int = 400
    learning_rate: float = 0.05
    leaves: int = 31
    min_child_samples: int = 20
    group_size: int = 32
    repeats: int = 4
    levels: int = 16  # relevance bins
    holdout: float = 0.1
    target: str = "mean_length"  # mean_length | cost
    cap: int = 0  # max_tokens applied to the training lengths; 0: uncapped
    select: str = "tau"  # tau | cost_share: how many trees to keep
    seed: int = 0

    def check(self) -> None:
        for name in ("trees", "leaves", "min_child_samples", "group_size", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 2 <= self.levels <= 31:  # lambdarank's default label gains go to 30
            raise ValueError(f"levels must be within 2..31, got {self.levels}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.select not in SELECT:
            raise ValueError(f"select must be one of {', '.join(SELECT)}, got {self.select!r}")
        if self.cap < 0:
            raise ValueError(f"cap must be >= 0 (0: none), got {self.cap}")


class LightGBMPredictor:
    kind = "lgbm"

    def __init__(self, booster, trees: int):
        self.booster, self.trees = booster, trees

    def score(self, texts, prompt_tokens, progress: Callable[[int], None] | None = None):
        x = prompt_features(list(texts), np.asarray(prompt_tokens))
        out = self.booster.predict(x, num_iteration=self.trees, num_threads=1)
        if progress:
            progress(len(x))
        return np.asarray(out, dtype=np.float64)


def _lightgbm():
    try:
        import lightgbm
    except ImportError as e:
        raise ImportError(f"the lgbm predictor needs LightGBM ({e}); "
                          "pip install 'llmsim[rank]'") from None
    return lightgbm


def train_lgbm(train: RankData, config: LightGBMConfig,
               progress: Callable[[str, int, int], None] | None = None
               ) -> tuple[LightGBMPredictor, dict]:
    from scipy import stats

    lgb = _lightgbm()
    config.check()
    rng = np.random.default_rng(config.seed)
    fit, held = holdout(len(train), config.holdout, rng)
    x = prompt_features(list(train.text), train.prompt_tokens)
    labelled = Rows.of(train, (), config.cap)
    value = label(labelled, config.target)
    ranks = stats.rankdata(value[fit], method="average") / len(fit)
    relevance = np.minimum((ranks * config.levels).astype(np.int64), config.levels - 1)
    rows, groups = [], []
    for _ in range(config.repeats):
        perm = rng.permutation(len(fit))
        for lo in range(0, len(perm), config.group_size):
            chunk = perm[lo:lo + config.group_size]
            rows.append(chunk)
            groups.append(len(chunk))
    rows = np.concatenate(rows)
    data = lgb.Dataset(x[fit][rows], relevance[rows], group=groups,
                       feature_name=[_safe(n) for n in feature_names()], free_raw_data=True)
    params = {"objective": "lambdarank", "learning_rate": config.learning_rate,
              "num_leaves": config.leaves, "min_child_samples": config.min_child_samples,
              "lambdarank_truncation_level": config.group_size, "verbosity": -1,
              "seed": config.seed, "deterministic": True, "force_row_wise": True,
              # One thread: with OpenMP's default (a thread per core), a training that
              # takes 8 s stalled for over a minute in libgomp's barrier inside the tree
              # split (py-spy) when other processes held the cores; the data are small.
              "num_threads": 1}

    def tick(env):
        if progress:
            progress("boosting", env.iteration + 1, config.trees)

    booster = lgb.train(params, data, num_boost_round=config.trees, callbacks=[tick])
    figures = []
    for k in range(10, config.trees + 1, 10):
        pred = booster.predict(x[held], num_iteration=k, num_threads=1)
        figures.append((validation_figure(pred, labelled, held, config.select), k))
    best, best_trees = max(figures)
    record = {"best_trees": best_trees, f"heldout_{config.select}": round(best, 4),
              "heldout_prompts": int(len(held)), "fit_prompts": int(len(fit))}
    return LightGBMPredictor(booster, best_trees), record


def load_lgbm(folder: Path, card: dict) -> LightGBMPredictor:
    lgb = _lightgbm()
    booster = lgb.Booster(model_file=str(folder / "model.txt"))
    return LightGBMPredictor(booster, int(card["config"]["best_trees"]))


def _safe(name: str) -> str:
    """LightGBM feature names may not hold JSON's special characters."""
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
