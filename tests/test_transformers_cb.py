"""The in-process real engine: transformers' continuous batching on CPU, a tiny random
Llama, llmsim's policy ordering its waiting queue."""

from __future__ import annotations

import numpy as np
import pytest

from llmsim.integrations.transformers_cb import (
    EngineSettings,
    random_model,
    run_workload,
    static_ranks,
)
from llmsim.policies import FCFS, SJF, SRPT, get_policy
from llmsim.traces.workload import Workload

transformers = pytest.importorskip("transformers")
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def model():
    config = transformers.LlamaConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512)
    return random_model(config, EngineSettings())


def workload() -> Workload:
    # A blocker holds the single seat (~0.2 s here) while four requests of different
    # lengths queue behind it.
    return Workload(np.array([0.0, 0.05, 0.06, 0.07, 0.08]), np.array([8, 6, 6, 6, 6]),
                    np.array([300, 9, 3, 7, 5]))


@pytest.mark.parametrize("policy,order", [(FCFS, [0, 1, 2, 3, 4]), (SJF, [0, 2, 4, 3, 1])])
def test_the_policy_orders_the_real_engines_waiting_queue(model, policy, order):
    run = run_workload(model, workload(), policy,
                       EngineSettings(num_blocks=64, max_batch_tokens=64,
                                      max_requests_per_batch=1))
    assert list(run.tokens) == [300, 9, 3, 7, 5]  # output lengths forced
    assert list(np.argsort(run.first_token)) == order
    cols = run.columns()
    assert np.all(cols["ttft"] > 0) and np.all(cols["ttft"] <= cols["e2e"])
    assert all(len(t) == k for t, k in zip(run.token_times, run.tokens, strict=True))


def test_ranks_are_static_and_dynamic_policies_are_refused():
    ranks = static_ranks(workload(), SJF)
    assert list(ranks) == [300, 9, 3, 7, 5]
    for policy in (SRPT, get_policy("sjf+sp")):
        with pytest.raises(ValueError, match="ranks once"):
            static_ranks(workload(), policy)


def test_the_scheduler_table_is_left_as_it_was(model):
    from transformers.generation.continuous_batching import scheduler

    before = dict(scheduler.SCHEDULER_MAPPING)
    run_workload(model, workload().head(2), FCFS, EngineSettings(num_blocks=32))
    assert scheduler.SCHEDULER_MAPPING == before


def test_run_transformers_writes_a_run_that_validate_reads(tmp_path):
    import json

    from typer.testing import CliRunner

    from llmsim.cli import app
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,5,4\n0.02,7,2\n0.04,3,6\n")
    runner = CliRunner()
    res = runner.invoke(app, ["run-transformers", "--trace", str(trace), "--policy", "sjf",
                              "--num-blocks", "16", "--max-batch-tokens", "32",
                              "--sim-model", "tiny", "--out", str(tmp_path / "run.json")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["completed"] == 3 and doc["output_lens"] == [4, 2, 6]
    assert doc["llmsim"]["engine"]["num_gpu_blocks"] == 16
    res = runner.invoke(app, ["validate", str(tmp_path / "run.json"), "--out",
                              str(tmp_path / "val")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "val" / "validation.json").is_file()
    res = runner.invoke(app, ["run-transformers", "--trace", str(trace), "--policy", "srpt",
                              "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "ranks once" in " ".join(res.output.split())
    assert not (tmp_path / "x.json").exists()
