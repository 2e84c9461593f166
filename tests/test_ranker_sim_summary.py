"""benchmarks/ranker_sim.py's summary: pooled gap closed with intervals over replicates,
where some replicates never queue (FCFS = SJF: no gap to close)."""

from __future__ import annotations

import math

import pytest

from .benchmark_script import load_benchmark


@pytest.fixture(scope="module")
def ranker_sim():
    return load_benchmark("ranker_sim")


def run(fcfs: float, sjf: float, length: float, lgbm: float) -> dict:
    return {name: {"e2e_mean": v, "e2e_p99": 2 * v}
            for name, v in (("fcfs", fcfs), ("sjf", sjf), ("length", length), ("lgbm", lgbm))}


def test_replicates_that_never_queue_add_nothing_and_leave_the_interval_defined(ranker_sim):
    runs = [run(10, 10, 10, 10)] * 6 + [run(30, 10, 20, 25), run(50, 20, 30, 44)]
    s = ranker_sim.summarise(runs, ["fcfs", "sjf", "length", "lgbm"], resamples=2000)
    assert s["queued"] == 2
    # pooled over the replicates that queue: (10 + 20) / (20 + 30)
    assert s["gap"]["length"]["closed"] == pytest.approx(30 / 50)
    assert s["gap"]["lgbm"]["closed"] == pytest.approx(11 / 50)
    for name in ("length", "lgbm"):
        low, high = s["gap"][name]["ci"]
        assert not math.isnan(low) and low <= s["gap"][name]["closed"] <= high
    low, high = s["vs"]["length"]["lgbm"]["ci"]
    assert high < 0 and s["vs"]["length"]["lgbm"]["share_above"] == 0


def test_no_replicate_queued_means_no_gap_at_all(ranker_sim):
    s = ranker_sim.summarise([run(10, 10, 10, 10)] * 3, ["fcfs", "sjf", "length", "lgbm"])
    assert s["queued"] == 0 and math.isnan(s["gap"]["length"]["closed"])


def test_variants_of_pars_are_paired_against_pars(ranker_sim):
    def with_pars(fcfs, sjf, pars, variant):
        r = run(fcfs, sjf, fcfs, fcfs)
        r["pars"], r["pars-ft"] = ({"e2e_mean": v, "e2e_p99": 2 * v} for v in (pars, variant))
        return r

    runs = [with_pars(30, 10, 20, 15), with_pars(50, 20, 35, 35)]
    s = ranker_sim.summarise(runs, ["fcfs", "sjf", "length", "lgbm", "pars", "pars-ft"],
                             resamples=500)
    # pars closes (10 + 15) / 50, pars-ft (15 + 15) / 50: 10 points more, in both replicates
    assert s["vs"]["pars"]["pars-ft"]["difference"] == pytest.approx(0.1)
    assert "pars" not in s["vs"]["pars"] and s["vs"]["length"]["pars-ft"]["difference"] > 0


def test_starvation_prevention_suffixes(ranker_sim):
    assert ranker_sim._split_sp("pars") == ("pars", None)
    assert ranker_sim._split_sp("pars+sp") == ("pars", {})
    assert ranker_sim._split_sp("pars-ft+sp2000") == ("pars-ft", {"threshold": 2000})
    with pytest.raises(SystemExit):
        ranker_sim._split_sp("pars+spx")
