"""Scheduling-value metrics and cost-trained rankers: request cost, cost shares at the back
of a ranking, tail AUC, the one-server batch SJF gap, bootstrap intervals, `{prompt,
output_len}` files, multi-model training, older predictor folders, and the vLLM plug-in's
priorities ordering requests as the simulator's scores do."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.predictors import (
    EmbeddingCache,
    evaluate_scores,
    load_predictor,
    save_predictor,
    score_workload,
    train_predictor,
    training_and_test,
)
from llmsim.predictors.cost import RequestCost, capped
from llmsim.predictors.cost_metrics import (
    auc,
    batch_gap,
    leave_one_out_cost,
    scheduling_metrics,
    top_share,
)
from llmsim.predictors.data import other_llms_training, rank_data_file
from llmsim.predictors.evaluate import ceiling

torch = pytest.importorskip("torch")


# -- cost ---------------------------------------------------------------------------------

def test_default_cost_is_kv_tokens_attended_and_broadcasts_over_samples():
    cost = RequestCost()
    assert cost(100, 10) == pytest.approx(100 * 10 + 10 * 10 / 2)
    m = cost(np.array([1, 100]), np.array([[2, 4], [6, 8]]))
    assert m.shape == (2, 2) and m[1, 0] == pytest.approx(100 * 6 + 18)
    np.testing.assert_array_equal(capped(np.array([5, 9000]), 4096), [5, 4096])
    assert capped(np.array([9000]), None)[0] == 9000


def test_cost_from_a_deployment_prices_context_and_grows_with_output():
    from llmsim.simulate import Deployment

    cost = RequestCost.from_cost_model(Deployment(model="llama-3.1-8b").cost_model())
    assert cost.per_context_token > 0 and cost.per_output_token > 0
    assert cost(500, 15000) > 100 * cost(500, 300)  # a runaway outweighs a hundred answers
    assert RequestCost.from_dict(cost.to_dict()) == cost


# -- metrics ------------------------------------------------------------------------------

def test_top_share_counts_the_tied_group_at_the_cut_pro_rata():
    costs = np.array([1.0, 2.0, 3.0, 10.0])
    assert top_share(np.array([0, 1, 2, 3.0]), costs, 0.25) == pytest.approx(10 / 16)
    assert top_share(np.array([3, 2, 1, 0.0]), costs, 0.25) == pytest.approx(1 / 16)
    # all tied: each place of the top 2 holds the mean cost
    assert top_share(np.zeros(4), costs, 0.5) == pytest.approx(2 * 4 / 16)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=2, max_size=30))
def test_auc_is_the_mann_whitney_probability(rows):
    scores = np.array([r[0] for r in rows], float)
    positive = np.array([r[1] for r in rows])
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        assert np.isnan(auc(scores, positive))
        return
    brute = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg])
    assert auc(scores, positive) == pytest.approx(brute)


def _completion_sum(order: np.ndarray, costs: np.ndarray) -> float:
    return float(np.cumsum(costs[order]).sum())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10_000), st.integers(-3, 3)), min_size=2,
                max_size=6))
def test_batch_gap_is_the_share_of_the_one_server_sjf_gap_closed(rows):
    costs = np.array([r[0] for r in rows], float)
    scores = np.array([r[1] for r in rows], float)
    n = len(costs)
    pairs = list(itertools.combinations(range(n), 2))
    weight = sum(abs(costs[i] - costs[j]) for i, j in pairs)
    if weight == 0:
        assert np.isnan(batch_gap(scores, costs))
        return
    right = sum((costs[i] - costs[j]) * np.sign(scores[i] - scores[j]) for i, j in pairs)
    assert batch_gap(scores, costs) == pytest.approx(right / weight)
    if len(set(scores)) == n:  # a strict order: the completion-time reading, by brute force
        mine = _completion_sum(np.argsort(scores), costs)
        best = _completion_sum(np.argsort(costs), costs)
        random_order = np.mean([_completion_sum(np.array(p), costs)
                                for p in itertools.permutations(range(n))])
        assert batch_gap(scores, costs) == pytest.approx(
            (random_order - mine) / (random_order - best))


def test_ceiling_scores_each_sample_by_the_others_and_perfect_is_the_best_share():
    rng = np.random.default_rng(0)
    tokens = rng.integers(10, 500, 200)
    lengths = np.maximum(1, rng.lognormal(5, 1.2, (200, 6))).astype(int)
    loo = leave_one_out_cost(tokens, lengths)
    c = RequestCost()(tokens, lengths)
    assert loo[3, 2] == pytest.approx(np.delete(c[3], 2).mean())
    own = scheduling_metrics(c, tokens, lengths)
    noisy = scheduling_metrics(loo, tokens, lengths)
    assert own["batch_gap"] == pytest.approx(1.0)
    assert own["cost_share_top5"] >= noisy["cost_share_top5"]
    assert scheduling_metrics(-c, tokens, lengths)["batch_gap"] == pytest.approx(-1.0)


def test_evaluation_reports_scheduling_figures_with_bootstrap_intervals(castillo):
    _, test = training_and_test(castillo, "Llama-3.1-8B-Instruct")
    truth = RequestCost()(test.prompt_tokens, test.lengths).mean(axis=1)
    r = evaluate_scores(truth, test, bootstrap=30, seed=1)["all"]
    for key in ("kendall_tau", "cost_share_top1", "cost_share_top5", "auc_2k", "batch_gap"):
        assert key in r and key in r["ci"]
    lo, hi = r["ci"]["batch_gap"]
    assert lo <= r["batch_gap"] <= hi and hi - lo > 0
    assert np.isnan(r["auc_2k"])  # no synthetic answer reaches 2k tokens
    worse = evaluate_scores(-truth, test)["all"]
    assert worse["batch_gap"] < 0 < r["batch_gap"]
    top = ceiling(test, cap=300)
    assert top["perfect"]["cost_share_top5"] >= top["all"]["cost_share_top5"]
    assert ceiling(test.select(np.arange(5)), bootstrap=0)["all"]["prompts"] == 5


# -- data ---------------------------------------------------------------------------------

def test_a_prompt_output_file_groups_repeated_prompts_into_samples(tmp_path):
    rows = [("b", 5), ("a", 1), ("b", 7), ("a", 3)]
    path = tmp_path / "req.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "output_len": n}) + "\n" for p, n in rows))
    d = rank_data_file(path)
    assert list(d.text) == ["b", "a"] and d.lengths.tolist() == [[5, 7], [1, 3]]
    path.write_text("".join(json.dumps({"prompt": p, "output_len": n}) + "\n"
                            for p, n in rows[:3]))
    single = rank_data_file(path)  # uneven repeats: each row its own prompt
    assert single.lengths.shape == (3, 1) and ceiling(single) is None


def test_other_llms_training_rows_leave_out_the_test_prompts(castillo):
    train, test = training_and_test(castillo, "Llama-3.1-8B-Instruct")
    others = other_llms_training(castillo, train.model, "all", test)
    assert [o.model for o in others] == ["Qwen--Qwen2.5-7B-Instruct-1M"]
    assert not set(others[0].prompt_id) & set(test.prompt_id)
    assert set(others[0].prompt_id) == set(train.prompt_id)


# -- training -----------------------------------------------------------------------------

def test_the_cost_ranker_learns_trains_members_and_round_trips(castillo, cache, tmp_path):
    train, test = training_and_test(castillo, "Llama-3.1-8B-Instruct")
    predictor, card = train_predictor("pars", train, cache=cache, epochs=15, max_tokens=64,
                                      folds=3, tail_threshold=500)
    assert len(predictor.heads) == 3 and len(card["training"]["members"]) == 3
    assert card["config"]["tail_mix"] in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    assert set(predictor.validation) == set(train.prompt_id)  # every prompt validated once
    result = evaluate_scores(predictor.score(test.text, test.prompt_tokens), test)["all"]
    # chance is 0, the noise ceiling 0.93 / 0.86 on these prompts
    assert result["batch_gap"] > 0.3 and result["kendall_tau"] > 0.4, result
    folder = save_predictor(predictor, tmp_path / "pars", card)
    again = load_predictor(folder, cache)
    np.testing.assert_allclose(again.score(test.text, test.prompt_tokens),
                               predictor.score(test.text, test.prompt_tokens), rtol=1e-5)


def test_multi_model_training_takes_the_llm_as_an_input(castillo, cache):
    train, test = training_and_test(castillo, "Llama-3.1-8B-Instruct")
    others = other_llms_training(castillo, train.model, "all", test)
    predictor, card = train_predictor("pars", train, cache=cache, extra=others, epochs=10,
                                      max_tokens=64, folds=2)
    assert predictor.config.model_list == [train.model, others[0].model]
    assert predictor.head[0].in_features == 384 + 1 + 2
    assert card["data"]["other_llms"] == [others[0].model]
    result = evaluate_scores(predictor.score(test.text, test.prompt_tokens), test)["all"]
    assert result["kendall_tau"] > 0.4, result
    with pytest.raises(ValueError, match="other LLMs"):
        train_predictor("pars", train, cache=cache, models="x,y", epochs=1)


def test_a_folder_from_before_cost_training_still_loads_and_scores(castillo, cache, tmp_path):
    from safetensors.torch import load_file, save_file

    train, test = training_and_test(castillo, "Llama-3.1-8B-Instruct")
    old = {"target": "mean_length", "select": "tau", "tail_threshold": 0,
           "prompt_feature": False, "folds": 1}
    predictor, card = train_predictor("pars", train, cache=cache, epochs=3, max_tokens=64,
                                      **old)
    folder = save_predictor(predictor, tmp_path / "old", card)
    doc = json.loads((folder / "card.json").read_text())
    for key in ("target", "cap", "tail_threshold", "tail_weight", "tail_mix",
                "prompt_feature", "select", "folds", "models"):
        del doc["config"][key]
    (folder / "card.json").write_text(json.dumps(doc))
    tensors = load_file(folder / "head.safetensors")
    save_file({k[3:]: v for k, v in tensors.items() if k.startswith("m0.")},
              str(folder / "head.safetensors"))  # the old file: the head's own keys
    np.testing.assert_allclose(load_predictor(folder, cache).score(test.text, None),
                               predictor.score(test.text, None), rtol=1e-5)


def test_lgbm_learns_the_cost_and_keeps_trees_by_the_batch_gap(castillo):
    train, test = training_and_test(castillo, "Llama-3.1-8B-Instruct")
    predictor, card = train_predictor("lgbm", train, trees=40, min_child_samples=3,
                                      group_size=10, target="cost", select="batch_gap")
    assert "heldout_batch_gap" in card["training"]
    result = evaluate_scores(predictor.score(test.text, test.prompt_tokens), test)["all"]
    assert result["batch_gap"] > 0.3, result
    with pytest.raises(ValueError, match="target"):
        train_predictor("lgbm", train, target="tokens")


# -- the vLLM plug-in's path --------------------------------------------------------------

def test_the_plugin_priorities_order_requests_as_the_simulator_scores(castillo, cache,
                                                                     tmp_path):
    from llmsim.integrations.vllm_priority import PredictorScorer, PromptInfo, priority_for
    from llmsim.traces import load_castillo_pool, synthesize

    train, _ = training_and_test(castillo, "Llama-3.1-8B-Instruct")
    predictor, card = train_predictor("pars", train, cache=cache, epochs=5, max_tokens=64,
                                      folds=2)
    folder = save_predictor(predictor, tmp_path / "pars", card)
    pool = load_castillo_pool(castillo, model="Llama-3.1-8B-Instruct", split="test")
    w = synthesize(300, pool, np.zeros(300), np.random.default_rng(0))
    simulator = score_workload(load_predictor(folder, cache), w)  # batched, cached
    scorer = PredictorScorer(folder)  # as `vllm serve` loads it: no cache, one at a time
    plugin = np.array([priority_for(scorer(PromptInfo(None, [1] * int(n), lambda t=t: t)))
                       for t, n in zip(pool.text[w.prompt_id], w.prompt_tokens, strict=True)])
    # same scores: the plug-in's integer priority is the simulator's score to 1/scale
    np.testing.assert_allclose(plugin / 1000, simulator, atol=0.5e-3 + 1e-5)
    i, j = np.triu_indices(len(w), 1)
    # same order: a pair the scores tell apart by more than the priority's resolution is
    # ordered alike by vLLM; none is ever reversed (closer pairs may only tie)
    ds, dp = np.sign(simulator[i] - simulator[j]), np.sign(plugin[i] - plugin[j])
    apart = np.abs(simulator[i] - simulator[j]) > 1.01e-3
    assert np.array_equal(ds[apart], dp[apart]) and not np.any(ds * dp < 0)


# -- encoder depth --------------------------------------------------------------------------

def test_a_shallower_encoder_is_cached_apart_and_matches_the_full_models_hidden_state(tmp_path):
    from llmsim.predictors.encoder import TextEncoder

    texts = ["Write a Python function that sorts.", "Answer yes or no: is tea hot?"]
    full = TextEncoder(16)
    batch = full.tokenize(texts)
    with torch.inference_mode():
        hidden = full.model(**batch, output_hidden_states=True).hidden_states
    mask = batch["attention_mask"].unsqueeze(-1).float()
    for depth in (0, 2):
        pooled = (hidden[depth] * mask).sum(1) / mask.sum(1)
        expected = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        np.testing.assert_allclose(TextEncoder(16, layers=depth).embed(texts), expected,
                                   atol=1e-5)
    root = EmbeddingCache(tmp_path, 16)
    assert root.like(16, 0).folder != root.folder and root.like(16, 6).folder == root.folder
    with pytest.raises(ValueError, match="layers"):
        TextEncoder(16, layers=7)


def test_a_static_embedding_ranker_trains_on_its_own_cache(castillo, tmp_path):
    train, test = training_and_test(castillo, "Llama-3.1-8B-Instruct")
    cache = EmbeddingCache(tmp_path, 64)
    predictor, card = train_predictor("pars", train, cache=cache, epochs=10, max_tokens=64,
                                      folds=2, layers=0)
    assert card["encoder"]["layers"] == 0
    assert (tmp_path / "all-MiniLM-L6-v2-L0-64").is_dir()
    assert not (tmp_path / "all-MiniLM-L6-v2-64").exists()
    result = evaluate_scores(predictor.score(test.text, test.prompt_tokens), test)["all"]
    assert result["kendall_tau"] > 0.4, result  # the task words alone carry the cue


# -- the command --------------------------------------------------------------------------

def test_evaluate_ranker_reads_any_prompt_output_file_and_prices_with_a_deployment(
        castillo, tmp_path):
    from typer.testing import CliRunner

    from llmsim.cli import app
    from llmsim.predictors import rank_data

    test = rank_data(castillo, "Llama-3.1-8B-Instruct", ("test",))
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps({"prompt": t, "output_len": int(n)}) + "\n"
                            for t, row in zip(test.text, test.lengths, strict=True)
                            for n in row[:3]))
    runner = CliRunner(env={"COLUMNS": "250"})
    res = runner.invoke(app, ["evaluate-ranker", "length", "--data", str(path), "--cap", "300",
                              "--cost-of", "llama-3.1-8b", "--bootstrap", "20", "--json",
                              str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    assert "cost top 1%" in res.output and "perfect ranking" in res.output
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["cap"] == 300 and "marginal seconds" in doc["cost"]["label"]
    figures = doc["predictors"][0]["all"]
    assert figures["prompts"] == len(test) and "batch_gap" in figures["ci"]
    assert doc["noise_ceiling"]["all"]["batch_gap"] > figures["batch_gap"]
    res = runner.invoke(app, ["evaluate-ranker", "length", "--data", str(castillo)])
    assert res.exit_code == 2 and "needs --model" in res.output


def test_evaluate_ranker_reads_a_csv_and_refuses_a_bad_row_writing_nothing(tmp_path):
    import csv

    from typer.testing import CliRunner

    from llmsim.cli import app

    rng = np.random.default_rng(3)
    path = tmp_path / "answers.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "output_len", "prompt_len"])
        for i in range(40):  # 3 samples per prompt; longer prompts answer longer
            for _ in range(3):
                w.writerow([f"prompt number {i}", int(rng.integers(1, 50)) + 100 * i, 10 + i])
    runner = CliRunner(env={"COLUMNS": "250"})
    out = tmp_path / "e.json"
    res = runner.invoke(app, ["evaluate-ranker", "length", "--data", str(path),
                              "--bootstrap", "10", "--json", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    figures = doc["predictors"][0]["all"]
    assert figures["prompts"] == 40 and figures["kendall_tau"] > 0.8
    assert figures["cost_share_top1"] > 0 and "cost_share_top5" in figures["ci"]
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,output_len\nhello,12\nworld,-3\n")
    out_bad = tmp_path / "bad.json"
    res = runner.invoke(app, ["evaluate-ranker", "length", "--data", str(bad),
                              "--json", str(out_bad)])
    assert res.exit_code == 2 and "line 3" in res.output and "output_len" in res.output
    assert not out_bad.exists()


def test_the_numpy_scoring_path_is_the_torch_function():
    from llmsim.predictors.encoder import TextEncoder
    from llmsim.predictors.neural import make_head
    from llmsim.predictors.static import HeadStack, StaticEncoder

    texts = ["Write a Python function that sorts.", "Ünïcödé ✓ " * 40, "x",
             "Answer yes or no: is tea hot?\n" * 30]
    np.testing.assert_allclose(StaticEncoder(32).embed(texts, batch_size=3),
                               TextEncoder(32, layers=0).embed(texts), atol=2e-6)
    torch.manual_seed(0)
    heads = [make_head(10, 8, 0.1, 2).eval() for _ in range(3)]
    x = np.random.default_rng(0).normal(size=(5, 10)).astype(np.float32)
    with torch.inference_mode():
        expected = np.stack([h(torch.from_numpy(x)).numpy() for h in heads])
    np.testing.assert_allclose(HeadStack(heads)(x), expected, rtol=1e-5, atol=1e-6)


def test_a_long_prompt_is_tokenized_by_its_prefix_to_the_same_window():
    from llmsim.predictors.static import StaticEncoder

    enc = StaticEncoder(16)
    rng = np.random.default_rng(4)
    words = ["the", "Ünïcödé", "x" * 120, "函数", "def", "f(x):", "\n", "\t", "a-b", "..."]
    texts = ["short one", "word " * 15, "a" * 500, "a" * 500 + " b",
             "\n".join(["line"] * 40), "longwordwithoutspaces" * 30 + " tail " * 40]
    texts += [" ".join(rng.choice(words, int(rng.integers(1, 300)))) for _ in range(60)]
    for text in texts:  # every cut lands at whitespace or falls back to the whole text
        assert enc.ids(text) == enc.tokenizer.encode(text).ids, text[:60]


def test_fine_tuned_token_embeddings_score_in_numpy_and_round_trip(castillo, tmp_path):
    from llmsim.predictors.static import StaticEncoder

    train, test = training_and_test(castillo, "Llama-3.1-8B-Instruct")
    predictor, card = train_predictor("pars", train.select(np.arange(30)), epochs=2,
                                      max_tokens=16, partners=2, batch_size=16, folds=1,
                                      layers=0, finetune=True, encoder_lr=1e-2)
    assert isinstance(predictor.encoder, StaticEncoder)
    stock = StaticEncoder(16)
    assert not np.allclose(predictor.encoder.word, stock.word)  # the embeddings moved
    folder = save_predictor(predictor, tmp_path / "ft0", card)
    again = load_predictor(folder)
    assert isinstance(again.encoder, StaticEncoder)
    tokens = test.prompt_tokens[:8]
    np.testing.assert_allclose(again.score(test.text[:8], tokens),
                               predictor.score(test.text[:8], tokens), rtol=1e-5)
