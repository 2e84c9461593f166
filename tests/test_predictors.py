"""Length predictors: metrics, pair and list sampling, training on a learnable synthetic
CASTILLO, artifacts that load without pickle, workload scoring, and the commands."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from llmsim.predictors import (
    ArtifactError,
    EmbeddingCache,
    load_predictor,
    rank_data,
    read_card,
    save_predictor,
    score_workload,
    train_predictor,
    training_and_test,
)
from llmsim.predictors.encoder import embed_texts
from llmsim.predictors.evaluate import evaluate_predictor
from llmsim.predictors.metrics import noise_ceiling, pair_accuracy, ranking_metrics
from llmsim.predictors.objectives import sample_lists, sample_pairs
from llmsim.traces import load_castillo_pool, synthesize

from .castillo_synth import write_castillo

torch = pytest.importorskip("torch")


# -- metrics --------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.integers(0, 5)), min_size=2, max_size=25))
def test_pair_accuracy_matches_brute_force(rows):
    length = np.array([r[0] for r in rows], float)
    scores = np.array([r[1] for r in rows], float)
    right = total = 0.0
    for i, j in itertools.combinations(range(len(rows)), 2):
        a, b = (i, j) if length[i] > length[j] else (j, i)
        if length[a] == length[b] or (length[a] - length[b]) / length[a] < 0.2:
            continue
        total += 1
        right += 1.0 if scores[a] > scores[b] else 0.5 if scores[a] == scores[b] else 0.0
    got = pair_accuracy(scores, length, chunk=7)
    assert (np.isnan(got) and total == 0) or got == pytest.approx(right / total)


def test_ranking_metrics_average_over_samples_and_ceiling_uses_the_other_samples():
    rng = np.random.default_rng(1)
    mean = rng.lognormal(5, 1, 300)
    lengths = np.maximum(1, rng.normal(mean[:, None], 0.3 * mean[:, None], (300, 10)))
    perfect = ranking_metrics(mean, lengths)
    ceiling = noise_ceiling(lengths)
    manual = np.mean([stats.kendalltau(np.delete(lengths, s, 1).mean(1), lengths[:, s])
                      .statistic for s in range(10)])
    assert ceiling["kendall_tau"] == pytest.approx(manual)
    assert 0.5 < ceiling["kendall_tau"] < 1 and perfect["kendall_tau"] < 1  # sample noise
    assert ranking_metrics(lengths[:, 0], lengths[:, 0])["kendall_tau"] == pytest.approx(1)
    assert ranking_metrics(-mean, lengths)["pair_accuracy"] < 0.1
    with pytest.raises(ValueError, match="two samples"):
        noise_ceiling(lengths[:, :1])


# -- sampling ---------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 2000), min_size=2, max_size=60), st.integers(1, 5),
       st.floats(0.05, 0.9))
def test_pairs_are_impactful_and_ordered(lengths, partners, gap):
    y = np.array(lengths, float)
    a, b = sample_pairs(y, partners, gap, np.random.default_rng(0))
    assert np.all(y[a] > y[b])
    assert np.all((y[a] - y[b]) / y[a] >= gap - 1e-12)
    eligible = sum(any(abs(x - z) / max(x, z) >= gap for z in y) for x in y)
    assert len(a) == eligible * partners


def test_lists_partition_the_rows():
    lists = sample_lists(103, 10, np.random.default_rng(0))
    assert sorted(np.concatenate(lists).tolist()) == list(range(103))


def test_listmle_loss_is_the_plackett_luce_likelihood():
    from llmsim.predictors.objectives import listmle_loss

    s = torch.tensor([0.3, -1.0, 2.0])
    length = torch.tensor([10.0, 5.0, 20.0])  # true order longest first: 2, 0, 1
    e = torch.exp(s)
    p = e[2] / e.sum() * e[0] / (e[0] + e[1]) * 1.0
    assert listmle_loss(s, length).item() == pytest.approx(-torch.log(p).item() / 3, rel=1e-5)
    assert listmle_loss(length.log(), length) < listmle_loss(-length.log(), length)


# -- data -------------------------------------------------------------------------------

def test_training_prompts_exclude_test_prompts_by_id_and_text(tmp_path):
    folder = write_castillo(tmp_path / "c", (8, 4, 6))
    rows = [json.loads(x) for x in (folder / "castillo_prompts.jsonl").read_text().splitlines()]
    lens = [json.loads(x) for x in (folder / "castillo_output_lengths.jsonl").read_text()
            .splitlines()]
    test_text = next(r["prompt_text"] for r in rows if r["split"] == "test")
    rows[0]["prompt_text"] = test_text  # a train prompt with a test prompt's text
    lens.append({**lens[-1], "split": "validate"})  # a test prompt listed again in validate
    (folder / "castillo_prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "castillo_output_lengths.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in lens))
    train, test = training_and_test(folder, "Llama-3.1-8B-Instruct")
    assert len(test) == 6 and len(train) == 12 - 1
    assert not set(train.prompt_id) & set(test.prompt_id)
    assert not set(train.text) & set(test.text)


# -- training ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind,options", [
    ("pars", {"epochs": 25, "max_tokens": 64}),
    ("pointwise", {"epochs": 25, "max_tokens": 64}),
    ("listmle", {"epochs": 25, "max_tokens": 64, "list_size": 8, "batch_size": 64}),
    ("lgbm", {"trees": 60, "min_child_samples": 3, "group_size": 10}),
])
def test_each_predictor_learns_the_task_cues_and_round_trips(kind, options, castillo, cache,
                                                             tmp_path):
    train, test = training_and_test(castillo, "Llama-3.1-8B-Instruct")
    predictor, card = train_predictor(kind, train, cache=cache, **options)
    scores = predictor.score(test.text, test.prompt_tokens)
    result = evaluate_predictor(predictor, test)["all"]
    assert result["kendall_tau"] > 0.4, result  # chance is 0; the cues explain most
    folder = save_predictor(predictor, tmp_path / kind, {**card, "learned_lengths_of": "x"})
    files = sorted(p.name for p in folder.iterdir())
    assert "card.json" in files and not any(f.endswith((".pkl", ".pt", ".bin")) for f in files)
    again = load_predictor(folder, cache)
    np.testing.assert_allclose(again.score(test.text, test.prompt_tokens), scores, rtol=1e-5)
    assert read_card(folder)["kind"] == kind


def test_pars_training_is_deterministic_under_a_seed(castillo, cache):
    train, test = training_and_test(castillo, "Llama-3.1-8B-Instruct")
    runs = [train_predictor("pars", train, cache=cache, epochs=3, max_tokens=64, seed=7)[0]
            .score(test.text, test.prompt_tokens) for _ in range(2)]
    np.testing.assert_array_equal(*runs)


def test_bad_options_and_folders_say_what(castillo, tmp_path):
    train, _ = training_and_test(castillo, "Llama-3.1-8B-Instruct")
    with pytest.raises(ValueError, match="unknown option.*learning_rat"):
        train_predictor("lgbm", train, learning_rat=0.1)
    with pytest.raises(ValueError, match="unknown predictor"):
        train_predictor("gpt", train)
    with pytest.raises(ValueError, match="min_gap"):
        train_predictor("pars", train, min_gap=1.5)
    with pytest.raises(FileNotFoundError):
        load_predictor(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="no card.json"):
        load_predictor(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "card.json").write_text('{"format": "llmsim-predictor/1", "kind": "pickle"}')
    with pytest.raises(ArtifactError, match="unknown predictor kind"):
        load_predictor(bad)
    (bad / "card.json").write_text('{"format": "llmsim-predictor/1", "kind": "pars", '
                                   '"config": {"objective": "pars"}}')
    (bad / "head.safetensors").write_bytes(b"not weights")
    with pytest.raises(ArtifactError, match="weights do not load"):
        load_predictor(bad)


def test_save_refuses_to_overwrite_and_leaves_nothing_half_written(castillo, tmp_path):
    train, _ = training_and_test(castillo, "Llama-3.1-8B-Instruct")
    predictor, card = train_predictor("length", train)
    save_predictor(predictor, tmp_path / "p", card)
    with pytest.raises(FileExistsError):
        save_predictor(predictor, tmp_path / "p", card)

    class Broken:
        kind = "lgbm"
        booster = None  # save_model fails midway

    with pytest.raises(AttributeError):
        save_predictor(Broken(), tmp_path / "q", card)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


# -- embeddings and workload scoring ------------------------------------------------------

class CountingEncoder:
    def __init__(self):
        self.seen = []

    def embed(self, texts, batch_size=64, progress=None):
        self.seen.extend(texts)
        return np.array([[len(t)] * 384 for t in texts], dtype=np.float32)


def test_embeddings_are_computed_once_per_distinct_prompt_and_cached(tmp_path):
    enc, cache = CountingEncoder(), EmbeddingCache(tmp_path, 64)
    first = embed_texts(enc, ["a", "bb", "a", "ccc"], cache)
    assert enc.seen == ["a", "bb", "ccc"] and first.shape == (4, 384)
    again = embed_texts(enc, ["ccc", "a", "dddd"], cache)
    assert enc.seen == ["a", "bb", "ccc", "dddd"]
    np.testing.assert_array_equal(again[:2], first[[3, 0]])
    assert all(p.suffix == ".safetensors" for p in cache.folder.iterdir())


def test_a_million_request_workload_is_scored_once_per_pool_prompt(castillo):
    pool = load_castillo_pool(castillo, model="Llama-3.1-8B-Instruct", split="test")
    w = synthesize(1_000_000, pool, np.zeros(1_000_000), np.random.default_rng(0))
    calls = []

    class Echo:
        kind = "lgbm"

        def score(self, texts, prompt_tokens, progress=None):
            calls.append(len(texts))
            return np.array([float(t.split("case ")[1].rstrip(").")) for t in texts])

    scores = score_workload(Echo(), w)
    assert calls == [len(pool)]
    expected = [float(t.split("case ")[1].rstrip(").")) for t in pool.text[w.prompt_id[:50]]]
    np.testing.assert_array_equal(scores[:50], expected)


def test_rank_data_needs_prompt_texts(castillo, tmp_path):
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "castillo_output_lengths.jsonl").write_bytes(
        (castillo / "castillo_output_lengths.jsonl").read_bytes())
    with pytest.raises(FileNotFoundError, match="prompt texts"):
        rank_data(lone, "Llama-3.1-8B-Instruct", ("test",))


# -- commands -----------------------------------------------------------------------------

def test_train_evaluate_and_compare_from_the_command_line(castillo, tmp_path):
    from typer.testing import CliRunner

    from llmsim.cli import app

    runner = CliRunner(env={"COLUMNS": "200"})

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args])

    lgbm = tmp_path / "lgbm"
    res = invoke("train", "--data", castillo, "--model", "Llama-3.1-8B-Instruct",
                 "--predictor", "lgbm", "--set", "trees=40", "--set", "min_child_samples=3",
                 "--out", lgbm)
    assert res.exit_code == 0, res.output
    card = read_card(lgbm)
    assert card["learned_lengths_of"].endswith("Llama-3.1-8B-Instruct")
    assert card["test"]["all"]["prompts"] == 40 and "kendall_tau" in card["noise_ceiling"]["all"]
    assert card["config"]["trees"] == 40

    res = invoke("evaluate-ranker", lgbm, "length", "--data", castillo, "--model", "qwen2.5-7b-"
                 "instruct-1m", "--by-dataset", "--json", tmp_path / "eval.json")
    assert res.exit_code == 0, res.output
    assert "ceiling" in res.output and "Chat" in res.output  # the per-dataset table
    doc = json.loads((tmp_path / "eval.json").read_text())
    assert [p["predictor"] for p in doc["predictors"]] == [str(lgbm), "length"]
    assert doc["lengths_of"].endswith("Qwen2.5-7B-Instruct-1M")  # cross-model transfer

    out = tmp_path / "cmp"
    res = invoke("compare", "--policies", f"fcfs,sjf,{lgbm},{lgbm}+sp", "--trace", castillo,
                 "--trace-model", "Llama-3.1-8B-Instruct", "--split", "test", "--draw", 400,
                 "--arrival-process", "poisson", "--load", 1.2, "--scoring-delay-ms", 5,
                 "--out", out)
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary) == ["fcfs", "sjf", "lgbm", "lgbm+sp"]
    assert all(s["completed"] == 400 for s in summary.values())
    config = json.loads((out / "config.json").read_text())
    assert config["policies"]["lgbm"]["scoring_delay_s"] == pytest.approx(0.005)
    assert str(lgbm) in config["policies"]["lgbm+sp"]["description"]
    assert "drawn from" in config["workload"]["source"]


def test_command_errors_exit_2_and_write_nothing(castillo, tmp_path):
    from typer.testing import CliRunner

    from llmsim.cli import app

    runner = CliRunner()
    cases = [
        (["train", "--data", castillo, "--model", "gpt-9", "--predictor", "lgbm"], "gpt-9"),
        (["train", "--data", castillo, "--model", "Llama-3.1-8B-Instruct", "--predictor",
          "oracle"], "--predictor must be one of"),
        (["train", "--data", castillo, "--model", "Llama-3.1-8B-Instruct", "--predictor",
          "lgbm", "--partners", "3"], "does not apply"),
        (["train", "--data", castillo, "--model", "Llama-3.1-8B-Instruct", "--set", "lr"],
         "KEY=VALUE"),
        (["evaluate-ranker", tmp_path / "none", "--data", castillo, "--model",
          "Llama-3.1-8B-Instruct"], "no such predictor"),
        (["compare", "--policies", f"fcfs,{tmp_path}/none", "--requests", 50], "not a predictor"),
        (["compare", "--policies", "fcfs", "--split", "test", "--requests", 50], "CASTILLO"),
    ]
    for args, message in cases:
        res = runner.invoke(app, [str(a) for a in args] + ["--out", tmp_path / "o"]
                            if args[0] != "evaluate-ranker" else [str(a) for a in args])
        assert res.exit_code == 2, (args, res.output)
        assert message in " ".join(res.output.split()), (args, res.output)  # unwrapped
    assert not (tmp_path / "o").exists()


def test_finetuning_the_encoder_trains_saves_and_reloads_its_weights(castillo, tmp_path):
    train, test = training_and_test(castillo, "Llama-3.1-8B-Instruct")
    small = train.select(np.arange(24))
    predictor, card = train_predictor("pars", small, epochs=1, max_tokens=16, partners=2,
                                      batch_size=16, finetune=True, folds=1)
    assert card["encoder"]["finetuned"] is True
    before = {k: v.clone() for k, v in
              type(predictor.encoder)(16).model.state_dict().items()}
    after = predictor.encoder.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the encoder moved
    folder = save_predictor(predictor, tmp_path / "ft", card)
    assert (folder / "encoder.safetensors").is_file()
    tokens = test.prompt_tokens[:8]
    np.testing.assert_allclose(load_predictor(folder).score(test.text[:8], tokens),
                               predictor.score(test.text[:8], tokens), rtol=1e-5)
