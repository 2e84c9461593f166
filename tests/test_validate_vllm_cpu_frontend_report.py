"""benchmarks/validate_vllm_cpu_frontend_report.py: the many-seat study's tables and issue
21's verdicts, on validations made up so that each verdict is known."""

from __future__ import annotations

import json
import sys

from .benchmark_script import load_benchmark


def validation(folder, req_s, e2e, ttft=1.0, tpot=0.01):
    """`llmsim validate`'s metrics: (real, sim) pairs per figure."""
    folder.mkdir(parents=True)
    metrics = {"throughput": {side: {"requests_per_s": v} for side, v in zip(
                   ("real", "sim"), req_s, strict=True)},
               "e2e": {side: {"mean": v} for side, v in zip(("real", "sim"), e2e, strict=True)},
               "ttft": {side: {"mean": ttft} for side in ("real", "sim")},
               "tpot": {side: {"mean": tpot} for side in ("real", "sim")}}
    (folder / "validation.json").write_text(json.dumps({"metrics": metrics}))


def test_verdicts_follow_the_tolerances(tmp_path, monkeypatch, capsys):
    report = load_benchmark("validate_vllm_cpu_frontend_report")
    for seats in (2, 32):
        (tmp_path / f"run-saturated-{seats}.json").write_text("{}")
    (tmp_path / "run-saturated-2.cpu.json").write_text(json.dumps({
        "wall_s": 10.0, "client_cpu_s": 1.0, "threads": [
            {"process": "python -m vllm.entrypoints.openai.api_server", "thread": "python",
             "cpu_s": 2.5},
            {"process": "VLLM::Worker", "thread": "VLLM::Worker", "cpu_s": 9.0}]}))
    # fit `good`: ceiling +10%; FCFS -> SJF real 1 - 6/8 = 25%, sim 1 - 6.2/8 = 22.5%
    # fit `bad`: ceiling +20%; sim gain 1 - 7.9/8 (sign right, far too small)
    for fit, ceiling, sjf_sim in (("good", 11.0, 6.2), ("bad", 12.0, 7.9)):
        validation(tmp_path / f"validate-{fit}-saturated-2", (5.0, 4.0), (9.0, 9.0))
        validation(tmp_path / f"validate-{fit}-saturated-32", (10.0, ceiling), (4.0, 4.0))
        for rep, (real_fcfs, real_sjf) in enumerate(((7.0, 5.0), (9.0, 7.0)), start=1):
            validation(tmp_path / f"validate-{fit}-fcfs-{rep}", (8.0, 8.0), (real_fcfs, 8.0))
            validation(tmp_path / f"validate-{fit}-sjf-{rep}", (8.0, 8.0), (real_sjf, sjf_sim))
    monkeypatch.setattr(sys, "argv", ["report", str(tmp_path), "--fits", "good=2 bad=2,32",
                                      "--seqs", "32", "--repeats", "2"])
    report.main()
    out = capsys.readouterr().out
    assert "| 2 | good, bad | 5.00 |" in out and "| 32 | bad | 10.00 |" in out
    assert "| 2 | 90% | 0% | 25% | 10% | 1.25 |" in out  # CPU shares of the wall
    good = next(line for line in out.splitlines() if line.startswith("  fit good"))
    bad = next(line for line in out.splitlines() if line.startswith("  fit bad"))
    assert "ceiling at 32 seats met" in good and "fcfs->sjf gain met" in good
    assert "ceiling at 32 seats NOT met" in bad and "fcfs->sjf gain NOT met" in bad
    assert "fcfs E2E mean met" in good  # 8.0 against real 7.0-9.0, mean 8.0
    assert "sjf E2E mean NOT met" in bad  # 7.9 against 5.0-7.0, mean 6.0: +32%
    assert ("real +25.0% (95% CI over run pairs +22% to +29%; run pairs +29%, +22%), "
            "llmsim +22.5% (inside the interval)") in out


def test_gain_at_equal_throughput_takes_out_the_servers_speed():
    report = load_benchmark("validate_vllm_cpu_frontend_report")
    # E2E = 10 - 0.5 x req/s, SJF 1 s better at any throughput; the runs' speeds differ
    # so much that the raw means say SJF is worse
    req_s = {"fcfs": [8.0, 12.0, 10.0], "sjf": [4.0, 6.0, 5.0]}
    e2e = {p: [10 - 0.5 * r - (p == "sjf") for r in req_s[p]] for p in req_s}
    assert sum(e2e["sjf"]) > sum(e2e["fcfs"])
    gain, lo, hi = report.adjusted_gain(e2e, req_s, resamples=200)
    assert abs(gain - 1 / 5.0) < 1e-9  # 1 s of FCFS's mean 5 s
    # every resample fits the 1 s exactly; only its FCFS mean (4 to 6 s) differs
    assert 1 / 6 - 1e-9 <= lo <= gain <= hi <= 1 / 4 + 1e-9


def test_gain_interval_resamples_run_pairs():
    report = load_benchmark("validate_vllm_cpu_frontend_report")
    lo, hi = report.gain_interval([10.0, 10.0, 10.0], [8.0, 8.0, 8.0])
    assert abs(lo - 0.2) < 1e-12 and abs(hi - 0.2) < 1e-12
    lo, hi = report.gain_interval([10.0, 10.0], [5.0, 10.0], resamples=2000)
    assert abs(lo - 0.0) < 1e-12 and abs(hi - 0.5) < 1e-12  # both pairs drawn twice
