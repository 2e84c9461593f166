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

Errors name the line where the bad entry starts. The file is parsed entry by entry from a
window of a few MB, never read whole: a 600 MB ShareGPT dump costs the kept prompt texts,
not the file (as one Python string it could take 2.5 GB: one emoji makes every character
4 bytes).
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
CHUNK = 1 << 22  # characters of the file held at a time
_LENGTH_KEYS = (("prompt_len", "output_len"), ("input_length", "output_length"))


def load_sharegpt(path: str | Path) -> Workload:
    path = Path(path)
    prompts, output_chars, lines, lengths = [], [], [], []  # outputs: lengths only, not text
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
        for k, turn in enumerate(turns[:2]):
            value = turn.get("value") if isinstance(turn, dict) else None
            if not isinstance(value, str):
                field = f"'conversations[{k}].value'"
                raise TraceError(f"{path}, line {line}: " + (
                    f"missing field {field}" if value is None else f"field {field} is not text"))
            texts.append(value)
        prompts.append(texts[0])
        output_chars.append(len(texts[1]))
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
        prompt = approx_tokens(prompts)
        output = approx_tokens(np.array(output_chars, dtype=np.int64))
        counts = APPROXIMATION
    meta = {"token_counts": counts, "skipped_short": skipped}
    notes = [f"token counts {counts}"]
    if skipped:
        notes.append(f"{skipped} conversations with fewer than 2 turns skipped")
    return assemble(path, "sharegpt", np.zeros(n), prompt, output, has_arrivals=False,
                    notes=tuple(notes), meta=meta, prompt_text=np.array(prompts, dtype=object))


def _entries(path: Path):
    """(line, entry) for each element of the top-level JSON array, parsed one at a time
    from a window of the file, so memory holds one chunk of text, not the whole file."""
    with path.open(encoding="utf-8-sig") as f:
        w = _Window(path, f, CHUNK)
        if w.peek() != "[":
            raise TraceError(f"{path}, line {w.line}: expected a JSON list of conversations")
        w.advance(w.pos + 1)
        if w.peek() == "]":
            return
        while True:
            line = w.line
            yield line, w.decode()
            mark = w.peek()
            if mark == "]":
                return
            if mark != ",":
                raise TraceError(f"{path}, line {w.line}: expected ',' or ']' after an entry")
            w.advance(w.pos + 1)
            w.peek()


class _Window:
    """The unparsed part of a text file: `text[pos:]`, read a chunk at a time; `line` is
    the 1-based line at `pos`."""

    def __init__(self, path: Path, f, chunk: int):
        self.path, self.f, self.chunk = path, f, chunk
        self.text, self.pos, self.line = "", 0, 1
        self.decoder = json.JSONDecoder()

    def fill(self) -> bool:
        """Append the next chunk (dropping the parsed text); False at the end of the file."""
        try:
            piece = self.f.read(self.chunk)
        except UnicodeDecodeError as e:
            raise TraceError(f"{self.path}, after line {self.line}: not UTF-8 text "
                             f"({e.reason})") from None
        if not piece:
            return False
        self.text = self.text[self.pos:] + piece
        self.pos = 0
        return True

    def advance(self, to: int) -> None:
        self.line += self.text.count("\n", self.pos, to)
        self.pos = to

    def peek(self) -> str:
        """The next character that is not white space ('' at the end of the file)."""
        while True:
            self.advance(_SPACE.match(self.text, self.pos).end())
            if self.pos < len(self.text) or not self.fill():
                return self.text[self.pos:self.pos + 1]

    def decode(self):
        while True:
            try:
                value, end = self.decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as e:
                if self.fill():  # maybe only cut off by the window: read on and retry
                    continue
                line = self.line + self.text.count("\n", self.pos, e.pos)
                raise TraceError(f"{self.path}, line {line}: not valid JSON ({e.msg})") from None
            self.advance(end)
            return value
