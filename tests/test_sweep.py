"""Sweeps: the grid and its TOML form, backends that agree to the last bit, resuming after an
interruption or a kill, the report, and the capacity bisection."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from llmsim.engine.config import EngineConfig
from llmsim.engine.summary import Slo
from llmsim.simulate import Deployment
from llmsim.sweep import EngineVariant, Grid, load_grid, run_sweep
from llmsim.sweep import cli as sweep_cli
from llmsim.sweep.capacity import SearchSetup, SloTarget, capacity_search, check_rate
from llmsim.sweep.grid import (
    capacity_settings_from_toml,
    grid_from_toml,
    parse_list,
    read_toml,
)
from llmsim.sweep.intervals import t_interval
from llmsim.sweep.point import QUANTILE_LEVELS
from llmsim.sweep.report import report
from llmsim.sweep.store import SweepMismatchError
from llmsim.traces import default_workload

REPO = Path(__file__).resolve().parent.parent
SMALL = Grid(policies=("fcfs", "sjf"), loads=(0.6, 1.1), seeds=(0, 1), requests=300,
             slo=Slo(ttft=0.5, tpot=0.1))


def rows_json(table) -> str:
    """A table's rows as text: equal text, equal numbers (NaN included)."""
    return json.dumps(table.to_pylist(), sort_keys=True)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(textwrap.dedent(text))
    return path


# --- the grid -------------------------------------------------------------------------------

def test_toml_grid_reads_every_section(tmp_path):
    (tmp_path / "t.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,20,3\n")
    g = load_grid(write_toml(tmp_path, """
        [workload]
        trace = "t.csv"
        requests = 2
        burstiness = 0.5
        [deployment]
        model = "qwen2.5-7b"
        gpu = "a100"
        replicas = 2
        [slo]
        ttft_ms = 500
        tpot_ms = 50
        [grid]
        policies = ["fcfs", "sjf+sp"]
        rates = [1, 2.5]
        seeds = [3]
        [[engines]]
        name = "big"
        max_num_seqs = 512
        [[engines]]
        name = "small"
        max_num_seqs = 32
        num_gpu_blocks = 4000
    """))
    assert g.trace == str(tmp_path / "t.csv") and g.requests == 2 and g.burstiness == 0.5
    assert g.deployment == Deployment(model="qwen2.5-7b", gpu="a100", num_replicas=2)
    assert g.slo == Slo(ttft=0.5, tpot=0.05)
    assert g.axis == "rate" and g.loads is None and g.rates == (1.0, 2.5)
    assert g.engines == (EngineVariant("big", EngineConfig(max_num_seqs=512)),
                         EngineVariant("small", EngineConfig(max_num_seqs=32,
                                                             num_gpu_blocks=4000)))
    points = g.points()
    assert len(points) == 2 * 2 * 2 * 1
    assert points[0].id == "fcfs_big_rate1_seed3" and points[-1].id == "sjf+sp_small_rate2.5_seed3"
    assert len({p.id for p in points}) == len(points)


def test_example_config_is_the_issues_sweep():
    g = load_grid(REPO / "examples" / "sweep.toml")
    assert g.policies == ("fcfs", "sjf", "srpt", "mlfq") and len(g.loads) == 8
    assert len(g.points()) == 4 * 8 * 3


def test_defaults_and_command_line_lists():
    assert len(Grid().points()) == 96 and Grid().engines == (EngineVariant(),)
    assert parse_list("0.5:1.2:0.1", float, "loads") == (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2)
    assert parse_list("fcfs, sjf", str, "policies") == ("fcfs", "sjf")
    with pytest.raises(ValueError, match="--seeds: cannot read"):
        parse_list("1,x", int, "seeds")


