"""Model shapes, GPU presets, the KV pool size and the roofline cost model, by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmsim.calibration.gpus import GPUS, UnknownGpuError, get_gpu
from llmsim.calibration.memory import InsufficientMemoryError, kv_cache_blocks, memory_breakdown
from llmsim.calibration.roofline import RooflineCostModel
from llmsim.calibration.shapes import MODELS, ModelShape, UnknownModelError, get_model
from llmsim.engine.cost import IterationShape


def decode(batch: int, context: int) -> IterationShape:
    return IterationShape(batch, batch, (), batch, context, batch)


def test_llama3_8b_shape_by_hand():
    m = get_model("Llama-3-8B")
    assert m.total_params() == 8_030_261_248  # the published 8.03B
    assert m.kv_bytes_per_token() == 2 * 32 * 8 * 128 * 2 == 131072
    assert m.weight_bytes() == m.total_params() * 2
    # TP shards the linear layers and the vocabulary; KV heads split until one per GPU
    assert m.linear_params(tp=2) == m.linear_params() // 2
    assert m.kv_bytes_per_token(tp=8) == m.kv_bytes_per_token() // 8
    assert m.kv_bytes_per_token(tp=16) == m.kv_bytes_per_token() // 8  # replicated beyond 8


def test_presets_are_distinct_where_they_should_be():
    assert get_model("qwen2.5-7b").num_kv_heads == 4
    assert get_model("mistral-7b").vocab_size == 32768
    assert get_model("llama-3.1-70b").num_layers == 80
    assert {"h100", "h200", "a100", "b200"} == set(GPUS)
    assert len(MODELS) >= 7


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UnknownModelError, match="unknown model 'gpt-9'.*llama-3-8b"):
        get_model("gpt-9")
    with pytest.raises(UnknownGpuError, match="unknown GPU 'v100'.*h100"):
        get_gpu("v100")


def test_shape_from_hf_config(tmp_path):
    cfg = {"num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
           "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
           "torch_dtype": "bfloat16"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    m = ModelShape.from_hf_config(path, name="mine")
    assert m.total_params() == get_model("llama-3-8b").total_params()
    assert get_model(str(path)).head_dim == 128
    del cfg["vocab_size"]
    path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="config.json: config has no field 'vocab_size'"):
        ModelShape.from_hf_config(path)


def test_kv_pool_of_llama3_8b_on_h100():
    m, g = get_model("llama-3-8b"), get_gpu("h100")
    blocks = kv_cache_blocks(m, g, 1, 0.9, 16, 8192, 256)
    # 0.9 x 79.1 GiB - 14.96 GiB of weights - ~1.8 GiB of activations ~ 54.4 GiB of KV at
    # 2 MiB per 16-token block: ~27.8k blocks (vLLM logs ~28k blocks / ~450k tokens here)
    assert 27_000 < blocks < 28_500
    b = memory_breakdown(m, g, 1, 0.9, 16, 8192, 256)
    assert b["num_gpu_blocks"] == blocks and b["block_bytes"] == 2 * 1024**2
    assert kv_cache_blocks(m, g, 1, 0.5, 16, 8192, 256) < blocks
    assert kv_cache_blocks(m, g, 2, 0.9, 16, 8192, 256) > 2 * blocks  # half weights, half KV


def test_70b_needs_tensor_parallelism():
    m, g = get_model("llama-3-70b"), get_gpu("h100")
    with pytest.raises(InsufficientMemoryError, match="does not fit on one h100 at tp=1"):
        kv_cache_blocks(m, g, 1, 0.9, 16, 8192, 256)
    assert kv_cache_blocks(m, g, 4, 0.9, 16, 8192, 256) > 10_000


def test_roofline_decode_is_affine_in_context():
    cost = RooflineCostModel(get_model("llama-3-8b"), get_gpu("h100"))
    for batch in (1, 7, 64):
        t = [cost.iteration_time(decode(batch, c)) for c in (1000, 5000, 9000)]
        assert t[2] - t[1] == pytest.approx(t[1] - t[0], rel=1e-12)
    assert "roofline" in cost.label and "not measured" in cost.label


def test_roofline_magnitudes():
    cost = RooflineCostModel(get_model("llama-3-8b"), get_gpu("h100"))
    # one decode reads ~15 GB of linear weights at 0.8 x 3.35 TB/s: ~5.6 ms + overheads;
    # vLLM measures ~6-7 ms per step at batch 1 on an H100
    assert 5e-3 < cost.iteration_time(decode(1, 1000)) < 8e-3
    # a 2048-token prefill: 2 x 7.5e9 x 2048 FLOPs at 0.6 x 989 TFLOP/s ~ 52 ms
    prefill = IterationShape(2048, 1, ((2048, 0),), 0, 0, 1)
    assert 40e-3 < cost.iteration_time(prefill) < 70e-3
    # more tokens cost more; TP shortens the linear part
    assert cost.iteration_time(decode(64, 64_000)) > cost.iteration_time(decode(1, 1000))
    tp2 = RooflineCostModel(get_model("llama-3-8b"), get_gpu("h100"), tp=2)
    assert tp2.iteration_time(prefill) < cost.iteration_time(prefill)


def test_roofline_rejects_empty_iterations_and_bad_parameters():
    cost = RooflineCostModel(get_model("llama-3-8b"), get_gpu("a100"))
    with pytest.raises(AssertionError):
        cost.iteration_time(IterationShape(0, 0, (), 0, 0, 0))
    with pytest.raises(ValueError, match="compute_efficiency"):
        RooflineCostModel(get_model("llama-3-8b"), get_gpu("a100"), compute_efficiency=1.5)


def test_engine_overhead_adds_to_every_iteration_of_either_cost_model(tmp_path):
    from llmsim.simulate import Deployment

    shape = decode(8, 4096)
    base = Deployment().cost_model().iteration_time(shape)
    assert Deployment(engine_overhead_s=0.002).cost_model().iteration_time(shape) == \
        pytest.approx(base + 0.002)
    with pytest.raises(ValueError, match="engine_overhead_s"):
        Deployment(engine_overhead_s=-1.0).cost_model()


def test_decode_runs_are_priced_exactly_as_one_iteration_at_a_time():
    # the fast simulator's decisions rest on these floats: bit for bit, not approximately
    contexts = np.arange(1, 200_000, 997, dtype=np.int64)
    for gpu, tp in (("h100", 1), ("a100", 4)):
        cost = RooflineCostModel(get_model("llama-3-8b"), get_gpu(gpu), tp=tp,
                                 engine_overhead_s=3e-4)
        for n in (1, 7, 256):
            one = [cost.iteration_time(IterationShape(n, n, (), n, int(c), n))
                   for c in contexts]
            a, b, floor = cost.decode_affine(n)
            assert [max(a + b * int(c), floor) for c in contexts] == one
