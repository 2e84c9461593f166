"""A real OpenAI-compatible server for tests: `transformers serve` on a tiny random model.

Nothing is downloaded: the tokenizer is a `tokenizers` WordLevel model over the words
w0..w63 (one token per whitespace-separated word, unknown words -> <unk>), saved as a
PreTrainedTokenizerFast; the model is a 2-layer Llama with random weights whose final
norm is zeroed, so every logit is 0 and greedy decoding always picks id 0, the EOS. Left
alone it stops after one token; it generates N tokens only when the request forces the
length (min_new_tokens suppresses EOS, and the next argmax is id 1, the word "w0"). A test
that gets the lengths it asked for has therefore shown that forcing works.

The server runs in its sequential mode (`model.generate`, one request at a time): its
continuous-batching mode ignores min_new_tokens in transformers 5.23.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REQUIRED = ("torch", "transformers", "tokenizers", "fastapi", "uvicorn", "openai", "accelerate",
            "httpx")


def missing_packages() -> list[str]:
    import importlib.util

    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def build_model(folder: Path, words: list[str] | None = None, *, hidden_size: int = 32,
                heads: int = 4, kv_heads: int = 2, positions: int = 4096,
                split_punctuation: bool = False) -> Path:
    """Write a tiny tokenizer and model to `folder`; returns it. `words` (default w0..w63)
    are the tokenizer's vocabulary, one token each; with `split_punctuation` a run of
    punctuation is a token of its own (`Whitespace`), else only spaces split
    (`WhitespaceSplit`). tests/vllm_live.py builds a wider one from here."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<eos>": 0}
    for word in words or [f"w{i}" for i in range(64)]:
        vocab.setdefault(word, len(vocab))
    vocab["<unk>"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = (pre_tokenizers.Whitespace() if split_punctuation
                         else pre_tokenizers.WhitespaceSplit())
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                            eos_token="<eos>").save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden_size,
                         intermediate_size=2 * hidden_size, num_hidden_layers=2,
                         num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=positions, bos_token_id=None, eos_token_id=0,
                         pad_token_id=None, tie_word_embeddings=False, torch_dtype="float32")
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.norm.weight.zero_()
    model.save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TinyServer:
    """`transformers serve MODEL` in a child process; `url` is its completions endpoint."""

    def __init__(self, model: Path, log: Path, port: int | None = None) -> None:
        self.model = str(model)
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/v1/completions"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.log = open(log, "wb")  # closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "transformers.cli.transformers", "serve", self.model,
             "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu",
             "--dtype", "float32"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {self.process.returncode}; "
                                   f"see {self.log.name}")
            try:
                if httpx.get(f"{self.base}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"transformers serve not up after {timeout_s} s; see {self.log.name}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()
