"""Traces: real workloads in, `Workload` columns out; arrival processes; synthesis.

    from llmsim.traces import load_trace, load_castillo_pool, synthesize, arrivals
    w = load_trace("AzureLLMInferenceTrace_conv.csv")          # format sniffed
    pool = load_castillo_pool("castillo/", model="Llama-3.1-8B-Instruct", split="test")
    big = synthesize(10_000_000, pool, arrivals.Gamma(rate=50, burstiness=0.5),
                     np.random.default_rng(0))

One concept per module: `loaders` (dispatch), one module per format, `assemble` (the
sorting/duplicates policy), `rows` (checks naming file, line and field), `arrivals`,
`pool`, `synth`, `stats`, `plots`, `cli` (the `llmsim trace` sub-app, not imported here).
"""

from . import arrivals
from .castillo import load_castillo_pool
from .default import default_workload
from .errors import TraceError
from .loaders import FORMATS, load_trace, sniff_format
from .native import write_parquet
from .pool import PromptPool
from .stats import summarize
from .synth import synthesize
from .workload import Workload, WorkloadError

__all__ = ["FORMATS", "PromptPool", "TraceError", "Workload", "WorkloadError", "arrivals",
           "default_workload", "load_castillo_pool", "load_trace", "sniff_format",
           "summarize", "synthesize", "write_parquet"]
