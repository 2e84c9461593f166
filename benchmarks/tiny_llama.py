"""Write the tiny random-weight Llama that CI's live vLLM server runs (tests/vllm_live.py):
a 2-layer Llama, hidden 64, 2 heads of 64 (vLLM's CPU attention needs heads of 32 and up),
and a word-level tokenizer that knows the words of `llmsim replay`'s synthetic prompts, so
a replayed prompt of N words is N tokens. Nothing is downloaded.

    python benchmarks/tiny_llama.py llmsim-out/tiny-llama
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.vllm_live import build_tiny_llama  # noqa: E402


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/tiny_llama.py OUT_FOLDER")
    out = Path(sys.argv[1])
    if (out / "config.json").exists():
        print(f"{out} already holds a model; kept")
        return
    print(build_tiny_llama(out))


if __name__ == "__main__":
    main()
