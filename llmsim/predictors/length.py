"""The floor: rank by prompt length alone (longer prompt, longer answer). Needs no text,
no training, and is what any learned predictor must beat to be worth its latency."""

from __future__ import annotations

import numpy as np


class PromptLengthPredictor:
    kind = "length"

    def score(self, texts, prompt_tokens, progress=None) -> np.ndarray:
        out = np.asarray(prompt_tokens, dtype=np.float64)
        if progress:
            progress(len(out))
        return out