@pytest.mark.parametrize("text, message", [
    ("[grid\npolicies = 1", "not valid TOML"),
    ("[grdi]\npolicies = ['fcfs']", r"unknown section \[grdi\]"),
    ("[grid]\npolicy = ['fcfs']", "unknown key 'policy' in \\[grid\\]"),
    ("[grid]\npolicies = ['fifo']", "unknown policy 'fifo'"),
    ("[grid]\nloads = [0.5]\nrates = [3.0]", "loads or rates, not both"),
    ("[grid]\nloads = [0.5, -1]", "must be finite and > 0"),
    ("[grid]\nseeds = [1, 1]", "seeds repeat a value"),
    ("[grid]\nseeds = ['a']", "grid.seeds must be a int"),
    ("[grid]\nloads = 0.5", "grid.loads must be a list"),
    ("[grid]\nsimulator = 'slow'", "simulator must be one of"),
    ("[[engines]]\nmax_num_seqs = 0", "max_num_seqs must be >= 1"),
    ("[[engines]]\nname = 'a b'", "engine name 'a b'"),
    ("[engines]\nname = 'x'", r"\[engines\] must be a table array"),
    ("[workload]\nrequests = 0", "requests must be >= 1"),
    ("[capacity]\nttft = 1", "unknown key 'ttft' in \\[capacity\\]"),
])
def test_config_errors_name_the_problem(tmp_path, text, message):
    path = write_toml(tmp_path, text)
    with pytest.raises(ValueError, match=message):
        load_grid(path)
        capacity_settings_from_toml(read_toml(path))  # the [capacity] section is read apart


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_grid(tmp_path / "nope.toml")
    with pytest.raises(FileNotFoundError, match="trace"):
        grid_from_toml({"workload": {"trace": "missing.csv"}}, base=tmp_path)


# --- running, backends, resuming ------------------------------------------------------------

