"""The two ceilings of the GPU this runs on, as torch reaches them: device-to-device copy
bandwidth (bytes read + written) and a large bf16 matrix product. Prints one JSON object.

    python benchmarks/gpu_ceilings.py > ceilings.json

The fitted profiles state their bandwidths and FLOP rates as fractions of a datasheet;
these figures say what the same GPU gives to plain torch (random data, CUDA events,
median of repeats after warm-up)."""

from __future__ import annotations

import json
import statistics
import sys

import torch


def median_ms(fn, warmup: int = 3, repeats: int = 10) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("gpu_ceilings.py: no CUDA device")
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    out = {"gpu": props.name, "sms": props.multi_processor_count, "torch": torch.__version__,
           "cuda": torch.version.cuda}
    # 4 GiB copied: far beyond the L2, so HBM alone.
    src = torch.randn(1 << 30, device=dev)
    dst = torch.empty_like(src)
    ms = median_ms(lambda src=src, dst=dst: dst.copy_(src))
    out["copy_bytes_read_plus_written"] = 2 * src.numel() * 4
    out["copy_ms"] = ms
    out["copy_bandwidth_Bps"] = 2 * src.numel() * 4 / (ms / 1e3)
    del src, dst
    gemm = {}
    for n in (4096, 8192, 16384):
        a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        ms = median_ms(lambda a=a, b=b: a @ b)
        gemm[str(n)] = {"ms": ms, "flops_per_s": 2 * n**3 / (ms / 1e3)}
        del a, b
    out["bf16_gemm"] = gemm
    # Decode-like GEMMs: a Qwen3-8B MLP's up/gate weight (4096 x 24576, 201 MB) times a few
    # token rows: how fast weights stream when the product is memory-bound.
    w = torch.randn(24576, 4096, device=dev, dtype=torch.bfloat16)
    stream = {}
    for rows in (1, 16, 64, 256):
        x = torch.randn(rows, 4096, device=dev, dtype=torch.bfloat16)
        ms = median_ms(lambda x=x: x @ w.t())
        stream[str(rows)] = {"ms": ms, "weight_Bps": w.numel() * 2 / (ms / 1e3)}
    out["weight_streaming"] = stream
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
