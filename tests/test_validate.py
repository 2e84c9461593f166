"""`llmsim validate` on "real" runs made from the simulator itself with a known distortion:
the relative errors must be exactly what the distortion implies; bad files are clear errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from llmsim.cli import app as cli  # the commands as users run them
from llmsim.engine.config import EngineConfig
from llmsim.integrations.replay import (
    ReplayRun,
    ReplaySettings,
    RequestResult,
    bench_json,
    client_priorities,
    write_bench_json,
)
from llmsim.integrations.validate import (
    ResultsFileError,
    load_measured_run,
    plot_cdfs,
    validate,
)
from llmsim.policies import FCFS, SJF
from llmsim.simulate import Deployment, simulate
from llmsim.traces.workload import Workload

runner = CliRunner(env={"COLUMNS": "160"})

ENGINE = EngineConfig(max_num_seqs=4, num_gpu_blocks=2000)  # small: requests queue
DEPLOYMENT = Deployment("llama-3-8b", "h100", engine=ENGINE)
RECORDED = {"model": "llama-3-8b", "gpu": "h100", "tp": 1, "profile": None}


def workload(n=40, seed=0) -> Workload:
    rng = np.random.default_rng(seed)
    return Workload(np.sort(rng.uniform(0, 0.5, n)), rng.integers(50, 800, n),
                    rng.integers(2, 200, n), source="synthetic")


def fake_real_run(path, w, policy=FCFS, ttft_scale=1.0, e2e_scale=1.0, fail=(),
                  priorities=None, meta=None, deployment=DEPLOYMENT):
    """A replay result whose every request took the simulated time, scaled."""
    cols = simulate(w, policy, deployment).records.columns()
    arrival = w.arrival - w.arrival[0]
    results = []
    for i in range(len(w)):
        ttft, e2e, n = cols["ttft"][i] * ttft_scale, cols["e2e"][i] * e2e_scale, \
            int(w.output_tokens[i])
        itl = [(e2e - ttft) / (n - 1)] * (n - 1)
        failed = i in fail
        results.append(RequestResult(not failed, "HTTP 500: boom" if failed else "",
                                     arrival[i], arrival[i], 0.0, ttft, itl, e2e, n,
                                     int(w.prompt_tokens[i]), ""))
    run = ReplayRun(w, ReplaySettings("http://x/v1/completions", "m"), results,
                    float(np.nanmax(cols["finish"]) - w.arrival[0]), "20250101-000000",
                    "synthetic", priorities)
    doc = bench_json(run, {"engine": deployment.engine.to_dict(), "policy": policy.name,
                           "deployment": RECORDED, **(meta or {})})
    write_bench_json(path, doc)
    return path, cols


def test_identical_run_has_zero_error(tmp_path):
    path, _ = fake_real_run(tmp_path / "r.json", workload())
    v = validate(load_measured_run(path), DEPLOYMENT)
    for name in ("ttft", "tpot", "e2e", "throughput"):
        for err in v.table[name]["rel_error"].values():
            assert err == pytest.approx(0, abs=1e-9), (name, v.table[name])


def test_relative_errors_are_those_of_the_distortion(tmp_path):
    w = workload()
    path, cols = fake_real_run(tmp_path / "r.json", w, ttft_scale=1.1, e2e_scale=1.25)
    v = validate(load_measured_run(path), DEPLOYMENT)
    for stat in ("mean", "p50", "p90", "p99"):  # quantiles scale with the values
        assert v.table["ttft"]["rel_error"][stat] == pytest.approx(1 / 1.1 - 1)
        assert v.table["e2e"]["rel_error"][stat] == pytest.approx(1 / 1.25 - 1)
    real_tpot = (1.25 * cols["e2e"] - 1.1 * cols["ttft"]) / (w.output_tokens - 1)
    assert v.table["tpot"]["real"]["mean"] == pytest.approx(real_tpot.mean())
    assert v.table["tpot"]["sim"]["mean"] == pytest.approx(np.nanmean(cols["tpot"]))
    assert v.table["tpot"]["rel_error"]["mean"] == pytest.approx(
        np.nanmean(cols["tpot"]) / real_tpot.mean() - 1)
    start = w.arrival - w.arrival[0]
    real_span = np.max(start + 1.25 * cols["e2e"])
    sim_span = np.max(cols["finish"]) - w.arrival[0]
    assert v.table["throughput"]["real"]["requests_per_s"] == pytest.approx(len(w) / real_span)
    assert v.table["throughput"]["rel_error"]["requests_per_s"] == pytest.approx(
        real_span / sim_span - 1)
    png = plot_cdfs(v, tmp_path / "cdf.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sent_priorities_are_what_the_simulator_runs(tmp_path):
    w = workload(60, seed=1)
    path, _ = fake_real_run(tmp_path / "r.json", w, policy=SJF,
                            priorities=client_priorities(w, SJF))
    v = validate(load_measured_run(path), DEPLOYMENT)
    assert v.config["policy"]["name"] == "priorities"
    assert v.table["e2e"]["rel_error"]["mean"] == pytest.approx(0, abs=1e-9)
    fcfs = validate(load_measured_run(path), DEPLOYMENT, policy="fcfs")  # the wrong policy
    assert abs(fcfs.table["e2e"]["rel_error"]["p99"]) > 0.01


def test_failed_requests_are_left_out_on_both_sides(tmp_path):
    path, _ = fake_real_run(tmp_path / "r.json", workload(), fail=(3, 7))
    v = validate(load_measured_run(path), DEPLOYMENT)
    assert v.config["compared"] == 38 and v.config["failed_in_real_run"] == 2
    assert len(v.real["ttft"]) == len(v.sim["ttft"]) == 38


def test_cli_prints_the_table_and_writes_json_and_png(tmp_path):
    path, _ = fake_real_run(tmp_path / "r.json", workload(), ttft_scale=1.1, e2e_scale=1.25)
    out = tmp_path / "v"
    res = runner.invoke(cli, ["validate", str(path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "TTFT" in res.output and "-9.1%" in res.output and "-20.0%" in res.output
    doc = json.loads((out / "validation.json").read_text())
    assert doc["metrics"]["ttft"]["rel_error"]["mean"] == pytest.approx(1 / 1.1 - 1)
    assert doc["config"]["deployment"]["engine"]["max_num_seqs"] == 4
    assert (out / "cdf.png").stat().st_size > 1000


def test_a_run_recorded_before_prefix_caching_was_modelled_is_simulated_without_it(tmp_path):
    path, _ = fake_real_run(tmp_path / "r.json", workload(8))
    assert load_measured_run(path).engine.enable_prefix_caching  # recorded: vLLM's default
    old = _edit(path, lambda d: d["llmsim"]["engine"].pop("enable_prefix_caching"))
    assert not load_measured_run(old).engine.enable_prefix_caching
    assert load_measured_run(old).engine.max_num_seqs == ENGINE.max_num_seqs
    for bad in ("fast", [1, 2]):
        _edit(path, lambda d, bad=bad: d["llmsim"].__setitem__("engine", bad))
        with pytest.raises(ResultsFileError, match="llmsim.engine is not an object"):
            load_measured_run(path)


def test_a_run_with_block_ids_and_caching_is_simulated_with_the_prefix_cache(tmp_path):
    from dataclasses import replace

    from llmsim.traces.sessions import SessionSpec, synthesize_sessions

    spec = SessionSpec(sessions=12, session_rate=4.0, mean_turns=3, system_prompts=2,
                       system_tokens=256, user_tokens=40, output_tokens=20, think_s=0.5)
    w = synthesize_sessions(spec, np.random.default_rng(0))
    cached = replace(DEPLOYMENT, engine=replace(ENGINE, enable_prefix_caching=True))
    path, _ = fake_real_run(tmp_path / "r.json", w, deployment=cached)
    real = load_measured_run(path)
    assert real.engine.enable_prefix_caching and len(real.hash_ids) == len(w)
    v = validate(real, DEPLOYMENT)  # the run's engine settings, caching on, replace these
    assert v.table["ttft"]["rel_error"]["mean"] == pytest.approx(0, abs=1e-9)
    # without the ids the simulator caches nothing and prefills every prompt whole
    blind = validate(load_measured_run(_edit(path, lambda d: d["llmsim"]["workload"].pop(
        "hash_ids"))), DEPLOYMENT)
    assert blind.table["ttft"]["sim"]["mean"] > 1.05 * v.table["ttft"]["sim"]["mean"]
    _edit(path, lambda d: d["llmsim"]["workload"].__setitem__("hash_ids", {
        "block_tokens": 16, "covers_output": True, "offsets": [0, 1], "ids": [3]}))
    with pytest.raises(ResultsFileError, match="hash_ids does not hold"):
        load_measured_run(path)


def _edit(path, change):
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("ttfts"), "no per-request list 'ttfts'"),
    (lambda d: d.pop("llmsim"), "no 'llmsim' section"),
    (lambda d: d["latencies"].pop(), "latencies has 39 entries, errors has 40"),
    (lambda d: d["llmsim"]["workload"].pop("output_tokens"), "llmsim.workload.output_tokens"),
    (lambda d: d["ttfts"].__setitem__(5, 1e9), "request 5 has a TTFT longer"),
    (lambda d: d["ttfts"].__setitem__(2, "soon"), "ttfts holds something"),
    (lambda d: d["ttfts"].__setitem__(2, None), "ttfts[2] is not a number"),
    (lambda d: d.__setitem__("errors", ["x"] * 40), "no request completed"),
    (lambda d: d["llmsim"]["engine"].__setitem__("max_num_seqs", 0), "max_num_seqs must be"),
    (lambda d: d["llmsim"].__setitem__("priorities", [1, 2]), "priorities has 2 entries"),
])
def test_malformed_results_are_clear_errors(tmp_path, change, message):
    path, _ = fake_real_run(tmp_path / "r.json", workload())
    _edit(path, change)
    with pytest.raises(ResultsFileError, match=re.escape(message)):
        validate(load_measured_run(path), DEPLOYMENT)


def test_not_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ResultsFileError, match="not a JSON file"):
        load_measured_run(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ResultsFileError, match="expected a JSON object"):
        load_measured_run(bad)
    with pytest.raises(FileNotFoundError, match="no such results file"):
        load_measured_run(tmp_path / "absent.json")


@pytest.mark.parametrize("args, message", [
    (["--model", "gpt-5"], "gpt-5"),
    (["--gpu", "tpu-v9"], "tpu-v9"),
    (["--policy", "lottery"], "unknown policy 'lottery'"),
])
def test_cli_user_errors_exit_2_and_write_nothing(tmp_path, args, message):
    path, _ = fake_real_run(tmp_path / "r.json", workload())
    out = tmp_path / "v"
    res = runner.invoke(cli, ["validate", str(path), "--out", str(out), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and len(res.output.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_needs_a_model_when_the_run_names_none(tmp_path):
    path, _ = fake_real_run(tmp_path / "r.json", workload(),
                            meta={"deployment": {"model": None}})
    res = runner.invoke(cli, ["validate", str(path), "--out", str(tmp_path / "v")])
    assert res.exit_code == 2 and "give --model" in res.output
    res = runner.invoke(cli, ["validate", str(tmp_path / "nope.json"),
                              "--out", str(tmp_path / "v")])
    assert res.exit_code == 2 and "no such results file" in res.output
    assert not (tmp_path / "v").exists()
