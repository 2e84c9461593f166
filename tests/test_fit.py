"""Simulating measured runs as they were measured, replaying them under any cost, fitting
GPU parameters to them, the fitted profile and `llmsim fit`."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llmsim.calibration import fit as F
from llmsim.calibration.fitted import FittedProfile, fitted_cost_model, is_fitted
from llmsim.calibration.gpus import get_gpu
from llmsim.calibration.measured import (
    MeasuredPoint,
    PromptLengths,
    predict,
    replay,
    trace_point,
    workload_of,
)
from llmsim.calibration.memory import kv_cache_blocks
from llmsim.calibration.physical import PhysicalCostModel
from llmsim.calibration.profile import ProfileError
from llmsim.calibration.shapes import get_model
from llmsim.cli import app
from llmsim.engine.config import EngineConfig
from llmsim.policies import FCFS
from llmsim.simulate import Deployment, simulate

SHARED = Path(os.environ.get("LLMSIM_SHARED_DATA")
              or Path(__file__).resolve().parents[2] / "shared" / "data")
MLENERGY = SHARED / "mlenergy"
needs_mlenergy = pytest.mark.skipif(not MLENERGY.is_dir(), reason=f"no data at {MLENERGY}")
H100 = get_gpu("h100")
TRUE = F.datasheet_start(H100)
runner = CliRunner(env={"COLUMNS": "160"})


def point(mns: int, n: int = 120, model: str = "qwen3-8b", seed: int = 0,
          prompts: bool = True, blocks: int | None = None) -> MeasuredPoint:
    rng = np.random.default_rng(seed)
    shape = get_model(model)
    blocks = blocks or kv_cache_blocks(shape, H100, 1, 0.9, 16, 8192, mns)
    return MeasuredPoint(
        label=f"{model} mns={mns}", group=model, model=shape, tp=1,
        engine=EngineConfig(max_num_seqs=mns, num_gpu_blocks=blocks),
        output_tokens=rng.integers(2, 400, n), prompt_family="test",
        prompt_tokens=rng.integers(20, 900, n) if prompts else None)


class Constant:
    label = "constant"

    def iteration_time(self, shape) -> float:
        return 0.01


def test_replay_matches_a_direct_simulation():
    p = point(16, n=200)
    cost = PhysicalCostModel(p.model, 1, TRUE, "t")
    trace = trace_point(p, None)
    got = predict(p, cost, trace)
    direct = simulate(workload_of(p, None), FCFS, Deployment(engine=p.engine), cost=cost)
    assert got.median_itl_s == pytest.approx(direct.summary["itl"]["median"], rel=0.01)
    assert got.steady_output_tps == pytest.approx(
        direct.summary["throughput_output_tps_steady"], rel=0.03)
    # with equal iteration times, tokens are evenly spaced and both counts agree exactly
    flat = replay(trace, np.full(trace.num_iterations, 0.01))
    direct = simulate(workload_of(p, None), FCFS, Deployment(engine=p.engine), cost=Constant())
    assert flat.steady_output_tps == pytest.approx(
        direct.summary["throughput_output_tps_steady"], rel=1e-9)
    assert flat.median_itl_s == pytest.approx(0.01)
    assert flat.mean_running == pytest.approx(16, rel=0.05)


def test_the_schedule_does_not_depend_on_timing():
    """The premise of replaying: all-at-t=0 FCFS runs take the same batches at any speed."""
    p = point(8, n=60)
    a = simulate(workload_of(p, None), FCFS, Deployment(engine=p.engine), cost=Constant())
    b = simulate(workload_of(p, None), FCFS, Deployment(engine=p.engine),
                 cost=PhysicalCostModel(p.model, 1, TRUE, "t"))
    order = np.argsort(a.records.finish, kind="stable")
    assert (order == np.argsort(b.records.finish, kind="stable")).all()
    assert a.summary["iterations"] == b.summary["iterations"]


def test_coarsened_trace_keeps_the_metrics():
    p = point(8, n=150)
    trace = trace_point(p, None)
    coarse = trace.coarsen()
    assert coarse.num_iterations < trace.num_iterations / 5
    cost = PhysicalCostModel(p.model, 1, TRUE, "t")
    exact, approx = predict(p, cost, trace), predict(p, cost, coarse)
    assert approx.steady_output_tps == pytest.approx(exact.steady_output_tps, rel=1e-9)
    assert approx.mean_running == pytest.approx(exact.mean_running, rel=1e-9)
    assert approx.median_itl_s == pytest.approx(exact.median_itl_s, rel=0.005)


def test_traces_are_cached_by_what_decides_the_schedule(tmp_path):
    p = point(8, n=40, prompts=False)
    pr = PromptLengths(100, 0.5)
    a = trace_point(p, pr, cache=tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    b = trace_point(p, pr, cache=tmp_path)
    assert (a.features.context == b.features.context).all() and a.end == b.end
    trace_point(p, PromptLengths(200, 0.5), cache=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2
    with pytest.raises(ValueError, match="prompt lengths unknown"):
        trace_point(p, None)


def test_prompt_lengths_are_deterministic_quantiles():
    pr = PromptLengths(300, 1.0, max_tokens=5000)
    x = pr.draw(2001, np.random.default_rng(0))
    assert np.median(x) == 300 and x.max() <= 5000 and x.min() >= 1
    assert (np.sort(x) == np.sort(pr.draw(2001, np.random.default_rng(1)))).all()


def test_fit_recovers_the_parameters_that_made_the_data():
    points = [point(m, n=120, seed=m) for m in (2, 8, 32)] + \
        [point(m, n=120, model="qwen3-32b", seed=m) for m in (4, 16)]
    traces = {p.label: trace_point(p, None) for p in points}
    truth = replace(TRUE, weight_bandwidth=2.5e12, attention_bandwidth=1.2e12, fixed_s=2e-3)
    measured = []
    for p in points:
        q = predict(p, PhysicalCostModel(p.model, 1, truth, "t"), traces[p.label])
        measured.append(replace(p, median_itl_s=q.median_itl_s,
                                steady_output_tps=q.steady_output_tps,
                                mean_running=q.mean_running))
    free = ("weight_bandwidth", "attention_bandwidth", "fixed_s", "cpu_per_seq_s")
    got = F.fit(measured, H100, [], free=free, start=TRUE,
                traces=lambda p, pr: traces[p.label])
    # the GPU bounds every step of these runs: the CPU cost is not identified, and says so
    assert got.unidentified == ("cpu_per_seq_s",)
    assert got.params.cpu_per_seq_s == TRUE.cpu_per_seq_s
    prof = F.fitted_profile(got, H100, "synthetic", measured, [q for q in
                            F.predict_points(measured, got, traces=lambda p, pr: traces[p.label])])
    assert prof.provenance["cpu_per_seq_s"].startswith("not identified")
    assert prof.provenance["fixed_s"].startswith("fitted to synthetic")
    for name in free[:3]:
        assert getattr(got.params, name) == pytest.approx(getattr(truth, name), rel=0.02)
    preds = F.predict_points(measured, got, traces=lambda p, pr: traces[p.label])
    e = F.errors(measured, preds)
    assert e["itl_mape"] < 0.005 and e["tps_mape"] < 0.005


def test_leave_one_out_never_sees_the_held_out_group():
    seen = []
    points = [point(m, n=60, seed=m) for m in (4, 16)] + \
        [point(m, n=60, model="qwen3-14b", seed=m) for m in (4, 16)]
    traces = {p.label: trace_point(p, None) for p in points}
    points = [replace(p, median_itl_s=0.02, steady_output_tps=500.0) for p in points]

    def get(p, pr):
        seen.append(p.group)
        return traces[p.label]

    held = F.leave_one_out(points, H100, [], free=("fixed_s",), traces=get)
    assert [h.group for h in held] == ["qwen3-8b", "qwen3-14b"]
    # each fit saw only the other group (its 2 runs, twice: fit, then sensitivity); the
    # held-out group's 2 runs were traced after the fit, to be predicted
    a, b = "qwen3-8b", "qwen3-14b"
    assert seen == [b] * 4 + [a] * 2 + [a] * 4 + [b] * 2


def test_fitted_profile_round_trip_and_defaults(tmp_path, monkeypatch):
    p = point(8, n=40)
    fitted = F.Fitted(TRUE, {"test": PromptLengths(100)}, ("fixed_s",), 0.1, 1, 3)
    q = predict(p, PhysicalCostModel(p.model, 1, TRUE, "t"), trace_point(p, None))
    prof = F.fitted_profile(fitted, H100, "unit test", [p], [q], command="x")
    path = tmp_path / "h100.json"
    prof.save(path)
    d = json.loads(path.read_text())
    assert d["params"]["fixed_s"]["provenance"].startswith("fitted to unit test")
    assert "assumed" in d["params"]["attention_flops"]["provenance"]
    assert d["params"]["weight_bandwidth"]["unit"] == "B/s"
    back = FittedProfile.load(path)
    assert back.params == TRUE and back.gpu == "h100"
    assert is_fitted(str(path)) and not is_fitted(str(tmp_path / "nope.json"))
    cost = Deployment(model="qwen3-14b", gpu="h100", profile=str(path)).cost_model()
    assert isinstance(cost, PhysicalCostModel) and cost.label.startswith("fitted profile (h100")
    with pytest.raises(ProfileError, match="fitted profile is for h100, not a100"):
        fitted_cost_model(str(path), get_model("tiny"), "a100", 1)
    path.write_text(json.dumps({**d, "version": 99}))
    with pytest.raises(ProfileError, match="version 99"):
        FittedProfile.load(path)
    # with no bundled fitted profile for a GPU, its default is what it was before
    from llmsim.calibration import fitted as fitted_module

    monkeypatch.setattr(fitted_module, "bundled_fitted", lambda: {})
    assert "roofline" in Deployment(model="qwen3-8b", gpu="h100").cost_model().label


def test_bundled_fitted_profiles_are_the_default_for_their_gpus():
    for gpu in ("h100", "b200"):
        cost = Deployment(model="qwen3-8b", gpu=gpu).cost_model()
        assert isinstance(cost, PhysicalCostModel)
        assert cost.label.startswith(f"fitted profile ({gpu}, fitted to ML.ENERGY")
    assert "roofline" in Deployment(model="qwen3-8b", gpu="a100").cost_model().label
    assert "roofline" in Deployment(model="qwen3-8b", profile="roofline").cost_model().label
    no_async = Deployment(model="qwen3-8b", engine=EngineConfig(async_scheduling=False))
    assert not no_async.cost_model().async_scheduling


def test_summary_has_steady_state_throughput():
    p = point(8, n=40)
    r = simulate(workload_of(p, None), FCFS, Deployment(engine=p.engine), cost=Constant())
    assert r.summary["throughput_output_tps_steady"] > 0
    few = replace(p, output_tokens=p.output_tokens[:9], prompt_tokens=p.prompt_tokens[:9])
    r = simulate(workload_of(few, None), FCFS, Deployment(engine=p.engine), cost=Constant())
    assert r.summary["throughput_output_tps_steady"] is None  # N <= B + 1: no steady state


def _mlenergy_file(folder: Path) -> None:
    hist = {"bins": [2.0, 60.0, 120.0], "counts": [20, 20]}
    configs = [{"gpu_model": "H100", "num_gpus": 1, "max_num_seqs": m,
                "parallelization": {"tensor_parallel": 1}, "median_itl_ms": 9.0 + m / 4,
                "p90_itl_ms": 12.0, "output_throughput_tokens_per_sec": 100.0 * m,
                "avg_batch_size": m - 0.1, "avg_output_len": 60.0,
                "output_length_distribution": hist} for m in (4, 8)]
    folder.mkdir()
    (folder / "Qwen__Qwen3-8B__lm-arena-chat.json").write_text(json.dumps(
        {"model_id": "Qwen/Qwen3-8B", "configurations": configs}))


def test_fit_command_writes_a_profile_and_a_plot(tmp_path):
    data = tmp_path / "data"
    _mlenergy_file(data)
    out = tmp_path / "p" / "h100.json"
    args = ["fit", "--data", data, "--gpu", "h100", "--prompt-medians", "50",
            "--prompt-sigmas", "0.5", "--cache", tmp_path / "cache", "--out", out]
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    assert "Qwen3-8B H100" in res.output and "prompt lengths" in res.output
    prof = FittedProfile.load(out)
    assert prof.fit["prompt_lengths"]["lmarena-chat"]["median"] == 50
    assert len(prof.fit["points"]) == 2 and out.with_suffix(".png").exists()
    again = runner.invoke(app, [str(a) for a in args])
    assert again.exit_code == 2 and "already exists" in again.output
    for bad, msg in ((["--prompt-medians", "x"], "comma-separated numbers"),
                     (["--gpu", "v100"], "unknown GPU"),
                     (["--data", tmp_path / "none"], "no such folder"),
                     (["--models", "llama-3-8b"], "no h100 runs for")):
        res = runner.invoke(app, [str(a) for a in [*args, "--force", *bad]])
        assert res.exit_code == 2 and msg in res.output, res.output


@needs_mlenergy
def test_mlenergy_loader_reads_every_run():
    from llmsim.calibration.mlenergy import load_mlenergy

    points, skipped = load_mlenergy(MLENERGY)
    assert not skipped
    by = {}
    for p in points:
        by.setdefault(p.group, []).append(p)
        assert abs(p.output_tokens.mean() / p.meta["avg_output_len"] - 1) < 0.01
        assert p.num_requests in (1024, 2048, 3072, 4096)
        assert p.engine.gpu_memory_utilization == 0.9 and p.engine.num_gpu_blocks > 0
    assert len(by["Qwen3-8B H100"]) == 10 and len(by["Qwen3-32B H100"]) == 12
    assert {p.tp for p in by["Qwen3-30B-A3B-Instruct-2507 H100"]} == {1, 2}  # EP over 2 GPUs
    assert {p.engine.block_size for p in by["gemma-3-12b-it B200"]} == {32}


@needs_mlenergy
def test_bundled_profiles_say_what_they_were_fitted_to():
    from llmsim.calibration.fitted import bundled_fitted

    for gpu, path in bundled_fitted().items():
        prof = FittedProfile.load(path)
        assert prof.gpu == gpu and "ML.ENERGY" in prof.source
        assert prof.fit["points"] and prof.fit["held_out"]
        assert all(v for v in prof.provenance.values())
