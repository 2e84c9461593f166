"""Builds llmsim/data/default_workload.csv, the workload llmsim uses when no trace is given.

    python -m llmsim.traces.make_default PATH/TO/AzureLLMInferenceTrace_conv.csv [OUT.csv]

Takes ROWS consecutive requests of the Azure LLM inference conversation trace starting at
row OFFSET (0-based, after the header), with arrival times in seconds from the first of
them, in llmsim's CSV format. Every length is checked to be >= 1 (the Azure loader refuses
a file with a zero or negative length, naming its line, so a bad row cannot slip in; the
2023 conversation trace has none). Writes a temporary file and renames it into place.
Not run at import; provenance in llmsim/data/default_workload.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..files import write_atomic
from .azure import load_azure

OFFSET = 5000  # past the first minutes of the hour
ROWS = 3000
OUT = Path(__file__).resolve().parents[1] / "data" / "default_workload.csv"


def make(src: str | Path, out: str | Path = OUT) -> Path:
    out = Path(out)
    w = load_azure(src).select(slice(OFFSET, OFFSET + ROWS))
    if len(w) != ROWS:
        raise SystemExit(f"{src}: has {OFFSET + len(w)} rows, need {OFFSET + ROWS}")
    assert (w.prompt_tokens >= 1).all() and (w.output_tokens >= 1).all()
    t = w.arrival - w.arrival[0]
    rows = np.column_stack([t, w.prompt_tokens, w.output_tokens])
    write_atomic(out, lambda tmp: np.savetxt(tmp, rows, fmt=["%.6f", "%d", "%d"], delimiter=",",
                                             header="arrival_s,prompt_tokens,output_tokens",
                                             comments=""))
    print(f"wrote {out}: {len(w)} requests over {t[-1]:.1f} s")
    return out


def main(argv: list[str]) -> None:
    if not 1 <= len(argv) <= 2:
        raise SystemExit(__doc__)
    make(*argv)


if __name__ == "__main__":
    main(sys.argv[1:])
