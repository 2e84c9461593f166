"""Builds llmsim/data/default_workload.csv, the workload `llmsim run` uses by default.

    python -m llmsim.traces.make_default PATH/TO/AzureLLMInferenceTrace_conv.csv

Takes ROWS consecutive requests of the Azure LLM inference conversation trace starting at
row OFFSET, with arrival times in seconds from the first of them. Not run at import.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .loaders import load_trace

OFFSET = 5000  # past the first minutes of the hour
ROWS = 3000
OUT = Path(__file__).resolve().parents[1] / "data" / "default_workload.csv"


def main(src: str) -> None:
    w = load_trace(src, format="azure")
    w = w.select(slice(OFFSET, OFFSET + ROWS))
    t = w.arrival - w.arrival[0]
    rows = np.column_stack([t, w.prompt_tokens, w.output_tokens])
    tmp = OUT.with_suffix(".tmp")
    np.savetxt(tmp, rows, fmt=["%.6f", "%d", "%d"], delimiter=",",
               header="arrival_s,prompt_tokens,output_tokens", comments="")
    tmp.replace(OUT)
    print(f"wrote {OUT}: {len(w)} requests over {t[-1]:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1])
