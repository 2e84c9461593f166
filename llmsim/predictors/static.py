"""The scoring path that must be cheap: one new prompt at a time, in NumPy.

A scheduler scores each request as it arrives, on the CPU, within a few milliseconds.
At that size torch's per-operation overhead is most of the cost, so predictors whose
encoder is MiniLM's token-embedding layer alone (`layers=0`) score through this module:

- `StaticEncoder`: the same function as `TextEncoder(layers=0)` (token + position +
  segment embeddings, LayerNorm, mean over the prompt's tokens, L2 norm), computed from
  the model's own weights with the `tokenizers` backend and NumPy;
- `HeadStack`: the ensemble's heads (Linear, exact GELU, Linear) stacked into two batched
  matrix products.

Both are tested to agree with the torch modules they replace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .encoder import DIM

# First try this many characters per token of the window (MiniLM averages ~4 on CASTILLO).
PREFIX_CHARS_PER_TOKEN = 6


class StaticEncoder:
    """`TextEncoder(max_tokens, layers=0)` without torch at scoring time."""

    def __init__(self, max_tokens: int = 256, torch_encoder=None):
        """From MiniLM's stock weights, or from `torch_encoder` (a `TextEncoder` with
        layers=0 whose embeddings were fine-tuned)."""
        from tokenizers import Tokenizer

        from .encoder import TextEncoder

        torch_encoder = torch_encoder or TextEncoder(max_tokens, layers=0)
        assert torch_encoder.layers == 0, "the static path is the embedding layer alone"
        max_tokens = torch_encoder.max_tokens
        self.layers, self.max_tokens = 0, max_tokens
        # A copy of the fast tokenizer set as `tokenize` calls it: truncated, unpadded.
        self.tokenizer = Tokenizer.from_str(torch_encoder.tokenizer.backend_tokenizer.to_str())
        self.tokenizer.enable_truncation(max_tokens)
        self.tokenizer.no_padding()
        e = torch_encoder.model.embeddings
        self.word = e.word_embeddings.weight.detach().numpy().astype(np.float32)
        self.position = e.position_embeddings.weight.detach().numpy().astype(np.float32)
        self.segment = e.token_type_embeddings.weight.detach().numpy()[0].astype(np.float32)
        self.gamma = e.LayerNorm.weight.detach().numpy().astype(np.float32)
        self.beta = e.LayerNorm.bias.detach().numpy().astype(np.float32)
        self.eps = float(e.LayerNorm.eps)
        self.torch_encoder = torch_encoder  # for training, which back-propagates

    def embed(self, texts: Sequence[str], batch_size: int = 64,
              progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.empty((len(texts), DIM), dtype=np.float32)
        for lo in range(0, len(texts), batch_size):
            chunk = list(texts[lo:lo + batch_size])
            ids = ([e.ids for e in self.tokenizer.encode_batch(chunk)] if len(chunk) > 1
                   else [self.ids(chunk[0])])
            for k, row in enumerate(ids):
                out[lo + k] = self.one(np.asarray(row, dtype=np.int64))
            if progress:
                progress(len(chunk))
        return out

    def ids(self, text: str) -> list[int]:
        """The truncating tokenizer's ids of `text`, without tokenizing all of a long one
        (which costs milliseconds: the tokenizer truncates only after it has read it all).
        BERT's normaliser and pre-tokeniser work within words, so a prefix cut at
        whitespace tokenizes to a prefix of the whole text's tokens; once such a prefix
        overflows the window, the window is the same."""
        cut = PREFIX_CHARS_PER_TOKEN * self.max_tokens
        while cut < len(text):
            space = max(text.rfind(" ", 0, cut), text.rfind("\n", 0, cut))
            if space > 0:
                enc = self.tokenizer.encode(text[:space])
                if enc.overflowing:
                    return enc.ids
            cut *= 2
        return self.tokenizer.encode(text).ids

    def one(self, ids: np.ndarray) -> np.ndarray:
        h = self.word[ids] + self.position[:len(ids)] + self.segment
        mu = h.mean(axis=1, keepdims=True)
        var = ((h - mu) ** 2).mean(axis=1, keepdims=True)
        h = (h - mu) / np.sqrt(var + self.eps) * self.gamma + self.beta
        pooled = h.mean(axis=0)
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)

    # Training and fine-tuning go through the torch module.
    def forward(self, texts: Sequence[str]):
        return self.torch_encoder.forward(texts)

    @property
    def model(self):
        return self.torch_encoder.model


class HeadStack:
    """The members' heads as stacked arrays: scores for rows of inputs in two products."""

    def __init__(self, heads: list):
        first = [h[0] for h in heads]
        last = [h[3] for h in heads]
        # float32 as the torch heads compute (and twice as fast as float64 here)
        self.w1 = np.ascontiguousarray(np.stack([m.weight.detach().numpy().T for m in first]))
        self.b1 = np.stack([m.bias.detach().numpy() for m in first])[:, None, :]
        self.w2 = np.ascontiguousarray(np.stack([m.weight.detach().numpy().T for m in last]))
        self.b2 = np.stack([m.bias.detach().numpy() for m in last])[:, None, :]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(members, rows, outputs)."""
        from scipy.special import erf

        h = np.asarray(x, dtype=np.float32)[None] @ self.w1 + self.b1
        h = 0.5 * h * (1.0 + erf(h * np.float32(1 / np.sqrt(2.0))))  # exact GELU (torch's)
        return (h @ self.w2 + self.b2).astype(np.float64)
