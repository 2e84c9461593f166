"""ShareGPT-format JSON: a list of `{"conversations": [{"from": ..., "value": ...}, ...]}`.

Read the way vLLM's benchmark reads it: conversations with fewer than two turns are
skipped (counted in `meta["skipped_short"]`); the first turn is the prompt and the second
the output, whoever the speakers are. No arrival times (arrival 0 for all,
`meta["has_arrivals"] = False`).

Token counts: the file has text, not tokens, and llmsim ships no tokenizer, so both lengths
are the labelled approximation of `tokens.py` (ceil(characters / 4), >= 1), said in the
source and `meta["token_counts"]`. Where an entry carries real counts they are used
instead: `prompt_len`/`output_len` (or `input_length`/`output_length`) at the entry's top
level, all or none of the entries. Unlike vLLM, no length filter is applied.

Errors name the line where the bad entry starts (the file is parsed entry by entry, never
whole, so a 600 MB ShareGPT dump costs little more than its text).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from .assemble import assemble
from .errors import TraceError
from .rows import RowChecker
from .tokens import APPROXIMATION, approx_tokens
from .workload import Workload

_SPACE = re.compile(r"\s*")
_LENGTH_KEYS = (("prompt_len", "output_len"), ("input_length", "output_length"))


def load_sharegpt(path: str | Path) -> Workload:
    path = Path(path)
    prompts, outputs, lines, lengths = [], [], [], []
    skipped = 0
    keys = None
    for line, entry in _entries(path):
        if not isinstance(entry, dict):
            raise TraceError(f"{path}, line {line}: expected an object with 'conversations', "
                             f"got {type(entry).__name__}")
        turns = entry.get("conversations")
        if not isinstance(turns, list):
            raise TraceError(f"{path}, line {line}: missing field 'conversations'"
                             if turns is None else
                             f"{path}, line {line}: field 'conversations' is not a list")
        if keys is None:
            keys = next((k for k in _LENGTH_KEYS if k[0] in entry and k[1] in entry), ())
        if len(turns) < 2:
            skipped += 1
            continue
        texts = []
        for turn in turns[:2]:
            value = turn.get("value") if isinstance(turn, dict) else None
            if not isinstance(value, str):
                what = "missing field" if value is None else "not text: field"
                raise TraceError(f"{path}, line {line}: {what} 'conversations[].value'")
            texts.append(value)
        prompts.append(texts[0])
        outputs.append(texts[1])
        lines.append(line)
        if keys:
            lengths.append((entry.get(keys[0]), entry.get(keys[1])))
    n = len(prompts)
    if keys and n:
        check = RowChecker(path, np.array(lines))
        prompt = check.counts(keys[0], [p for p, _ in lengths])
        output = check.counts(keys[1], [o for _, o in lengths])
        check.done()
        counts = f"from the file's {keys[0]}/{keys[1]}"
    else:
        prompt, output = approx_tokens(prompts), approx_tokens(outputs)
        counts = APPROXIMATION
    meta = {"token_counts": counts, "skipped_short": skipped}
    notes = [f"token counts {counts}"]
    if skipped:
        notes.append(f"{skipped} conversations with fewer than 2 turns skipped")
    return assemble(path, "sharegpt", np.zeros(n), prompt, output, has_arrivals=False,
                    notes=tuple(notes), meta=meta, prompt_text=np.array(prompts, dtype=object))


def _entries(path: Path):
    """(line, entry) for each element of the top-level JSON array, parsed one at a time."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise TraceError(f"{path}: not UTF-8 text ({e.reason})") from None
    decoder = json.JSONDecoder()
    i = _SPACE.match(text).end()
    if text[i:i + 1] != "[":
        raise TraceError(f"{path}, line {text.count(chr(10), 0, i) + 1}: expected a JSON list "
                         f"of conversations")
    i = _SPACE.match(text, i + 1).end()
    line, counted = 1, 0
    if text[i:i + 1] == "]":
        return
    while True:
        line += text.count("\n", counted, i)
        counted = i
        try:
            entry, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise TraceError(f"{path}, line {e.lineno}: not valid JSON ({e.msg}, column "
                             f"{e.colno})") from None
        yield line, entry
        i = _SPACE.match(text, i).end()
        if text[i:i + 1] == ",":
            i = _SPACE.match(text, i + 1).end()
        elif text[i:i + 1] == "]":
            return
        else:
            raise TraceError(f"{path}, line {text.count(chr(10), 0, i) + 1}: expected ',' or "
                             f"']' after an entry")
