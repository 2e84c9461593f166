"""Replay a workload against a real OpenAI-compatible server and time every token.

Each request goes to `/v1/completions` at its arrival time (the workload's arrival minus
the first arrival, on the client's monotonic clock), streamed (SSE), with its output length
forced so that the server generates exactly what the trace says:

    max_tokens = output_tokens, plus FORCE_LENGTH[force_length](output_tokens):
      "vllm"          ignore_eos: true, min_tokens: n   (vLLM; also SGLang's ignore_eos)
      "transformers"  generation_config: {"max_new_tokens": n, "min_new_tokens": n}
                      (`transformers serve`: it refuses unknown fields such as ignore_eos;
                      honoured by its sequential mode, not by --continuous-batching in 5.23)
      "none"          max_tokens only (any server; the output may stop early at EOS)
    plus `extra_body`, merged last, for anything else a server takes.

Prompts: the workload's `prompt_text` where a row has one, else a synthetic prompt of
`prompt_tokens` words drawn from common English words, words that large BPE vocabularies
keep as one token with their leading space (about one token per word, not checked against
every tokenizer); drawn at random per request so that no two prompts share a prefix that a
prefix cache could reuse, unless the workload carries prefix-cache block ids
(`meta["hash_ids"]`: Mooncake's traces, `llmsim trace sessions`): then each id stands for
its block's words, drawn from the id alone, so requests that share leading ids share
leading words, the prefix a real server's cache finds (one token per word with the word-level
tokenizer of benchmarks/tiny_llama.py; a BPE tokenizer may merge words across a block's
edge). With a tokenizer, the words are cut to exactly `prompt_tokens` tokens (encoded,
truncated, decoded).

What is measured, per request, as vLLM's `bench serve` measures it: the clock starts when
the request is sent (after any wait for a --max-concurrency slot, which is recorded
separately as its queue time); the first chunk that carries a token is the TTFT; each later
one adds an inter-token latency (ITL); the last one ends the E2E latency; the output length
is the server's `usage.completion_tokens` (asked for with stream_options.include_usage) or,
without usage, the number of token chunks. TPOT = (E2E - TTFT) / (output tokens - 1). A
request fails, with its error text kept, on a connection error, an HTTP status other than
200, an error event in the stream, a stream without tokens, or the timeout; it is never
dropped. `bench_json` writes the run in `bench serve`'s result fields plus an `llmsim`
section that `llmsim validate` reads (the workload, engine settings, policy, priorities).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..engine.request import Request
from ..files import write_json
from ..policies import Policy
from ..traces.workload import Workload
from .vllm_priority import OUTPUT_LEN_FIELD, SCORE_FIELD

FORMAT = "llmsim-replay/1"
PERCENTILES = (50, 90, 99)

# Common words, which large BPE vocabularies keep as one token with their leading space.
WORDS = ("the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be",
         "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but",
         "have", "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her",
         "has", "there", "been", "if", "more", "when", "will", "would", "who", "so", "no",
         "time", "day", "year", "work", "life", "world", "house", "water", "light", "night")


def _force_vllm(n: int) -> dict:
    return {"ignore_eos": True, "min_tokens": n}


def _force_transformers(n: int) -> dict:
    return {"generation_config": json.dumps({"max_new_tokens": n, "min_new_tokens": n})}


def _force_none(n: int) -> dict:
    return {}


FORCE_LENGTH: dict[str, Callable[[int], dict]] = {
    "vllm": _force_vllm, "transformers": _force_transformers, "none": _force_none}


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    """Where and how requests are sent."""

    url: str  # the completions URL, e.g. http://127.0.0.1:8000/v1/completions
    model: str  # the served model name
    force_length: str = "vllm"  # a key of FORCE_LENGTH
    extra_body: dict = field(default_factory=dict)  # merged into every request body, last
    headers: dict = field(default_factory=dict)
    timeout_s: float = 600.0  # per request, from sending to the last token
    max_concurrency: int | None = None  # requests in flight at most; later ones wait
    include_usage: bool = True  # ask for usage (token counts) in the last chunk
    # Tell the server each request's true output length, in vllm_xargs.llmsim_output_len:
    # what the vLLM plug-in's oracle policy (LLMSIM_POLICY=sjf) ranks by.
    send_output_len: bool = False

    def __post_init__(self) -> None:
        if self.force_length not in FORCE_LENGTH:
            raise ValueError(f"force_length must be one of {', '.join(FORCE_LENGTH)}, "
                             f"got {self.force_length!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout must be > 0 s, got {self.timeout_s}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be an http(s) URL, got {self.url!r}")

    def to_dict(self) -> dict:
        # headers may hold credentials: only their names are written with the results
        return {"url": self.url, "model": self.model, "force_length": self.force_length,
                "extra_body": self.extra_body, "headers": sorted(self.headers),
                "timeout_s": self.timeout_s, "max_concurrency": self.max_concurrency,
                "include_usage": self.include_usage, "send_output_len": self.send_output_len}


def completions_url(endpoint: str) -> str:
    """`http://host:8000` -> `http://host:8000/v1/completions`; a URL with a path is kept."""
    from urllib.parse import urlsplit

    path = urlsplit(endpoint).path
    return endpoint.rstrip("/") + "/v1/completions" if path in ("", "/") else endpoint


class RequestResult(NamedTuple):
    """One request as the client saw it; times in seconds."""

    success: bool
    error: str  # "" when it succeeded
    scheduled: float  # when it was due, from the run's start
    start_time: float  # when it was sent, from the run's start (after any concurrency wait)
    queue_time: float  # waiting for a concurrency slot
    ttft: float  # 0.0 when no token came (as vLLM writes it)
    itl: list[float]
    latency: float  # E2E: to the last token; for a failure, until it failed
    output_tokens: int  # usage.completion_tokens, else token chunks received
    prompt_tokens: int  # usage.prompt_tokens, else the workload's count
    text: str


@dataclass(frozen=True, eq=False)
class ReplayRun:
    workload: Workload
    settings: ReplaySettings
    results: list[RequestResult]
    duration: float  # from the first send to the last response
    date: str
    prompt_source: str
    priorities: np.ndarray | None = None


def request_body(settings: ReplaySettings, prompt: str, output_tokens: int,
                 priority: int | None = None) -> dict:
    """The JSON body of one streamed completions request."""
    body = {"model": settings.model, "prompt": prompt, "max_tokens": int(output_tokens),
            "stream": True}
    if settings.include_usage:
        body["stream_options"] = {"include_usage": True}
    body.update(FORCE_LENGTH[settings.force_length](int(output_tokens)))
    xargs = {}
    if priority is not None:
        # and as the score llmsim's vLLM plug-in would otherwise compute itself, so that a
        # server running it keeps the client's order (its priority: the score x its scale)
        body["priority"] = int(priority)
        xargs[SCORE_FIELD] = int(priority)
    if settings.send_output_len:
        xargs[OUTPUT_LEN_FIELD] = int(output_tokens)
    if xargs:
        body["vllm_xargs"] = xargs
    body.update(settings.extra_body)
    return body


def synthetic_prompts(workload: Workload, rng: np.random.Generator, tokenizer=None) -> list[str]:
    """Prompts of about `prompt_tokens` tokens each (exactly, with a tokenizer); rows that
    carry a `prompt_text` keep it; block ids, where the workload has them, set the words of
    the blocks they cover (`block_words`), the rest are drawn per request."""
    texts = workload.prompt_text
    hashes = workload.meta.get("hash_ids")
    salt = int(rng.integers(1 << 32)) if hashes is not None else 0  # the seed's block words
    prompts = []
    for i, n in enumerate(workload.prompt_tokens):
        text = None if texts is None else texts[i]
        if isinstance(text, str) and text:
            prompts.append(text)
            continue
        # a few spare words for the tokenizer to cut: some tokenizers merge or split words
        spare = 8 if tokenizer is not None else 0
        shared = block_words(hashes, i, int(n) + spare, salt) if hashes is not None else []
        own = rng.integers(0, len(WORDS), int(n) + spare - len(shared))
        words = " ".join([*shared, *(WORDS[j] for j in own)])
        if tokenizer is None:
            prompts.append(words)
        else:
            ids = tokenizer.encode(words, add_special_tokens=False)[: int(n)]
            prompts.append(tokenizer.decode(ids))
    return prompts


def block_words(hashes, i: int, count: int, salt: int) -> list[str]:
    """Up to `count` leading words of request i from its block ids: `block_tokens` words
    per id, drawn from (salt, id, its place in the request) alone, so equal leading ids
    give equal leading words whatever request they are in."""
    words: list[str] = []
    for place, block_id in enumerate(hashes.of(i).tolist()):
        if len(words) >= count:
            break
        draw = np.random.default_rng((salt, block_id, place)).integers(
            0, len(WORDS), hashes.block_tokens)
        words.extend(WORDS[j] for j in draw)
    return words[:count]


def describe_prompts(workload: Workload, tokenizer_name: str | None) -> str:
    texts = workload.prompt_text
    with_text = 0 if texts is None else sum(isinstance(t, str) and bool(t) for t in texts)
    synthetic = ("synthetic words cut to the token count by tokenizer " + tokenizer_name
                 if tokenizer_name else "synthetic words, one per prompt token")
    if workload.meta.get("hash_ids") is not None:
        synthetic += ", the words of each block id shared by every prompt that has it"
    if with_text == len(workload):
        return "the workload's prompt texts"
    return synthetic if not with_text else f"{with_text} workload texts, the rest {synthetic}"


def client_priorities(workload: Workload, policy: Policy) -> np.ndarray:
    """vLLM's integer `priority` per request (lower is served first) from the policy's rank
    on arrival: ranks are replaced by their order, so ties stay ties (vLLM then serves them
    by arrival, as llmsim does)."""
    if policy.preemptive or policy.starvation is not None:
        raise ValueError(f"policy {policy.name!r} re-ranks requests while they run (preemptive "
                         "or starvation prevention); a client-side priority is fixed when the "
                         "request is sent")
    ranks = np.array([policy.rank(Request(i, float(a), int(p), int(o)), float(a))
                      for i, (a, p, o) in enumerate(zip(workload.arrival, workload.prompt_tokens,
                                                        workload.output_tokens, strict=True))])
    if not np.all(np.isfinite(ranks)):
        bad = int(np.argmin(np.isfinite(ranks)))
        raise ValueError(f"policy {policy.name!r} gave request {bad} the rank {ranks[bad]}")
    return np.unique(ranks, return_inverse=True)[1].astype(np.int64)


def replay(workload: Workload, settings: ReplaySettings, prompts: Sequence[str] | None = None,
           priorities: Sequence[int] | None = None, prompt_source: str | None = None,
           progress: Callable[[int], None] | None = None, warmup: int = 0) -> ReplayRun:
    """Send every request of `workload` at its arrival time; wait for all; never drops one.
    `prompts` default to `synthetic_prompts` (seed 0); `priorities` (ints, lower first) are
    sent as vLLM's `priority`; `progress(done)` is called as requests end. `warmup`
    requests are sent first, one at a time, and not recorded; if all of them fail the
    endpoint is unusable and `EndpointError` says why."""
    import httpx  # a client-side extra: llmsim's simulator does not need it

    n = len(workload)
    if prompts is None:
        prompts = synthetic_prompts(workload, np.random.default_rng(0))
        prompt_source = prompt_source or describe_prompts(workload, None)
    if len(prompts) != n:
        raise ValueError(f"{len(prompts)} prompts for {n} requests")
    if priorities is not None and len(priorities) != n:
        raise ValueError(f"{len(priorities)} priorities for {n} requests")
    bodies = [request_body(settings, prompts[i], workload.output_tokens[i],
                           None if priorities is None else priorities[i]) for i in range(n)]
    results, duration = asyncio.run(_run(workload, settings, bodies, progress, warmup, httpx))
    return ReplayRun(workload, settings, results, duration, datetime.now().strftime(
        "%Y%m%d-%H%M%S"), prompt_source or "given by the caller",
        None if priorities is None else np.asarray(priorities, dtype=np.int64))


class EndpointError(ConnectionError):
    """The warm-up requests all failed: the endpoint, model name or options are wrong."""


async def _run(workload, settings, bodies, progress, warmup, httpx):
    limit = settings.max_concurrency
    # httpx pools 100 connections by default, which would cap concurrency unannounced
    limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
    timeout = httpx.Timeout(settings.timeout_s)
    async with httpx.AsyncClient(limits=limits, timeout=timeout,
                                 headers=settings.headers) as client:
        send = partial(_send, client, settings.url, settings.timeout_s)
        if warmup:
            await _warm_up(send, bodies[0], warmup)
        gate = asyncio.Semaphore(limit) if limit else nullcontext()
        offsets = workload.arrival - workload.arrival[0] if len(workload) else workload.arrival
        done = [0]
        start = time.perf_counter()
        tasks = []
        for i, body in enumerate(bodies):
            delay = start + offsets[i] - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(
                _send_when_free(send, gate, body, start, float(offsets[i]),
                                int(workload.prompt_tokens[i]), progress, done)))
        results = await asyncio.gather(*tasks)
        return list(results), time.perf_counter() - start


async def _warm_up(send, body, count: int) -> None:
    probe = {**body, "max_tokens": 2, **({"min_tokens": 2} if "min_tokens" in body else {})}
    if "generation_config" in probe:
        probe.update(_force_transformers(2))
    errors = []
    for _ in range(count):
        result = await send(probe, 0.0, 0.0, 0, time.perf_counter(), 0)
        if result.success:
            return
        errors.append(result.error)
    raise EndpointError(f"{count} warm-up request(s) failed; last error: {errors[-1]}")


async def _send_when_free(send, gate, body, start, scheduled, prompt_tokens, progress, done):
    due = time.perf_counter()
    async with gate:
        sent = time.perf_counter()
        result = await send(body, sent - start, scheduled, prompt_tokens, sent, sent - due)
    done[0] += 1
    if progress is not None:
        progress(done[0])
    return result


async def _send(client, url, timeout_s, body, start_time, scheduled, prompt_tokens, sent,
                queue_time) -> RequestResult:
    stream = _Stream(sent)
    try:
        await asyncio.wait_for(stream.read(client, url, body), timeout_s)
    except asyncio.TimeoutError:
        stream.fail(f"timeout: no complete response within {timeout_s:g} s "
                    f"({len(stream.token_times)} token chunks received)")
    except Exception as e:  # connection refused, reset, bad JSON: recorded, never raised
        stream.fail(f"{type(e).__name__}: {e}".rstrip(": "))
    return stream.result(start_time, scheduled, prompt_tokens, queue_time)


class _Stream:
    """The chunks of one streamed response, timed as they arrive."""

    def __init__(self, sent: float) -> None:
        self.sent = sent
        self.token_times: list[float] = []
        self.text: list[str] = []
        self.usage: dict = {}
        self.error = ""
        self.failed_at = math.nan

    def fail(self, error: str) -> None:
        if not self.error:
            self.error, self.failed_at = error, time.perf_counter()

    async def read(self, client, url: str, body: dict) -> None:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                detail = (await response.aread()).decode("utf-8", "replace").strip()
                self.fail(f"HTTP {response.status_code}: {detail[:500]}")
                return
            async for line in response.aiter_lines():
                self.feed(line, time.perf_counter())
                if self.error:
                    return

    def feed(self, line: str, now: float) -> None:
        # SSE: "data: ..." carries an event; blank lines separate events; ":" lines are pings
        if not line.startswith("data:"):
            return
        data = line[5:].strip()
        if not data or data == "[DONE]":
            return
        chunk = json.loads(data)
        if "error" in chunk or chunk.get("object") == "error":
            self.fail(f"server error: {json.dumps(chunk.get('error', chunk))[:500]}")
            return
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        choices = chunk.get("choices") or []
        if not choices:
            return
        text = choices[0].get("text") or ""
        # A closing chunk without text (finish_reason set) carries no token, unless nothing
        # came before it: then it is the response to a one-token request.
        if text or choices[0].get("finish_reason") is None or not self.token_times:
            self.token_times.append(now)
        self.text.append(text)

    def result(self, start_time: float, scheduled: float, prompt_tokens: int,
               queue_time: float) -> RequestResult:
        times = self.token_times
        if not self.error and not times:
            self.fail("the stream ended without a token")
        ttft = times[0] - self.sent if times else 0.0
        itl = np.diff(times).tolist() if len(times) > 1 else []
        end = times[-1] if times and not self.error else self.failed_at
        tokens = self.usage.get("completion_tokens")
        return RequestResult(
            success=not self.error, error=self.error, scheduled=scheduled,
            start_time=start_time, queue_time=queue_time, ttft=ttft, itl=itl,
            latency=end - self.sent,
            output_tokens=int(tokens) if tokens is not None else len(times),
            prompt_tokens=int(self.usage.get("prompt_tokens") or prompt_tokens),
            text="".join(self.text))


def _hash_ids_doc(hashes) -> dict:
    """The workload's block ids, for `llmsim validate` to simulate a prefix cache."""
    if hashes is None:
        return {}
    return {"hash_ids": {"block_tokens": hashes.block_tokens,
                         "covers_output": hashes.covers_output,
                         "offsets": hashes.offsets.tolist(), "ids": hashes.ids.tolist()}}


