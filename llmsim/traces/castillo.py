"""CASTILLO (DanielFPerez/castillo_code, arXiv 2505.16881): prompts with the real output
lengths of 13 open LLMs, 10 generations per (prompt, model).

Two JSON-lines files, joined on `prompt_id`:
- `castillo_prompts.jsonl`: `{prompt_id, dataset, split, category, prompt_text}`;
- `castillo_output_lengths.jsonl`: one line per (prompt, model) with `model`, `split`,
  `input_size` (chat-templated prompt tokens, that model's tokenizer) and
  `output_sizes` (the 10 generations' lengths, same tokenizer), among other fields.

`load_castillo_pool(path, model=..., split=...)` gives a `PromptPool` of one row per
(prompt, model) kept: prompt_id, text, input_size and the output_sizes matrix.
- `path`: the folder holding both files, or either file (the other is looked for beside
  it; the prompts file is optional: without it the pool has no texts).
- `model`: the full name (`meta-llama--Llama-3.1-8B-Instruct`) or the part after `--`,
  any case; None keeps every model (a row per prompt and model).
- `split`: `train`, `validate` or `test`, matched on the length row's `split` (the
  published files put 43 length rows in another split than their prompt's); None keeps all.
- The published lengths file has 42 (prompt, model) pairs twice, in two splits (ShareGPT
  and DS-1000 prompts; the same or new generations); with `split=None` the first line of
  each pair is kept and `meta["duplicates_dropped"]` counts the others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import TraceError
from .pool import PromptPool
from .readers import read_jsonl
from .rows import RowChecker
from .workload import Workload

PROMPTS = "castillo_prompts.jsonl"
LENGTHS = "castillo_output_lengths.jsonl"
LENGTH_FIELDS = ("prompt_id", "model", "split", "input_size", "output_sizes")


def load_castillo(path: str | Path, model: str | None = None, split: str | None = None,
                  sample: int = 0) -> Workload:
    """The pool as a workload of one request per row, output = generation `sample`, no
    arrival times (see `PromptPool.as_workload`)."""
    pool = load_castillo_pool(path, model, split)
    w = pool.as_workload(sample)
    meta = {**w.meta, "format": "castillo", "path": str(path)}
    return Workload(w.arrival, w.prompt_tokens, w.output_tokens, w.prompt_id, w.prompt_text,
                    w.model, None, f"{w.source}; no arrival times in the file: all set to 0",
                    meta)


def load_castillo_pool(path: str | Path, model: str | None = None,
                       split: str | None = None) -> PromptPool:
    prompts_path, lengths_path = castillo_files(Path(path))
    cols = read_jsonl(lengths_path, LENGTH_FIELDS, ("dataset",))
    check = RowChecker(lengths_path, cols.lines)
    v = cols.values
    for name in ("prompt_id", "model", "split"):
        _check_text(check, name, v[name])
    input_size = check.counts("input_size", v["input_size"])
    sizes = _output_sizes(check, v["output_sizes"])
    check.done()

    ids = np.array(v["prompt_id"], dtype=object)
    models = np.array(v["model"], dtype=object)
    splits = np.array(v["split"], dtype=object)
    keep = np.ones(len(ids), dtype=bool)
    if model is not None:
        model = _match_model(lengths_path, model, sorted(set(v["model"])))
        keep &= models == model
    if split is not None:
        known = sorted(set(v["split"]))
        if split not in known:
            raise TraceError(f"{lengths_path}: no split {split!r}; splits: {', '.join(known)}")
        keep &= splits == split
    rows = np.flatnonzero(keep)
    rows, dropped = _first_of_each(rows, ids, models)
    if not len(rows):
        raise TraceError(f"{lengths_path}: no rows for model {model!r} and split {split!r}")

    text = None
    if prompts_path is not None:
        texts = _prompt_texts(prompts_path)
        missing = [i for i in rows if ids[i] not in texts]
        if missing:
            i = missing[0]
            raise TraceError(f"{lengths_path}, line {cols.lines[i]}: field 'prompt_id' "
                             f"{ids[i]!r} is not in {prompts_path.name}")
        text = np.array([texts[ids[i]] for i in rows], dtype=object)
    dataset = np.array(v["dataset"], dtype=object)[rows] if "dataset" in v else None
    what = ", ".join(f"{k} {x}" for k, x in (("model", model), ("split", split)) if x)
    source = (f"CASTILLO {lengths_path.parent} ({what or 'all models and splits'}; "
              f"{len(rows)} {'prompts' if model else '(prompt, model) rows'} x "
              f"{sizes.shape[1]} output lengths"
              + ("" if text is not None else "; no prompt texts") + ")")
    return PromptPool(ids[rows], input_size[rows], sizes[rows], text=text, model=models[rows],
                      dataset=dataset, source=source,
                      meta={"format": "castillo", "model": model, "split": split,
                            "duplicates_dropped": dropped})


def castillo_files(path: Path) -> tuple[Path | None, Path]:
    """(prompts file or None, lengths file) for a folder or either file."""
    if path.is_dir():
        folder, lengths = path, path / LENGTHS
    elif path.is_file():
        folder = path.parent
        lengths = folder / LENGTHS if path.name == PROMPTS else path
    else:
        raise FileNotFoundError(f"{path}: no such trace file or folder")
    if not lengths.is_file():
        raise TraceError(f"{path}: CASTILLO needs {LENGTHS} (looked in {folder})")
    prompts = path if path.name == PROMPTS else folder / PROMPTS
    return (prompts if prompts.is_file() else None), lengths


def _prompt_texts(path: Path) -> dict:
    cols = read_jsonl(path, ("prompt_id", "prompt_text"))
    check = RowChecker(path, cols.lines)
    _check_text(check, "prompt_id", cols.values["prompt_id"])
    for i, t in enumerate(cols.values["prompt_text"]):
        if not isinstance(t, str):
            check.problem(i, "missing field 'prompt_text'" if t is None
                          else "field 'prompt_text' is not text")
            break
    check.done()
    return dict(zip(cols.values["prompt_id"], cols.values["prompt_text"], strict=True))


def _check_text(check: RowChecker, name: str, values: list) -> None:
    for i, x in enumerate(values):
        if not isinstance(x, str) or not x:
            check.problem(i, f"missing field {name!r}" if x is None or x == ""
                          else f"field {name!r} is not text: {x!r}")
            return


def _output_sizes(check: RowChecker, values: list) -> np.ndarray:
    """(rows, samples) int64; every row a list of the same number of whole lengths >= 1."""
    width = len(values[0]) if values and isinstance(values[0], list) else 0
    try:
        arr = np.array(values, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] == 0:
            raise ValueError
    except (TypeError, ValueError):
        for i, x in enumerate(values):
            if x is None:
                check.problem(i, "missing field 'output_sizes'")
                break
            if not isinstance(x, list) or not x or len(x) != (width or len(x)):
                check.problem(i, f"field 'output_sizes' is not a list of {width or 'some'} "
                                 f"lengths: {str(x)[:60]}")
                break
            if not all(isinstance(y, (int, float)) and not isinstance(y, bool) for y in x):
                check.problem(i, f"field 'output_sizes' holds a value that is not a number: "
                                 f"{str(x)[:60]}")
                break
        return np.ones((len(values), max(width, 1)), dtype=np.int64)
    bad = np.flatnonzero(~(np.isfinite(arr) & (arr == np.floor(arr)) & (arr >= 1)).all(axis=1))
    if len(bad):
        i = int(bad[0])
        check.problem(i, f"field 'output_sizes' must hold whole numbers >= 1, got {values[i]}")
    return np.where(np.isfinite(arr), arr, 1).astype(np.int64)


def _match_model(path: Path, wanted: str, models: list[str]) -> str:
    w = wanted.lower()
    hits = [m for m in models if m.lower() == w] or \
           [m for m in models if m.lower().split("--")[-1] == w.split("--")[-1]]
    if len(hits) != 1:
        raise TraceError(f"{path}: {'no' if not hits else 'more than one'} model matches "
                         f"{wanted!r}; models: {', '.join(models)}")
    return hits[0]


def _first_of_each(rows: np.ndarray, ids: np.ndarray, models: np.ndarray):
    """Keep the first row of each (prompt_id, model); returns (rows, number dropped)."""
    seen: set = set()
    kept = []
    for i in rows:
        key = (ids[i], models[i])
        if key not in seen:
            seen.add(key)
            kept.append(i)
    return np.array(kept, dtype=np.int64), len(rows) - len(kept)
