"""benchmarks/vllm_cpu_costs.py: the step fit recovers the physical model's terms from
points that model produced, through the simulator's own `iteration_time` (so the fit's
algebra and the cost model cannot drift apart)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from llmsim.calibration.physical import PhysicalCostModel, ShapeCosts
from llmsim.calibration.shapes import get_model
from llmsim.engine.cost import IterationShape

from .benchmark_script import load_benchmark

SHORT, LONG = 100, 400


@pytest.fixture(scope="module")
def costs_script():
    return load_benchmark("vllm_cpu_costs")


def points_from(cm: PhysicalCostModel) -> dict:
    decode = []
    for k in (1, 2, 4):
        for p in (64, 1024):
            steps = [cm.iteration_time(IterationShape(k, k, (), k, k * (p + t), k))
                     for t in range(SHORT, LONG)]
            decode.append({"seqs": k, "prompt": p, "step_s": float(np.mean(steps))})
    prefill = [{"prompt": p, "e2e_s": 0.05 + cm.iteration_time(  # 50 ms: the front end's
                IterationShape(p, 1, ((p, 0),), 0, 0, 1))}  # constant share cancels
               for p in (64, 512, 1024, 2000)]
    return {"decode": decode, "prefill": prefill}


def test_step_fit_recovers_the_terms_it_fits(costs_script):
    model = get_model("qwen3-8b")
    base, _ = costs_script.params_from({"fixed_s": 0.0, "s_per_flop": 0.0, "s_per_kv_byte": 0.0,
                                        "s_per_attn_flop": 0.0, "seq_layer_s": 0.0})
    truth = replace(base, fixed_s=4e-3, seq_layer_s=2e-6, gemm_flops=3e11,
                    attention_bandwidth=2e10, attention_flops=5e11)
    cm = PhysicalCostModel(model, 1, truth, "truth", async_scheduling=False)
    x, values = costs_script.fit(points_from(cm), ShapeCosts.of(model, 1), SHORT, LONG)
    fitted, _ = costs_script.params_from(x)
    for name in costs_script.FREE:
        assert getattr(fitted, name) == pytest.approx(getattr(truth, name), rel=1e-6), name
    check = costs_script.check(model, fitted, points_from(cm), SHORT, LONG)
    for d in check:
        assert d["sim_step_s"] == pytest.approx(d["step_s"], rel=1e-9)


def test_a_term_the_points_do_not_need_costs_nothing(costs_script):
    """nnls drops a term to 0 s; the profile then gives it a NEGLIGIBLE rate, not 1/0."""
    params, prov = costs_script.params_from({"fixed_s": 1e-3, "s_per_flop": 0.0,
                                             "s_per_kv_byte": 1e-10, "s_per_attn_flop": 0.0,
                                             "seq_layer_s": 0.0})
    assert params.gemm_flops == params.attention_flops == costs_script.NEGLIGIBLE
    assert params.attention_bandwidth == pytest.approx(1e10)
    assert "fitted" in prov["gemm_flops"] and "unused" in prov["allreduce_bandwidth"]