@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """SMALL swept in this process: the numbers every other backend must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "sweep"
    return run_sweep(SMALL, out, jobs=1, progress=False)


def test_sweep_writes_one_row_per_point(reference):
    table = reference.table
    assert reference.computed == 8 and reference.skipped == 0
    assert table.num_rows == 8
    assert table.column("point_id").to_pylist() == [p.id for p in SMALL.points()]
    assert {"policy", "engine", "load", "rate_rps", "seed", "capacity_rps", "e2e_mean",
            "e2e_p90", "e2e_p99", "ttft_p90", "tpot_p90", "throughput_rps", "goodput_rps",
            "slo_attainment", "engine_max_num_seqs"} <= set(table.column_names)
    row = table.to_pylist()[0]
    assert row["completed"] == 300
    assert math.isclose(row["rate_rps"], row["load"] * row["capacity_rps"])
    assert len(row["e2e_quantiles"]) == len(QUANTILE_LEVELS)
    assert row["e2e_quantiles"] == sorted(row["e2e_quantiles"])
    # the same seed draws the same arrivals for every policy; other seeds other arrivals
    rows = table.to_pylist()
    assert rows[0]["e2e_mean"] != rows[1]["e2e_mean"]  # fcfs load 0.6, seeds 0 and 1
    assert pq.read_table(reference.out / "results.parquet").equals(table)
    record = json.loads((reference.out / "sweep.json").read_text())
    assert record["grid"] == SMALL.to_dict() and record["capacity_rps"]["default"] > 0


def test_process_pool_gives_the_same_numbers(reference, tmp_path):
    pooled = run_sweep(SMALL, tmp_path / "pool", jobs=2, progress=False)
    assert pooled.computed == 8
    assert rows_json(pooled.table) == rows_json(reference.table)


def test_a_pool_worker_whose_parent_died_while_it_started_leaves_at_once():
    """The worker's initializer is told its parent's pid: if that parent is already gone
    (init adopted the worker), the worker exits rather than wait for work forever."""
    code = ("from llmsim.sweep.backends import _keep_shared\n"
            "_keep_shared(None, {parent})\nprint('still here')")
    gone = subprocess.run([sys.executable, "-c", code.format(parent=1)], capture_output=True,
                          text=True, timeout=60)
    assert gone.returncode == 1 and "still here" not in gone.stdout, gone.stderr
    alive = subprocess.run([sys.executable, "-c", code.format(parent=os.getpid())],
                           capture_output=True, text=True, timeout=60)
    assert alive.returncode == 0 and "still here" in alive.stdout, alive.stderr


def test_ray_gives_the_same_numbers(reference, tmp_path):
    pytest.importorskip("ray")
    on_ray = run_sweep(SMALL, tmp_path / "ray", jobs=2, ray="local", progress=False)
    assert rows_json(on_ray.table) == rows_json(reference.table)


def test_interrupted_sweep_resumes_without_recomputing(reference, tmp_path):
    out = tmp_path / "resume"
    finished = []

    def stop_after_three(row):
        finished.append(row["point_id"])
        if len(finished) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(SMALL, out, jobs=1, progress=False, on_point=stop_after_three)
    saved = sorted(p.stem for p in (out / "points").glob("*.json"))
    assert saved == sorted(finished) and not (out / "results.parquet").exists()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "points").iterdir()}

    again = []
    resumed = run_sweep(SMALL, out, jobs=2, progress=False, on_point=again.append)
    assert (resumed.computed, resumed.skipped) == (5, 3)
    assert not set(r["point_id"] for r in again) & set(finished)
    assert {p: (out / "points" / p).stat().st_mtime_ns for p in mtimes} == mtimes
    assert rows_json(resumed.table) == rows_json(reference.table)
    done = run_sweep(SMALL, out, jobs=1, progress=False)
    assert (done.computed, done.skipped) == (0, 8)


def test_killed_sweep_loses_nothing_it_finished(tmp_path):
    out = tmp_path / "killed"
    grid = Grid(policies=("mlfq",), loads=(1.1, 1.2), seeds=(0, 1, 2, 3), requests=1000)
    script = (f"from llmsim.sweep import Grid, run_sweep\n"
              f"run_sweep(Grid(policies=('mlfq',), loads=(1.1, 1.2), seeds=(0, 1, 2, 3), "
              f"requests=1000), {str(out)!r}, jobs=2, progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(list(out.glob("points/*.json"))) < 2:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        # the pool's workers leave with their parent: nothing holds its stdout open
        proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("points/*.json")}
    assert 2 <= len(before) < 8 and not (out / "results.parquet").exists()
    for name in before:  # every file left is a whole point
        json.loads((out / "points" / name).read_text())
    resumed = run_sweep(grid, out, jobs=1, progress=False)
    assert resumed.skipped == len(before) and resumed.computed == 8 - len(before)
    assert {n: (out / "points" / n).stat().st_mtime_ns for n in before} == before
    assert resumed.table.num_rows == 8
    assert not [p for p in (out / "points").iterdir() if p.name.startswith(".")]


def test_another_grid_is_refused_unless_forced(reference, tmp_path):
    out = tmp_path / "s"
    run_sweep(Grid(policies=("fcfs",), loads=(0.5,), seeds=(0,), requests=100), out,
              progress=False)
    other = Grid(policies=("fcfs",), loads=(0.5,), seeds=(0, 1), requests=100)
    with pytest.raises(SweepMismatchError, match="grid seeds"):
        run_sweep(other, out, progress=False)
    forced = run_sweep(other, out, progress=False, force=True)
    assert forced.computed == 2 and len(list(out.glob("points/*.json"))) == 2
    (tmp_path / "not-a-sweep").mkdir()
    (tmp_path / "not-a-sweep" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a sweep"):
        run_sweep(other, tmp_path / "not-a-sweep", progress=False, force=True)
    assert (tmp_path / "not-a-sweep" / "keep.txt").exists()


# --- report ---------------------------------------------------------------------------------

def test_t_interval():
    iv = t_interval([1.0, 2.0, 3.0])
    assert iv.mean == 2.0 and iv.n == 3
    assert math.isclose(iv.high - iv.mean, 4.302652729911275 * 1.0 / math.sqrt(3))
    assert t_interval([5.0]) == (5.0, 5.0, 5.0, 1)
    assert t_interval([float("nan")]).n == 0


def test_report_renders_figures_and_one_page(reference, tmp_path):
    files = report(reference.out, tmp_path / "report")
    assert files.complete and files.cdf_at == {"default": 1.1}
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        ".llmsim-output", "cdf-default.png", "index.html", "latency-default.png",
        "throughput-default.png"]
    for png in files.figures:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = files.html.read_text()
    assert page.count("data:image/png;base64,") == 3
    assert 'src="http' not in page and "<table" in page and "sjf" in page
    again = report(reference.out, tmp_path / "report", cdf_at=0.6)  # replaces the old one
    assert again.cdf_at == {"default": 0.6}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_report_of_an_unfinished_sweep(tmp_path):
    out = tmp_path / "partial"

    def stop(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(SMALL, out, progress=False, on_point=stop)
    files = report(out)
    assert not files.complete and files.html == out / "report" / "index.html"
    assert "not finished" in files.html.read_text()


# --- capacity -------------------------------------------------------------------------------

def test_capacity_bisection_brackets_the_slo():
    w = default_workload().head(300)
    target = SloTarget(ttft_p90=0.3, tpot_p90=0.06)
    answers = capacity_search(w, ["fcfs", "srpt"], target=target, seeds=(0, 1),
                              tolerance=0.05)
    assert [a.policy for a in answers] == ["fcfs", "srpt"]
    setup = SearchSetup(w, Deployment(), target, (0, 1), (1.0, 2.0), 0.05, 1.0, "fast", None)
    for a in answers:
        assert a.status == "found" and 0 < a.rate_rps < a.fails_at_rps
        assert a.fails_at_rps <= a.rate_rps * 1.05 + 1e-9
        ok = check_rate(setup, a.policy, a.rate_rps)
        assert ok.meets and ok.ttft_p90 <= 0.3 and ok.tpot_p90 <= 0.06
        assert ok.ttft_p90 == a.ttft_p90_s
        assert not check_rate(setup, a.policy, a.fails_at_rps).meets
        assert a.load == pytest.approx(a.rate_rps / (a.rate_rps / a.load))


def test_capacity_outside_the_bracket():
    w = default_workload().head(100)
    never = capacity_search(w, ["fcfs"], target=SloTarget(ttft_p90=1e-6), bracket=(1.0, 2.0))
    assert never[0].status == "below-bracket" and never[0].rate_rps == 0.0
    always = capacity_search(w, ["fcfs"], target=SloTarget(ttft_p90=1e6), bracket=(1.0, 2.0))
    assert always[0].status == "above-bracket" and math.isinf(always[0].fails_at_rps)
    with pytest.raises(ValueError, match="needs an SLO"):
        capacity_search(w, ["fcfs"])
    with pytest.raises(ValueError, match="unknown policy"):
        capacity_search(w, ["fifo"], target=SloTarget(ttft_p90=1.0))


# --- command line ---------------------------------------------------------------------------

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("sweep")(sweep_cli.sweep)
app.command("report")(sweep_cli.report)
app.command("capacity-search")(sweep_cli.capacity)
runner = CliRunner(env={"COLUMNS": "160"})


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_sweep_report_and_capacity(tmp_path):
    config = write_toml(tmp_path, """
        [workload]
        requests = 200
        [grid]
        policies = ["fcfs", "sjf"]
        loads = [0.7, 1.0]
        seeds = [0]
        [capacity]
        ttft_p90_ms = 300
        tolerance = 0.1
    """)
    out = tmp_path / "out"
    res = invoke("sweep", config, "--out", out, "--jobs", 1, "--report")
    assert res.exit_code == 0, res.output
    assert "4 points simulated, 0 already done" in res.output and "sjf" in res.output
    assert (out / "results.parquet").exists() and (out / "report" / "index.html").exists()
    res = invoke("sweep", config, "--out", out, "--jobs", 1)
    assert res.exit_code == 0 and "0 points simulated, 4 already done" in res.output
    res = invoke("sweep", config, "--out", out, "--seeds", "0,1")
    assert res.exit_code == 2 and "--force" in res.output
    res = invoke("report", out, "--out", tmp_path / "r")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "index.html").exists()
    res = invoke("capacity-search", config, "--out", tmp_path / "cap.csv", "--jobs", 1)
    assert res.exit_code == 0, res.output
    assert "found" in res.output
    assert (tmp_path / "cap.csv").read_text().startswith('"policy","rate_rps"')


@pytest.mark.parametrize("args, message", [
    (("--policies", "fifo"), "unknown policy 'fifo'"),
    (("--loads", "0.5", "--rates", "3"), "not both"),
    (("--trace", "missing.csv"), "does not exist"),
])
def test_cli_errors_leave_nothing_behind(tmp_path, args, message):
    out = tmp_path / "out"
    res = invoke("sweep", "--out", out, "--requests", 50, *args)
    assert res.exit_code == 2 and message in res.output
    assert not out.exists()


def test_cli_bad_config_and_missing_results(tmp_path):
    res = invoke("sweep", tmp_path / "missing.toml")
    assert res.exit_code == 2 and "does not exist" in res.output
    res = invoke("report", tmp_path / "nothing")
    assert res.exit_code == 2 and "do not exist" in res.output
    res = invoke("capacity-search", "--requests", 50)
    assert res.exit_code == 2 and "needs an SLO" in res.output


def test_no_temporary_files_left(reference):
    assert not [p for p in reference.out.rglob(".*")]
    assert os.listdir(reference.out / "points")
