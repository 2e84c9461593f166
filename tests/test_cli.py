"""The command line, through typer's runner: outputs written whole, errors that say what."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from llmsim.cli import app

runner = CliRunner(env={"COLUMNS": "160"})


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_run_writes_config_summary_and_records(tmp_path):
    out = tmp_path / "run"
    res = invoke("run", "--policy", "sjf", "--requests", 150, "--out", out,
                 "--slo-ttft-ms", 500, "--slo-tpot-ms", 100)
    assert res.exit_code == 0, res.output
    assert "sjf" in res.output and "goodput" in res.output
    config = json.loads((out / "config.json").read_text())
    assert config["deployment"]["model"] == "llama-3-8b"
    assert config["workload"]["load"] == 0.9 and config["workload"]["capacity_rps"] > 0
    assert config["cost_model"].startswith("fitted profile (h100")
    summary = json.loads((out / "summary.json").read_text())["sjf"]
    assert summary["completed"] == 150
    assert summary["slo"] == {"ttft": 0.5, "tpot": 0.1, "e2e": None}
    table = pq.read_table(out / "sjf" / "requests.parquet")
    assert table.num_rows == 150
    assert {"ttft", "tpot", "e2e", "queueing_delay", "preemptions"} <= set(table.column_names)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary leftovers


def test_compare_prints_both_policies(tmp_path):
    res = invoke("compare", "--requests", 100, "--out", tmp_path / "c")
    assert res.exit_code == 0, res.output
    assert "fcfs" in res.output and "sjf" in res.output
    assert set(json.loads((tmp_path / "c" / "summary.json").read_text())) == {"fcfs", "sjf"}


@pytest.mark.parametrize("args, message", [
    (["--policy", "lottery"], "unknown policy 'lottery'"),
    (["--model", "gpt-5"], "gpt-5"),
    (["--gpu", "tpu-v9"], "tpu-v9"),
    (["--load", "0.5", "--rate", "3"], "not both"),
    (["--load", "-1"], "--load must be a finite number > 0"),
    (["--arrival-process", "poisson"], "needs --rate or --load"),
    (["--router", "random"], "unknown router 'random'"),
    (["--simulator", "turbo"], "--simulator must be one of fast, reference"),
    (["--gpu-memory-utilization", "1.5"], "gpu_memory_utilization"),
    (["--model", "llama-3-70b"], "70b"),  # does not fit one 80 GB GPU
])
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, args, message):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,10,5\n")
    res = invoke("run", "--trace", trace, "--out", tmp_path / "out", *args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not (tmp_path / "out").exists()


def test_bad_trace_row_names_the_row(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,-3,5\n")
    res = invoke("run", "--trace", trace, "--out", tmp_path / "out")
    assert res.exit_code == 2
    assert "prompt_tokens" in res.output and "t.csv" in res.output
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "out"
    res = invoke("run", "--requests", 20, "--out", out)
    assert res.exit_code == 0, res.output
    (out / "old").write_text("x")
    res = invoke("run", "--requests", 20, "--out", out)
    assert res.exit_code == 2 and "--force" in res.output
    assert (out / "old").exists()
    res = invoke("run", "--requests", 20, "--out", out, "--force")
    assert res.exit_code == 0, res.output
    assert not (out / "old").exists() and (out / "summary.json").exists()


@pytest.mark.parametrize("make", ["file", "folder"])
def test_force_never_replaces_what_llmsim_did_not_write(tmp_path, make):
    out = tmp_path / "mine"
    if make == "file":
        out.write_text("precious")
    else:
        out.mkdir()
        (out / "notes.txt").write_text("precious")
    res = invoke("run", "--requests", 20, "--out", out, "--force")
    assert res.exit_code == 2, res.output
    assert "not a folder" in res.output or "not written by llmsim" in res.output
    kept = out if make == "file" else out / "notes.txt"
    assert kept.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_unwritable_output_fails_before_simulating(tmp_path):
    (tmp_path / "file").write_text("x")
    res = invoke("run", "--requests", 20, "--out", tmp_path / "file" / "out")
    assert res.exit_code == 2, res.output
    assert "is a file, not a folder" in res.output
    assert (tmp_path / "file").read_text() == "x"


def test_requests_that_never_fit_are_rejected_and_reported(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,5000,5\n2,10,5\n")
    res = invoke("run", "--trace", trace, "--num-gpu-blocks", 100, "--out", tmp_path / "o")
    assert res.exit_code == 0, res.output
    assert "1 requests could never fit" in res.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["fcfs"]
    assert summary["rejected"] == 1 and summary["completed"] == 2


def test_poisson_arrivals_are_seeded(tmp_path):
    def mean_e2e(seed, name):
        res = invoke("run", "--requests", 80, "--arrival-process", "poisson", "--rate", 20,
                     "--seed", seed, "--out", tmp_path / name)
        assert res.exit_code == 0, res.output
        return json.loads((tmp_path / name / "summary.json").read_text())["fcfs"]["e2e"]["mean"]

    assert mean_e2e(1, "a") == mean_e2e(1, "b") != mean_e2e(2, "c")


def test_oracle_sjf_beats_fcfs_on_the_bundled_workload_at_high_load(tmp_path):
    res = invoke("compare", "--load", 1.0, "--out", tmp_path / "c")
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert s["sjf"]["completed"] == s["fcfs"]["completed"] == 3000
    assert s["sjf"]["e2e"]["mean"] < s["fcfs"]["e2e"]["mean"]
    assert s["sjf"]["ttft"]["mean"] < s["fcfs"]["ttft"]["mean"]


def test_reference_simulator_from_the_command_line_gives_the_same_summary(tmp_path):
    summaries = []
    for simulator in ("fast", "reference"):
        res = invoke("run", "--requests", 120, "--simulator", simulator, "--out",
                     tmp_path / simulator)
        assert res.exit_code == 0, res.output
        summaries.append(json.loads((tmp_path / simulator / "summary.json").read_text())["fcfs"])
    fast, ref = summaries
    assert fast["e2e"] == pytest.approx(ref["e2e"], rel=1e-9)
    assert fast["iterations"] == ref["iterations"]


def test_trace_without_arrival_times_needs_an_arrival_process(tmp_path):
    trace = tmp_path / "p.jsonl"
    trace.write_text('{"prompt": "hello there", "output_len": 5}\n'
                     '{"prompt": "write a poem", "output_len": 40}\n')
    res = invoke("run", "--trace", trace, "--load", 0.5, "--out", tmp_path / "a")
    assert res.exit_code == 2 and "no arrival times" in res.output
    res = invoke("run", "--trace", trace, "--arrival-process", "poisson", "--rate", 2,
                 "--out", tmp_path / "b")
    assert res.exit_code == 0, res.output


def test_trace_subcommands_are_mounted(tmp_path):
    res = invoke("trace", "info", tmp_path / "missing.csv")
    assert res.exit_code == 2