def bench_json(run: ReplayRun, llmsim_meta: dict | None = None,
               save_texts: bool = False) -> dict:
    """The run in `vllm bench serve`'s result vocabulary (its `--save-result
    --save-detailed` fields), with failed requests counted in `failed`, listed with their
    error in `errors` and output length 0, and left out of every statistic; plus an `llmsim`
    section: the workload as replayed, the settings, and whatever `llmsim_meta` adds."""
    results, w = run.results, run.workload
    ok = [r for r in results if r.success]
    output_lens = [r.output_tokens if r.success else 0 for r in results]
    total_in = sum(r.prompt_tokens for r in ok)
    total_out = sum(output_lens)
    dur = run.duration
    # (n - 1) gaps over the span, as llmsim.traces.arrivals.scale_to_rate counts a rate
    offered = (len(w) - 1) / w.duration if w.duration > 0 else "inf"
    doc = {
        "date": run.date, "endpoint_type": "openai", "backend": "openai",
        "label": "llmsim-replay", "model_id": run.settings.model,
        "tokenizer_id": (llmsim_meta or {}).get("tokenizer"), "num_prompts": len(results),
        "request_rate": offered, "burstiness": None,
        "max_concurrency": run.settings.max_concurrency,
        "duration": dur, "completed": len(ok), "failed": len(results) - len(ok),
        "total_input_tokens": total_in, "total_output_tokens": total_out,
        "request_throughput": len(ok) / dur if dur > 0 else math.nan,
        "request_goodput": None,
        "output_throughput": total_out / dur if dur > 0 else math.nan,
        "total_token_throughput": (total_in + total_out) / dur if dur > 0 else math.nan,
        "input_lens": [r.prompt_tokens for r in results], "output_lens": output_lens,
        "ttfts": [r.ttft for r in results], "itls": [r.itl for r in results],
        "latencies": [r.latency for r in results],
        "start_times": [r.start_time for r in results],
        "queue_times": [r.queue_time for r in results],
        "errors": [r.error for r in results],
    }
    if save_texts:
        doc["generated_texts"] = [r.text for r in results]
    doc.update(_peaks(ok))
    tpots = [(r.latency - r.ttft) / (r.output_tokens - 1) for r in ok if r.output_tokens > 1]
    for name, values in (("ttft", [r.ttft for r in ok]), ("tpot", tpots),
                         ("itl", [x for r in ok for x in r.itl]),
                         ("e2el", [r.latency for r in ok])):
        doc.update(_stats_ms(name, values))
    scheduled = np.array([r.scheduled for r in results])
    sent = np.array([r.start_time for r in results])
    doc["llmsim"] = {
        "format": FORMAT,
        "settings": run.settings.to_dict(),
        "prompts": run.prompt_source,
        "priorities": None if run.priorities is None else run.priorities.tolist(),
        "workload": {"source": w.source, "requests": len(w),
                     "arrival": scheduled.tolist(),
                     "prompt_tokens": w.prompt_tokens.tolist(),
                     "output_tokens": w.output_tokens.tolist(),
                     **_hash_ids_doc(w.meta.get("hash_ids"))},
        "short_outputs": sum(r.success and r.output_tokens != o
                             for r, o in zip(results, w.output_tokens, strict=True)),
        "max_send_lag_s": float(np.max(sent - scheduled - [r.queue_time for r in results]))
        if len(results) else 0.0,
        **(llmsim_meta or {}),
    }
    return doc


