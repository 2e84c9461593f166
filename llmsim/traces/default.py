"""The bundled default workload: 3,000 real requests from the Azure conversation trace, so
that llmsim runs out of the box with real lengths and real burstiness and no data to
fetch. Provenance: llmsim/data/default_workload.md; made by `make_default.py`."""

from __future__ import annotations

from dataclasses import replace
from importlib.resources import as_file, files

from .native import load_llmsim_csv
from .workload import Workload

SOURCE = ("bundled sample: 3,000 requests of the Azure LLM inference conversation trace 2023 "
          "(llmsim/data/default_workload.md)")


def default_workload() -> Workload:
    """The bundled sample, read fresh on every call (callers may not share arrays)."""
    with as_file(files("llmsim") / "data" / "default_workload.csv") as path:
        w = load_llmsim_csv(path)
    meta = {**w.meta, "origin": "Azure/AzurePublicDataset@b469a11 "
                                "data/AzureLLMInferenceTrace_conv.csv rows 5000-7999",
            "licence": "CC-BY-4.0"}
    return replace(w, source=SOURCE, meta=meta)
