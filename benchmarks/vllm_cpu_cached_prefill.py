"""What a cached prefix saves a live server's first token: one request at a time against a
server with prefix caching on, TTFT of a fresh long prompt (SYSTEM + USER words; it fills
the cache), the same SYSTEM words with new USER words (the SYSTEM blocks cached), and a
fresh USER-word prompt, ROUNDS times each (a new SYSTEM every round).

    python benchmarks/vllm_cpu_cached_prefill.py --endpoint http://127.0.0.1:8321 \
        --out llmsim-out/validate-vllm-cpu-prefix/cached-prefill.json

Used by benchmarks/validate_vllm_cpu_prefix.sh: llmsim prices a prefill by its new tokens
(and the cached KV it reads), the server also by what it does with the whole prompt.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmsim.integrations.replay import WORDS  # noqa: E402


def main() -> None:
    import httpx

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--model", default="tiny-llama")
    ap.add_argument("--system", type=int, default=2048, help="words of the cached prefix")
    ap.add_argument("--user", type=int, default=100, help="words after it")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    url = f"{args.endpoint.rstrip('/')}/v1/completions"
    rng = np.random.default_rng(args.seed)

    def words(n: int) -> str:
        return " ".join(WORDS[j] for j in rng.integers(0, len(WORDS), n))

    def ttft(client, prompt: str) -> float:
        body = {"model": args.model, "prompt": prompt, "max_tokens": 1, "min_tokens": 1,
                "ignore_eos": True, "temperature": 0, "stream": True}
        sent = time.perf_counter()
        with client.stream("POST", url, json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    return time.perf_counter() - sent
        raise RuntimeError("no token came back")

    kinds = {f"fresh {args.system}+{args.user}": [], f"cached {args.system}+{args.user} new": [],
             f"fresh {args.user}": []}
    with httpx.Client(timeout=60) as client:
        ttft(client, words(16))  # warm-up
        for _ in range(args.rounds):
            system = words(args.system)
            for kind, prompt in zip(kinds, (system + " " + words(args.user),
                                            system + " " + words(args.user), words(args.user)),
                                    strict=True):
                kinds[kind].append(ttft(client, prompt))
    for kind, times in kinds.items():
        print(f"{kind:>24}: TTFT median {1e3 * np.median(times):6.1f} ms "
              f"(min {1e3 * min(times):.1f}, max {1e3 * max(times):.1f})")
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "ttft_s": kinds}, indent=1)
                        + "\n")


if __name__ == "__main__":
    main()
