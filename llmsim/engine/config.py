"""Engine settings, named and defaulted as vLLM names them."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class EngineConfig:
    max_num_seqs: int = 256  # vLLM's default running-set size
    max_num_batched_tokens: int = 8192  # token budget per iteration (chunked prefill on)
    block_size: int = 16
    gpu_memory_utilization: float = 0.9
    num_gpu_blocks: int | None = None  # override the pool size derived from memory
    async_scheduling: bool = True  # vLLM overlaps step k+1's CPU work with step k's GPU work
    # (its default since it became stable); the physical cost model prices max(CPU, GPU)
    enable_prefix_caching: bool = True  # vLLM V1's automatic prefix caching, its default

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens", "block_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(
                f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}"
            )
        if self.num_gpu_blocks is not None and self.num_gpu_blocks < 1:
            raise ValueError(f"num_gpu_blocks must be >= 1, got {self.num_gpu_blocks}")

    def to_dict(self) -> dict:
        return asdict(self)
