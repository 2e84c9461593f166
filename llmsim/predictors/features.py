"""Cheap prompt features for the LightGBM ranker: what a CPU can read off a prompt in
microseconds. Lengths and shape (tokens, characters, words, lines, code fences, digits,
questions), task cues (words that ask for long or short answers), and the words
themselves hashed into buckets (CRC-32, stable across processes, unlike `hash`).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np

CUES = ("write", "explain", "describe", "list", "summarize", "summarise", "essay", "story",
        "code", "function", "implement", "python", "class", "example", "detail", "step",
        "compare", "translate", "rewrite", "brief", "short", "one word", "yes or no",
        "classify", "extract", "answer", "generate", "plan", "article", "poem", "test",
        "return", "fix", "why", "how", "what", "who", "when", "calculate", "sql")
SHAPE = ("prompt_tokens", "chars", "words", "lines", "code_fences", "digit_share",
         "questions", "sentences", "upper_share", "log_prompt_tokens")
HASH_BUCKETS = 256
WORD = re.compile(r"[a-z0-9_']+")


def feature_names() -> list[str]:
    return [*SHAPE, *(f"cue:{c}" for c in CUES), *(f"word#{i}" for i in range(HASH_BUCKETS))]


def prompt_features(texts: Sequence[str], prompt_tokens: np.ndarray) -> np.ndarray:
    """(len(texts), len(feature_names())) float32."""
    out = np.zeros((len(texts), len(SHAPE) + len(CUES) + HASH_BUCKETS), dtype=np.float32)
    out[:, 0] = prompt_tokens
    out[:, 9] = np.log1p(np.asarray(prompt_tokens, dtype=np.float64))
    base = len(SHAPE) + len(CUES)
    for r, text in enumerate(texts):
        low = text.lower()
        words = WORD.findall(low)
        n = max(len(text), 1)
        out[r, 1:9] = (len(text), len(words), text.count("\n") + 1, text.count("```"),
                       sum(ch.isdigit() for ch in text) / n, text.count("?"),
                       text.count(". ") + text.count(".\n") + 1,
                       sum(ch.isupper() for ch in text) / n)
        for c, cue in enumerate(CUES):
            out[r, len(SHAPE) + c] = low.count(cue)
        for w in words:
            out[r, base + zlib.crc32(w.encode()) % HASH_BUCKETS] += 1.0
        if words:
            out[r, base:] /= np.sqrt(len(words))  # counts per sqrt(words): long prompts comparable
    return out
