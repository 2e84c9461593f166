"""benchmarks/validate_vllm_cpu_prefix_report.py: vLLM's hit rate read from its /metrics
counters, and the cache's gain and verdicts, on made-up runs whose answers are known."""

from __future__ import annotations

import json
import sys

from .benchmark_script import load_benchmark


def validation(out, run, ttft, e2e, req_s=(10.0, 10.0), sim_hits=None):
    """(real, sim) pairs per figure, as `llmsim validate` writes them."""
    folder = out / f"validate-{run}"
    folder.mkdir()
    metrics = {"ttft": {s: {"mean": v} for s, v in zip(("real", "sim"), ttft, strict=True)},
               "e2e": {s: {"mean": v} for s, v in zip(("real", "sim"), e2e, strict=True)},
               "throughput": {s: {"requests_per_s": v}
                              for s, v in zip(("real", "sim"), req_s, strict=True)}}
    (folder / "validation.json").write_text(json.dumps(
        {"metrics": metrics, "config": {"sim_prefix_hit_rate": sim_hits}}))


def scrape(hits, queries):
    return ("# HELP vllm:prefix_cache_hits Prefix cache hits, in tokens\n"
            f'vllm:prefix_cache_hits_total{{engine="0",model_name="m"}} {hits}\n'
            f'vllm:prefix_cache_queries_total{{engine="0",model_name="m"}} {queries}\n'
            'vllm:prefix_cache_queries_created{engine="0",model_name="m"} 1.7e9\n')


def test_hit_rates_gains_and_verdicts(tmp_path, monkeypatch, capsys):
    report = load_benchmark("validate_vllm_cpu_prefix_report")
    validation(tmp_path, "off-saturated", (1.0, 1.0), (2.0, 2.0), (10.0, 9.0))
    validation(tmp_path, "on-saturated", (0.5, 0.5), (1.5, 1.5), (12.0, 11.7), 0.6)
    for rep, (off, on) in enumerate(((1.0, 0.5), (1.2, 0.7)), start=1):
        validation(tmp_path, f"off-{rep}", (off, 1.1), (3.0, 3.0))
        validation(tmp_path, f"on-{rep}", (on, 0.65), (2.0, 2.9), sim_hits=0.62)
    # vLLM's counters grow by 600 hits of 1,000 queried tokens in run on-1
    for run, (before, after) in {"on-saturated": ((0, 0), (300, 500)),
                                 "on-1": ((300, 500), (900, 1500)),
                                 "on-2": ((900, 1500), (1500, 2500))}.items():
        (tmp_path / f"metrics-{run}-before.txt").write_text(scrape(*before))
        (tmp_path / f"metrics-{run}-after.txt").write_text(scrape(*after))
    monkeypatch.setattr(sys, "argv", ["report", str(tmp_path), "--repeats", "2"])
    report.main()
    out = capsys.readouterr().out
    assert "| on-1 | 60.0% | 62.0% |" in out and "| off-1 | 0.0% | 0.0% |" in out
    # TTFT: real 1.1 -> 0.6 (+45.5%), llmsim 1.1 -> 0.65 (+40.9%): within 25% of it
    assert "cache off -> on, mean TTFT: real +45.5%, llmsim +40.9% (improvement" in out
    # E2E: real 3.0 -> 2.0 (+33.3%), llmsim 3.0 -> 2.9 (+3.3%): not
    assert "cache off -> on, mean E2E: real +33.3%, llmsim +3.3% (improvement" in out
    assert "all at once, req/s, real: +20.0%" in out and "sim: +30.0%" in out
    assert "cache off -> on, TTFT mean gain: met" in out
    assert "cache off -> on, E2E mean gain: NOT met" in out
    assert "cache on: E2E mean: NOT met" in out  # 2.9 against 2.0 (both runs)
    assert "cache off: TTFT mean: met" in out  # 1.1 inside 1.0-1.2
