"""Encode CASTILLO's prompts once into the embedding cache at several MiniLM depths.

One forward pass through the first max(--layers) transformer layers gives the mean-pooled
embedding after each of them (layer 0: the token embeddings), so every depth costs what
the deepest costs. The neural predictors' `layers` option reads these caches.

    OMP_NUM_THREADS=1 python benchmarks/ranker_embed_depths.py --layers 0,1,2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from llmsim.predictors import EmbeddingCache, default_cache_dir
from llmsim.predictors.data import text_key
from llmsim.predictors.encoder import DIM, TextEncoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", default="../shared/data/castillo/castillo_prompts.jsonl")
    ap.add_argument("--layers", default="0,1,2")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    import torch

    depths = sorted({int(x) for x in args.layers.split(",")})
    texts = list(dict.fromkeys(json.loads(line)["prompt_text"]
                               for line in Path(args.prompts).read_text().splitlines()))
    caches = {d: EmbeddingCache(default_cache_dir(), args.max_tokens, d) for d in depths}
    todo = texts
    enc = TextEncoder(args.max_tokens, layers=max(depths))
    sizes = [len(i) for i in enc.tokenizer(todo, truncation=True,
                                           max_length=args.max_tokens)["input_ids"]]
    order = np.argsort(sizes, kind="stable")
    out = {d: np.empty((len(todo), DIM), np.float32) for d in depths}
    started = time.perf_counter()
    with torch.inference_mode():
        for k, lo in enumerate(range(0, len(order), args.batch)):
            rows = order[lo:lo + args.batch]
            batch = enc.tokenize([todo[i] for i in rows])
            hidden = enc.model(**batch, output_hidden_states=True).hidden_states
            mask = batch["attention_mask"].unsqueeze(-1).float()
            for d in depths:
                pooled = (hidden[d] * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                out[d][rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
            if k % 20 == 0:
                print(f"{lo + len(rows)}/{len(todo)} prompts, "
                      f"{time.perf_counter() - started:.0f} s",
                      flush=True)
    keys = [text_key(t) for t in todo]
    for d in depths:
        caches[d].save(keys, out[d])
    print(f"{len(todo)} prompts at depths {depths} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
