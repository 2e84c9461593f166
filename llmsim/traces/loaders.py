"""`load_trace`: any supported trace file in, a `Workload` out.

The format is told from the file (a folder or Parquet magic bytes, the first character of
JSON, the keys of the first JSON line, or the CSV header) or named with `format=`. Options
a format takes (`model=`, `split=` for CASTILLO, `sec_multiplier=` for timed_trace, ...)
pass through. Each format's module documents its fields; the policies every loader shares
(sorting, duplicate times, files without arrival times) are in `assemble.py`. Errors are
`TraceError`s naming the file, line and field; paths are the user's, never assumed.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from .azure import FIELDS as AZURE_FIELDS
from .azure import load_azure
from .castillo import LENGTHS as CASTILLO_LENGTHS
from .castillo import load_castillo
from .errors import TraceError
from .native import FIELDS as LLMSIM_FIELDS
from .native import load_llmsim_csv, load_parquet
from .prompt_output import FIELDS as PROMPT_OUTPUT_FIELDS
from .prompt_output import load_prompt_output
from .readers import csv_header
from .sharegpt import load_sharegpt
from .timed_jsonl import FIELDS as TIMED_FIELDS
from .timed_jsonl import load_mooncake, load_timed_trace
from .vidur import FIELDS as VIDUR_FIELDS
from .vidur import LENGTHS as VIDUR_LENGTHS
from .vidur import load_vidur, load_vidur_stats
from .workload import Workload

__all__ = ["FORMATS", "TraceError", "load_trace", "sniff_format"]

# name -> (loader, what it reads); the order is the order of the listing in errors
FORMATS = {
    "llmsim": (load_llmsim_csv, "CSV arrival_s,prompt_tokens,output_tokens[,prompt_id,model,"
                                "tenant,prompt_text]"),
    "parquet": (load_parquet, "llmsim Parquet (written by `llmsim trace convert`)"),
    "azure": (load_azure, "Azure LLM inference CSV TIMESTAMP,ContextTokens,GeneratedTokens"),
    "mooncake": (load_mooncake, "Mooncake JSONL timestamp (ms),input_length,output_length,"
                                "hash_ids"),
    "timed_trace": (load_timed_trace, "vLLM timed_trace JSONL timestamp (s),input_length,"
                                      "output_length"),
    "vidur": (load_vidur, "Vidur CSV arrived_at,num_prefill_tokens,num_decode_tokens"),
    "vidur_stats": (load_vidur_stats, "Vidur length CSV num_prefill_tokens,num_decode_tokens "
                                      "(no arrivals)"),
    "castillo": (load_castillo, "CASTILLO folder or JSONL files (prompts + output lengths; "
                                "options model=, split=)"),
    "sharegpt": (load_sharegpt, "ShareGPT JSON list of {conversations:[{from,value},...]}"),
    "prompt_output": (load_prompt_output, "JSONL or CSV of {prompt, output_len}"),
}


def load_trace(path: str | Path, format: str | None = None, **options) -> Workload:
    """Load a trace file (or CASTILLO folder) as a `Workload`; `format` overrides sniffing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such trace file")
    fmt = format or sniff_format(path)
    if fmt not in FORMATS:
        raise TraceError(f"{path}: unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
    loader = FORMATS[fmt][0]
    takes = list(inspect.signature(loader).parameters)[1:]
    extra = [k for k in options if k not in takes]
    if extra:
        raise TraceError(f"{path}: format {fmt} takes no option {extra[0]!r} (it takes: "
                         f"{', '.join(takes) or 'none'})")
    if path.is_dir() and fmt != "castillo":
        raise TraceError(f"{path}: is a folder; only the castillo format reads a folder")
    return loader(path, **options)


def sniff_format(path: Path) -> str:
    """The format name of a file, from its content (and a `.parquet` suffix)."""
    path = Path(path)
    if path.is_dir():
        if (path / CASTILLO_LENGTHS).is_file():
            return "castillo"
        raise TraceError(f"{path}: a folder, but not a CASTILLO one (no {CASTILLO_LENGTHS})")
    with path.open("rb") as f:
        head = f.read(1 << 16)
    if head[:4] == b"PAR1" or path.suffix.lower() in (".parquet", ".pq"):
        return "parquet"
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"[":
        return "sharegpt"
    if start == b"{":
        return _sniff_json_lines(path)
    return _sniff_csv(path)


def _sniff_json_lines(path: Path) -> str:
    with path.open(encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise TraceError(f"{path}, line {number}: not valid JSON ({e.msg}); JSON "
                                     f"traces are one object per line, or a ShareGPT list"
                                     ) from None
                break
    keys = set(record) if isinstance(record, dict) else set()
    if "output_sizes" in keys or {"prompt_id", "prompt_text"} <= keys:
        return "castillo"
    if set(TIMED_FIELDS) <= keys:
        return "mooncake" if "hash_ids" in keys else "timed_trace"
    if set(PROMPT_OUTPUT_FIELDS) <= keys:
        return "prompt_output"
    raise TraceError(f"{path}: cannot tell the format from the keys of line {number}: "
                     f"{sorted(keys)}; {_known()}")


def _sniff_csv(path: Path) -> str:
    header = set(csv_header(path))
    for fmt, fields in (("llmsim", LLMSIM_FIELDS), ("azure", AZURE_FIELDS),
                        ("vidur", VIDUR_FIELDS), ("vidur_stats", VIDUR_LENGTHS),
                        ("prompt_output", PROMPT_OUTPUT_FIELDS)):
        if set(fields) <= header:
            return fmt
    raise TraceError(f"{path}: cannot tell the format from the header {sorted(header)}; "
                     f"{_known()}")


def _known() -> str:
    return "known formats: " + "; ".join(f"{k} ({d})" for k, (_, d) in FORMATS.items())
