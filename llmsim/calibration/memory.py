"""How many KV blocks fit on a GPU, the way vLLM sizes its pool at start-up.

vLLM takes `gpu_memory_utilization` of the device, subtracts the weights and the peak
memory of a profiled forward pass, and fills the rest with KV blocks. Without a GPU to
profile, the activation peak here is an estimate (labelled as such in the breakdown):
the hidden states and MLP intermediates of one `max_num_batched_tokens` forward, the
float32 logits of `max_num_seqs` rows, and a fixed allowance for what lives outside torch's
allocator (CUDA context, CUDA graphs, NCCL buffers).
"""

from __future__ import annotations

from .gpus import GiB, GpuSpec
from .shapes import ModelShape

NON_TORCH_BYTES = 1 * GiB  # CUDA context + graphs + NCCL: order of what vLLM logs on H100


class InsufficientMemoryError(ValueError):
    pass


def memory_breakdown(model: ModelShape, gpu: GpuSpec, tp: int, gpu_memory_utilization: float,
                     block_size: int, max_num_batched_tokens: int, max_num_seqs: int) -> dict:
    budget = gpu.memory_bytes * gpu_memory_utilization
    weights = model.weight_bytes(tp)
    hidden_states = max_num_batched_tokens * (
        4 * model.hidden_size + 2 * model.intermediate_size // tp) * model.dtype_bytes
    logits = max_num_seqs * (model.vocab_size // tp) * 4
    activations = hidden_states + logits + NON_TORCH_BYTES
    block_bytes = block_size * model.kv_bytes_per_token(tp)
    kv = budget - weights - activations
    return {
        "gpu_memory_bytes": gpu.memory_bytes,
        "budget_bytes": int(budget),
        "weight_bytes": weights,
        "activation_bytes_estimate": int(activations),
        "kv_cache_bytes": int(max(kv, 0)),
        "block_bytes": block_bytes,
        "num_gpu_blocks": int(max(kv, 0) // block_bytes),
        "kv_cache_tokens": int(max(kv, 0) // block_bytes) * block_size,
        "note": "weights exact from the shape; activation peak estimated, not profiled",
    }


def kv_cache_blocks(model: ModelShape, gpu: GpuSpec, tp: int, gpu_memory_utilization: float,
                    block_size: int, max_num_batched_tokens: int, max_num_seqs: int) -> int:
    m = memory_breakdown(model, gpu, tp, gpu_memory_utilization, block_size,
                         max_num_batched_tokens, max_num_seqs)
    if m["num_gpu_blocks"] < 1:
        raise InsufficientMemoryError(
            f"{model.name} does not fit on one {gpu.name} at tp={tp}: weights "
            f"{m['weight_bytes'] / GiB:.1f} GiB + activations "
            f"{m['activation_bytes_estimate'] / GiB:.1f} GiB exceed the "
            f"{m['budget_bytes'] / GiB:.1f} GiB that gpu_memory_utilization="
            f"{gpu_memory_utilization} allows; use a larger --tp or GPU")
    return m["num_gpu_blocks"]
