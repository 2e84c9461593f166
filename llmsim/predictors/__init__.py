"""Output-length predictors: learn to rank prompts by how long the answer will be, so a
scheduler can approximate shortest-job-first without knowing the lengths.

    from llmsim.predictors import training_and_test, train_predictor, save_predictor
    train, test = training_and_test("castillo/", model="Llama-3.1-8B-Instruct")
    predictor, card = train_predictor("pars", train, cache=EmbeddingCache(...))
    save_predictor(predictor, "pars-llama", card)
    policy = load_predictor_policy("pars-llama+sp", workload)   # for llmsim.simulate

Kinds: `pars` (pairwise margin ranking, the PARS method), `pointwise` (log-length
regression), `listmle` (listwise), all on the MiniLM encoder; `lgbm` (LightGBM lambdarank
on cheap features); `length` (prompt length, the floor). Torch, the encoder and LightGBM
are imported only when a predictor that needs them is trained or loaded.
"""

from .artifact import KINDS, ArtifactError, load_predictor, read_card, save_predictor
from .data import RankData, rank_data, training_and_test
from .encoder import EmbeddingCache
from .evaluate import ceiling, evaluate_predictor, evaluate_scores
from .policy import is_predictor_name, load_predictor_policy, predictor_policy, score_workload
from .train import default_cache_dir, train_predictor

__all__ = ["KINDS", "ArtifactError", "EmbeddingCache", "RankData", "ceiling",
           "default_cache_dir", "evaluate_predictor", "evaluate_scores", "is_predictor_name",
           "load_predictor", "load_predictor_policy", "predictor_policy", "rank_data",
           "read_card", "save_predictor", "score_workload", "train_predictor",
           "training_and_test"]
