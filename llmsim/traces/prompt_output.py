"""The common `{prompt, output_len}` request list, as JSON lines or CSV.

Each row: `prompt` (the text) and `output_len` (tokens to generate, whole >= 1); optional
`prompt_len` (prompt tokens). Without `prompt_len` the prompt's tokens are the labelled
approximation of `tokens.py` (ceil(characters / 4), >= 1), said in the source and
`meta["token_counts"]`. No arrival times: arrival 0 for all, `meta["has_arrivals"] =
False`. The prompt texts are kept as `prompt_text` (length predictors read them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .assemble import assemble
from .readers import read_csv, read_jsonl
from .rows import RowChecker, is_missing
from .tokens import APPROXIMATION, approx_tokens
from .workload import Workload

FIELDS = ("prompt", "output_len")


def load_prompt_output(path: str | Path) -> Workload:
    path = Path(path)
    csv_file = path.suffix.lower() in (".csv", ".tsv")
    read = read_csv if csv_file else read_jsonl
    cols = read(path, FIELDS, ("prompt_len",))
    v = cols.values
    check = RowChecker(path, cols.lines)
    for i, text in enumerate(v["prompt"]):
        if not isinstance(text, str) or is_missing(text):
            check.problem(i, "missing field 'prompt'" if is_missing(text)
                          else f"field 'prompt' is not text: {str(text)[:40]}")
            break
    output = check.counts("output_len", v["output_len"])
    prompt_len = check.counts("prompt_len", v["prompt_len"]) if "prompt_len" in v else None
    check.done()
    texts = np.array(v["prompt"], dtype=object)
    if prompt_len is None:
        prompt_len, counts = approx_tokens(texts), APPROXIMATION
    else:
        counts = "from the file's prompt_len"
    return assemble(path, "prompt_output", np.zeros(len(texts)), prompt_len, output,
                    has_arrivals=False, notes=(f"prompt token counts {counts}",),
                    meta={"token_counts": counts}, prompt_text=texts)
