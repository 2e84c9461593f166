"""The physical cost model: one formula for one shape and for arrays of them, the decode rule
(piecewise affine in the summed context, with the breakpoints it reports), and its terms by
hand."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.calibration.fit import datasheet_start
from llmsim.calibration.gpus import get_gpu
from llmsim.calibration.physical import (
    Features,
    GpuParams,
    PhysicalCostModel,
    ShapeCosts,
    features,
    window_pairs,
)
from llmsim.calibration.shapes import ModelShape, get_model
from llmsim.engine.cost import IterationShape

H100 = datasheet_start(get_gpu("h100"))
MODELS = [("qwen3-8b", 1), ("qwen3-32b", 2), ("gemma-3-12b", 1), ("gemma-3-27b", 2),
          ("qwen3-30b-a3b", 1)]


def decode(n: int, context: int) -> IterationShape:
    return IterationShape(n, n, (), n, context, n)


shapes = st.builds(
    lambda dec, ctx, chunks: IterationShape(
        dec + sum(c for c, _ in chunks), dec + len(chunks), tuple(chunks), dec,
        dec * ctx, dec + len(chunks) // 2),
    st.integers(0, 300), st.integers(1, 4000),
    st.lists(st.tuples(st.integers(1, 3000), st.integers(0, 5000)), max_size=3),
).filter(lambda s: s.num_tokens > 0)


@pytest.mark.parametrize("name,tp", MODELS)
@pytest.mark.parametrize("async_scheduling", [True, False])
@settings(max_examples=40, deadline=None)
@given(batch=st.lists(shapes, min_size=1, max_size=8))
def test_one_by_one_equals_vectorised(name, tp, async_scheduling, batch):
    m = PhysicalCostModel(get_model(name), tp, H100, "t", async_scheduling)
    rows = [features(s, m.costs.window) for s in batch]
    arrays = Features(*(np.asarray(col, float) for col in zip(*rows, strict=True)))
    one = [m.iteration_time(s) for s in batch]
    assert np.allclose(m.iteration_times(arrays), one, rtol=1e-12, atol=0)
    assert all(t > 0 for t in one)


@pytest.mark.parametrize("name,tp", MODELS)
@pytest.mark.parametrize("cpu_fixed_s", [2e-3, 80e-3])  # GPU-bound, then CPU-bound at first
@pytest.mark.parametrize("async_scheduling", [True, False])
def test_decode_time_is_piecewise_affine_with_the_reported_breakpoints(
        name, tp, cpu_fixed_s, async_scheduling):
    params = replace(H100, cpu_fixed_s=cpu_fixed_s)
    m = PhysicalCostModel(get_model(name), tp, params, "t", async_scheduling)
    for n in (1, 7, 64, 512):
        pieces = m.decode_pieces(n)
        starts = [s for s, _, _ in pieces]
        assert starts[0] == 0 and starts == sorted(starts)
        for ctx in np.linspace(n, n * 20_000, 300).astype(int):
            s, a, b = [p for p in pieces if p[0] <= ctx][-1]
            assert m.iteration_time(decode(n, int(ctx))) == pytest.approx(a + b * ctx, rel=1e-12)
        # affine inside each piece: the midpoint rule holds exactly
        ends = [*starts[1:], starts[-1] + n * 10_000.0]
        for (s, _, _), e in zip(pieces, ends, strict=True):
            lo, hi = math.ceil(s), math.floor(e)
            if hi - lo >= 2:
                mid = (lo + hi) // 2 if (lo + hi) % 2 == 0 else None
                if mid is not None:
                    t = [m.iteration_time(decode(n, c)) for c in (lo, mid, hi)]
                    assert t[1] == pytest.approx((t[0] + t[2]) / 2, rel=1e-12)


def test_dense_model_gpu_bound_decode_is_one_affine_piece():
    m = PhysicalCostModel(get_model("qwen3-8b"), 1, H100, "t")
    assert len(m.decode_pieces(32)) == 1
    cpu_bound = PhysicalCostModel(get_model("qwen3-8b"), 1, replace(H100, cpu_fixed_s=0.1), "t")
    (s0, a0, b0), (s1, a1, b1) = cpu_bound.decode_pieces(32)
    assert (s0, a0, b0) == (0.0, pytest.approx(0.1 + 32 * H100.cpu_per_seq_s), 0.0)
    assert a1 + b1 * s1 == pytest.approx(a0)  # continuous at the breakpoint


@given(chunk=st.integers(1, 300), cached=st.integers(0, 600), window=st.integers(0, 400))
def test_window_pairs_by_brute_force(chunk, cached, window):
    brute = sum(min(p, window) if window else p for p in range(cached + 1, cached + chunk + 1))
    assert window_pairs(chunk, cached, window) == brute


def test_terms_by_hand_for_a_dense_decode():
    """Qwen3-8B decoding 8 sequences of 1,000 tokens, with only bandwidth terms switched on."""
    p = GpuParams(weight_bandwidth=2e12, gemm_flops=1e18, gemm_tile_tokens=0,
                  attention_bandwidth=1e12, attention_half_seqs=0, attention_flops=1e18,
                  sampling_passes=0, seq_layer_s=0, fixed_s=0, per_layer_s=0, norm_s=0,
                  cpu_fixed_s=0, cpu_per_seq_s=0, allreduce_bandwidth=1, allreduce_latency_s=0)
    shape = get_model("qwen3-8b")
    m = PhysicalCostModel(shape, 1, p, "t")
    weights = (shape.linear_params() + shape.lm_head_params()) * 2
    act = 8 * 36 * (8 * 4096 + 3 * (32 + 16) * 128 + 3 * 12288) * 2
    kv = 8_000 * shape.kv_bytes_per_token()
    want = (weights + act) / 2e12 + kv / 1e12
    assert m.iteration_time(decode(8, 8_000)) == pytest.approx(want, rel=1e-12)


def test_moe_reads_the_experts_the_batch_touches():
    shape = get_model("qwen3-30b-a3b")
    c = ShapeCosts.of(shape, 1)
    assert c.num_experts == 128 and c.experts_per_token == 8
    p = replace(H100, gemm_flops=1e18)  # bandwidth-bound
    m = PhysicalCostModel(shape, 1, p, "t")
    one, many = m.iteration_time(decode(1, 100)), m.iteration_time(decode(512, 51_200))
    assert many > one
    # a lone token reads 8 of 128 experts per layer; 512 tokens read (nearly) all of them
    touched_512 = 128 * (1 - (1 - 8 / 128) ** 512)
    assert touched_512 == pytest.approx(128, rel=1e-9)
    assert shape.total_params() == pytest.approx(30.5e9, rel=0.01)


def test_sliding_window_layers_read_at_most_the_window():
    gemma = get_model("gemma-3-12b")
    assert gemma.sliding_layers == 40 and gemma.full_attention_layers == 8
    m = PhysicalCostModel(gemma, 1, replace(H100, attention_half_seqs=0), "t")
    short = m.iteration_time(decode(4, 4 * 50_000)) - m.iteration_time(decode(4, 4 * 40_000))
    # past 2.39 windows per sequence only the 8 global layers read more
    assert short == pytest.approx(4 * 10_000 * m.costs.kv_full / H100.attention_bandwidth)


def test_params_are_checked():
    with pytest.raises(ValueError, match="weight_bandwidth must be > 0"):
        replace(H100, weight_bandwidth=0)
    with pytest.raises(ValueError, match="fixed_s must be finite and >= 0"):
        replace(H100, fixed_s=-1)
    with pytest.raises(ValueError, match="lack"):
        GpuParams.from_dict({"fixed_s": 1})
    assert GpuParams.from_dict(H100.to_dict()) == H100


def test_new_presets_match_their_published_sizes():
    assert get_model("qwen3-14b").total_params() == pytest.approx(14.77e9, rel=0.005)
    assert get_model("qwen3-32b").total_params() == pytest.approx(32.76e9, rel=0.005)
    assert get_model("gemma-3-27b").total_params() == pytest.approx(27.0e9, rel=0.01)
    assert get_gpu("b200").memory_bandwidth == 8e12


def test_hf_config_with_text_config_sliding_layers_and_experts(tmp_path):
    import json

    gemma = {"model_type": "gemma3", "torch_dtype": "bfloat16", "text_config": {
        "model_type": "gemma3_text", "hidden_size": 3840, "intermediate_size": 15360,
        "num_hidden_layers": 48, "num_attention_heads": 16, "num_key_value_heads": 8,
        "head_dim": 256, "sliding_window": 1024, "vocab_size": 262208}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(gemma))
    m = ModelShape.from_hf_config(path, "g")
    assert (m.sliding_window, m.sliding_layers, m.norms_per_layer) == (1024, 40, 4)
    assert m.tie_word_embeddings
    assert {k: v for k, v in m.to_dict().items() if k != "name"} == \
        {k: v for k, v in get_model("gemma-3-12b").to_dict().items() if k != "name"}
    moe = {"model_type": "qwen3_moe", "hidden_size": 2048, "intermediate_size": 6144,
           "num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4,
           "head_dim": 128, "vocab_size": 151936, "num_experts": 128,
           "num_experts_per_tok": 8, "moe_intermediate_size": 768, "sliding_window": None}
    path.write_text(json.dumps(moe))
    m = ModelShape.from_hf_config(path, "m")
    assert (m.num_experts, m.experts_per_token, m.moe_intermediate_size) == (128, 8, 768)
    assert m.sliding_layers == 0


def test_calibrate_refuses_layers_it_cannot_time(tmp_path):
    from typer.testing import CliRunner

    from llmsim.cli import app

    pytest.importorskip("torch")
    args = ["calibrate", "--model", "qwen3-30b-a3b", "--device", "cpu",
            "--out", str(tmp_path / "p.json")]
    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert res.exit_code == 2 and "MoE and sliding-window layers" in res.output
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("async_scheduling", [True, False])
@pytest.mark.parametrize("cpu_fixed_s", [0.0, 0.02])  # 0.02 s: the CPU bounds small batches
def test_dense_decode_affine_is_iteration_time_bit_for_bit(async_scheduling, cpu_fixed_s):
    # the fast simulator's decode runs price with it: the same floats, not nearly the same
    for name, tp in (("qwen3-8b", 1), ("qwen3-32b", 2), ("llama-3.1-8b", 1)):
        m = PhysicalCostModel(get_model(name), tp, replace(H100, cpu_fixed_s=cpu_fixed_s),
                              "t", async_scheduling, engine_overhead_s=3e-4)
        for n in (1, 7, 64, 512):
            a, b, floor = m.decode_affine(n)
            contexts = range(n, n * 40_000, n * 997)
            assert [max(a + b * c, floor) for c in contexts] == \
                [m.iteration_time(decode(n, c)) for c in contexts]


def test_no_affine_form_where_decode_time_is_not_affine():
    for name in ("gemma-3-12b", "qwen3-30b-a3b"):  # sliding windows; experts
        assert PhysicalCostModel(get_model(name), 1, H100, "t").decode_affine(8) is None
