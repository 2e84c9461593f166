"""The bundled default workload: 3,000 real requests from the Azure conversation trace.
Provenance: llmsim/data/default_workload.md."""

from __future__ import annotations

from dataclasses import replace
from importlib.resources import as_file, files

from .loaders import load_trace
from .workload import Workload


def default_workload() -> Workload:
    with as_file(files("llmsim") / "data" / "default_workload.csv") as path:
        w = load_trace(path, format="llmsim")
    return replace(w, source="bundled sample: 3,000 requests of the Azure LLM inference "
                             "conversation trace 2023 (llmsim/data/default_workload.md)")
