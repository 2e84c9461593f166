"""GPU datasheet figures, for the roofline estimate and the KV pool size."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import UnknownNameError

GiB = 1024**3


@dataclass(frozen=True, slots=True)
class GpuSpec:
    name: str
    memory_bytes: int  # as CUDA reports the device's total memory
    peak_flops: float  # dense BF16 tensor-core FLOP/s (no sparsity)
    memory_bandwidth: float  # HBM bytes/s
    interconnect_bandwidth: float  # NVLink bytes/s per GPU, one direction
    source: str

    def to_dict(self) -> dict:
        return asdict(self)


GPUS: dict[str, GpuSpec] = {
    g.name: g for g in (
        GpuSpec("h100", int(79.1 * GiB), 989.4e12, 3.35e12, 450e9,
                "NVIDIA H100 SXM5 80GB datasheet: 989 TFLOPS BF16 dense, 3.35 TB/s HBM3, "
                "NVLink 900 GB/s bidirectional"),
        GpuSpec("h200", int(139.8 * GiB), 989.4e12, 4.8e12, 450e9,
                "NVIDIA H200 SXM 141GB datasheet: 989 TFLOPS BF16 dense, 4.8 TB/s HBM3e, "
                "NVLink 900 GB/s bidirectional"),
        GpuSpec("b200", int(179.0 * GiB), 2.25e15, 8.0e12, 900e9,
                "NVIDIA HGX B200 180GB datasheet: 2.25 PFLOPS BF16 dense (4.5 with sparsity), "
                "8 TB/s HBM3e, NVLink 5 1.8 TB/s bidirectional; memory as CUDA reports it "
                "(about 179 GiB)"),
        GpuSpec("a100", int(79.2 * GiB), 312e12, 2.039e12, 300e9,
                "NVIDIA A100 SXM4 80GB datasheet: 312 TFLOPS BF16 dense, 2.039 TB/s HBM2e, "
                "NVLink 600 GB/s bidirectional"),
    )
}


class UnknownGpuError(UnknownNameError):
    pass


def get_gpu(name: str) -> GpuSpec:
    try:
        return GPUS[name.lower()]
    except KeyError:
        raise UnknownGpuError(f"unknown GPU {name!r}; known GPUs: {', '.join(GPUS)}") from None
