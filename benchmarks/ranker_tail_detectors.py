"""Can a cheap prompt-only model find the prompts whose generations run long?

benchmarks/ranker_gap_anatomy.py finds that with Llama-3.1-8B's lengths capped at 4096 and
bursty arrivals the cost ranker's missing gap is made by the ~3% of prompts that generate
1,000+ tokens on average. This trains detectors of those prompts on the training prompts
(the label: the share of a prompt's samples of at least --threshold tokens, as soft labels)
and reports on the held-out test split, with 95% bootstrap intervals over prompts:
- AUC for a test prompt's mean output >= threshold, and for single samples >= threshold;
- for the detector on MiniLM's token embeddings (the cost ranker's own input), the gap the
  simulator closes when its z-scored log-odds are added to the predictor's z-scored score
  (gamma = 0.5, 1, 2), on the study's replicates.
Nothing is selected on the test split: every detector's settings are fixed here.

Needs the rank extra (scikit-learn comes with sentence-transformers) and the embedding
caches of layers 0 and 6 (`python benchmarks/ranker_embed_depths.py --layers 0,6`).

    python benchmarks/ranker_tail_detectors.py \\
        --predictor llmsim-out/study/pars-Llama-3.1-8B-Instruct-cap4096-s0
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import lightgbm as lgb
import numpy as np
from ranker_sim import AZURE, DEPLOYMENT_OF, cap_pool, pool_capacity, replicate, summarise
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from llmsim.policies import get_policy
from llmsim.policies.predicted import predicted_sjf
from llmsim.predictors import EmbeddingCache, default_cache_dir, load_predictor
from llmsim.predictors.cost import capped
from llmsim.predictors.data import text_key, training_and_test
from llmsim.predictors.features import prompt_features
from llmsim.simulate import Deployment, simulate
from llmsim.traces import load_castillo_pool, load_trace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--predictor", type=Path, required=True)
    ap.add_argument("--data", default="../shared/data/castillo")
    ap.add_argument("--llm", default="Llama-3.1-8B-Instruct")
    ap.add_argument("--cap", type=int, default=4096)
    ap.add_argument("--threshold", type=int, default=1000)
    ap.add_argument("--arrivals", default="azure", choices=("azure", "poisson"))
    ap.add_argument("--azure", default=AZURE)
    ap.add_argument("--replicates", type=int, default=10)
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    train, test = training_and_test(args.data, args.llm)
    y = (capped(train.lengths, args.cap or None) >= args.threshold).mean(axis=1)
    test_lengths = capped(test.lengths, args.cap or None)
    predictor = load_predictor(args.predictor)
    if hasattr(predictor, "cache"):
        predictor.cache = EmbeddingCache(default_cache_dir(), predictor.config.max_tokens)
    detectors = {"predictor's score": predictor.score(test.text, test.prompt_tokens),
                 "prompt length": test.prompt_tokens.astype(np.float64)}
    emb = {layers: embeddings(layers, train, test) for layers in (0, 6)}
    for layers, (a, b) in emb.items():
        detectors[f"logistic, MiniLM layer {layers}"] = soft_logistic(a, y, b, c=10.0)
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    words_a, words_b = vec.fit_transform(train.text), vec.transform(test.text)
    detectors["logistic, TF-IDF words 1-2"] = soft_logistic(words_a, y, words_b, c=16.0)
    a, b = emb[6]
    near = np.argsort(-(unit(b[:, :-1]) @ unit(a[:, :-1]).T), axis=1)[:, :20]  # cosine
    detectors["20 nearest, MiniLM layer 6"] = y[near].mean(axis=1)
    feats_a = np.c_[prompt_features(train.text, train.prompt_tokens), a]
    feats_b = np.c_[prompt_features(test.text, test.prompt_tokens), b]
    trees = lgb.LGBMRegressor(n_estimators=300, learning_rate=0.03, num_leaves=15,
                              subsample=0.8, subsample_freq=1, colsample_bytree=0.5,
                              random_state=0, verbose=-1).fit(feats_a, y)
    detectors["LightGBM, features + layer 6"] = trees.predict(feats_b)

    print(f"{len(train)} training prompts ({(y > 0).sum()} with a sample >= {args.threshold} "
          f"tokens, {(y >= 0.5).sum()} with half or more); {len(test)} test prompts "
          f"({(test_lengths.mean(axis=1) >= args.threshold).sum()} with mean >= "
          f"{args.threshold}); lengths capped at {args.cap or 'none'}")
    print(f"| detector | AUC, prompt mean >= {args.threshold} | AUC, sample >= "
          f"{args.threshold} |\n|---|---:|---:|")
    rng = np.random.default_rng(0)
    for name, s in detectors.items():
        cells = [auc_ci(s, lab, rng, args.bootstrap) for lab in
                 (test_lengths.mean(axis=1, keepdims=True) >= args.threshold,
                  test_lengths >= args.threshold)]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)

    pool = cap_pool(load_castillo_pool(args.data, model=args.llm, split="test"), args.cap)
    assert list(pool.text) == list(test.text)
    z = lambda x: (x - x.mean()) / x.std()  # noqa: E731
    base, tail = z(detectors["predictor's score"]), z(detectors["logistic, MiniLM layer 0"])
    rankings = {"predictor": base, **{f"predictor + {g:g} x detector": base + g * tail
                                      for g in (0.5, 1.0, 2.0)}}
    deployment = Deployment(model=DEPLOYMENT_OF.get(args.llm, "llama-3.1-8b"), gpu="h100")
    cost_model = deployment.cost_model()
    rate = pool_capacity(pool, deployment, cost_model)
    gaps = np.diff(load_trace(args.azure).arrival) if args.arrivals == "azure" else None
    names, runs = ["fcfs", "sjf", *rankings], []
    for r in range(args.replicates):
        prompts, w = replicate(pool, r, 19000, rate, args.arrivals, gaps)
        run = {}
        for n in names:
            policy = (get_policy(n) if n in ("fcfs", "sjf")
                      else predicted_sjf(n, rankings[n][prompts]))
            e2e = simulate(w, policy, deployment, cost=cost_model).summary["e2e"]
            run[n] = {"e2e_mean": e2e["mean"], "e2e_p99": e2e["p99"]}
        runs.append(run)
    gap = summarise(runs, names)["gap"]
    print(f"\ngap closed, load 1.0 ({rate:.2f} req/s), {args.arrivals} arrivals, "
          f"{args.replicates} replicates:")
    for n in rankings:
        print(f"  {n}: {gap[n]['closed']:.1%} [{gap[n]['ci'][0]:.0%}, {gap[n]['ci'][1]:.0%}]")


def embeddings(layers: int, train, test) -> tuple[np.ndarray, np.ndarray]:
    cache = EmbeddingCache(default_cache_dir(), 256, layers).load()
    missing = sum(text_key(t) not in cache for t in (*train.text, *test.text))
    if missing:
        raise SystemExit(f"{missing} prompts lack layer-{layers} embeddings: run "
                         f"benchmarks/ranker_embed_depths.py --layers 0,6 first")
    a, b = (np.stack([cache[text_key(t)] for t in d.text]) for d in (train, test))
    return (np.c_[a, np.log(train.prompt_tokens)], np.c_[b, np.log(test.prompt_tokens)])


def soft_logistic(a, y: np.ndarray, b, c: float) -> np.ndarray:
    """Logistic regression on soft labels: each prompt once as a positive weighted by its
    share of long samples and once as a negative weighted by the rest."""
    from scipy import sparse

    stack = sparse.vstack if sparse.issparse(a) else np.vstack
    model = LogisticRegression(C=c, max_iter=3000).fit(
        stack([a, a]), np.r_[np.ones(len(y)), np.zeros(len(y))],
        sample_weight=np.r_[y, 1 - y] + 1e-6)
    return model.decision_function(b)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def auc_ci(scores: np.ndarray, positive: np.ndarray, rng: np.random.Generator,
           resamples: int) -> str:
    """AUC with a 95% interval from resampling prompts (a prompt's samples stay together)."""
    pos = np.broadcast_to(positive, (len(scores), positive.shape[1]))
    s = np.broadcast_to(scores[:, None], pos.shape)
    point = roc_auc_score(pos.ravel(), s.ravel())
    boot = []
    for _ in range(resamples):
        rows = rng.integers(0, len(scores), len(scores))
        if pos[rows].any() and not pos[rows].all():
            boot.append(roc_auc_score(pos[rows].ravel(), s[rows].ravel()))
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return f"{point:.3f} [{lo:.2f}, {hi:.2f}]"


if __name__ == "__main__":
    main()