def _stats_ms(name: str, seconds: list[float]) -> dict:
    """mean/median/std/pNN in ms, as `bench serve` names them; null when there are none."""
    if not seconds:
        return {f"{k}_{name}_ms": None for k in ("mean", "median", "std",
                                                 *(f"p{p}" for p in PERCENTILES))}
    ms = np.asarray(seconds) * 1e3
    out = {f"mean_{name}_ms": float(ms.mean()), f"median_{name}_ms": float(np.median(ms)),
           f"std_{name}_ms": float(ms.std())}
    for p, v in zip(PERCENTILES, np.percentile(ms, PERCENTILES), strict=True):
        out[f"p{p}_{name}_ms"] = float(v)
    return out


def _peaks(ok: list[RequestResult]) -> dict:
    """`bench serve`'s peak output tokens in any one-second bucket and peak requests in
    flight (successful requests only)."""
    if not ok:
        return {"max_output_tokens_per_s": 0.0, "max_concurrent_requests": 0}
    first = min(r.start_time for r in ok)
    token_times = np.concatenate([r.start_time + r.ttft + np.concatenate(([0.0], np.cumsum(r.itl)))
                                  for r in ok])
    per_second = np.bincount((token_times - first).astype(np.int64))
    events = sorted([(r.start_time, 1) for r in ok] + [(r.start_time + r.latency, -1) for r in ok])
    in_flight = np.cumsum([d for _, d in events])
    return {"max_output_tokens_per_s": float(per_second.max()),
            "max_concurrent_requests": int(in_flight.max())}


def write_bench_json(path: str | Path, doc: dict) -> Path:
    """Write the result file whole or not at all (NaN, which JSON lacks, as null)."""
    return write_json(path, doc, indent=None)  # compact, as vLLM writes it: lists are long
