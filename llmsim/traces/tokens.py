"""Token counts for formats that carry text but no lengths (ShareGPT, {prompt, output_len}).

llmsim does not ship a tokenizer (it would tie the package to one model's vocabulary and a
heavy dependency), so it uses a labelled approximation: ceil(characters / 4), at least 1 --
OpenAI's rule of thumb for English text with BPE tokenizers. It is close on average for
English prose (typically within ~20% of Llama/GPT tokenizers) and worse for code, non-Latin
scripts and whitespace-heavy text. Every workload counted this way says so in its `source`
and `meta["token_counts"]`; where a file carries real counts, loaders use those instead.
"""

from __future__ import annotations

import numpy as np

CHARS_PER_TOKEN = 4
APPROXIMATION = "approximate: ceil(characters / 4), at least 1 (no tokenizer)"


def approx_tokens(texts) -> np.ndarray:
    """int64 approximate token count of each text (>= 1, an empty text counts 1); an int
    array is taken as the texts' lengths in characters."""
    if isinstance(texts, np.ndarray) and texts.dtype.kind in "iu":
        chars = texts.astype(np.int64)
    else:
        chars = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    return np.maximum(1, -(-chars // CHARS_PER_TOKEN))
