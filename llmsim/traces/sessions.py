"""Multi-turn chat sessions with shared system prompts: a workload whose requests share
prefixes, with the block ids prefix caching needs (`meta["hash_ids"]`, a `BlockHashes`).

A session is one conversation: a system prompt (one of a few, shared by every session
that uses it), then turns. Turn t's prompt is everything so far (the system prompt, the
earlier user messages and answers) plus a new user message; its output is the answer.
So turn t+1 resends turn t's prompt and answer, which vLLM finds cached if they were not
evicted in between. Block ids are given for every `block_tokens`-token block of the
session's token stream (prompt and answer: `covers_output`), equal across turns and, for
the system prompt, across sessions; a block the next turn extends (the stream's last,
partial block) gets an id of its own, since its tokens differ.

Arrivals are open-loop, as every llmsim workload: sessions start as a Poisson process and
turn t+1 arrives `think` seconds (exponential) plus `answer_s_per_token` x the answer's
length after turn t, a stand-in for the answer's generation time. When the engine is
slower than that, the next turn arrives before the answer is complete and finds less of
it cached.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .block_hashes import BlockHashes
from .workload import Workload


@dataclass(frozen=True, slots=True)
class SessionSpec:
    sessions: int = 1000
    session_rate: float = 1.0  # sessions started per second (Poisson)
    mean_turns: float = 4.0  # turns per session: 1 + geometric
    system_prompts: int = 4  # distinct shared system prompts
    system_tokens: int = 1024  # tokens of each system prompt
    user_tokens: float = 200.0  # mean tokens of a user message (lognormal, sigma 0.8)
    output_tokens: float = 250.0  # mean tokens of an answer (lognormal, sigma 0.8)
    think_s: float = 20.0  # mean seconds a user thinks before the next turn
    answer_s_per_token: float = 0.02  # the answer's assumed generation time, per token
    max_context: int = 32_768  # a session ends before a turn's prompt + answer exceeds it
    block_tokens: int = 16  # granularity of the block ids: the engine's block size is best

    def __post_init__(self) -> None:
        for name in ("sessions", "system_prompts", "block_tokens", "max_context"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("session_rate", "user_tokens", "output_tokens"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.mean_turns < 1:
            raise ValueError(f"mean_turns must be >= 1, got {self.mean_turns}")
        if self.system_tokens < 0 or self.think_s < 0 or self.answer_s_per_token < 0:
            raise ValueError("system_tokens, think_s and answer_s_per_token must be >= 0")


def _lengths(rng: np.random.Generator, mean: float, n: int) -> np.ndarray:
    sigma = 0.8
    mu = np.log(mean) - sigma ** 2 / 2  # lognormal with this mean
    return np.maximum(1, np.rint(rng.lognormal(mu, sigma, n))).astype(np.int64)


def synthesize_sessions(spec: SessionSpec, rng: np.random.Generator) -> Workload:
    g = spec.block_tokens
    system_blocks = spec.system_tokens // g  # full blocks of a system prompt: shared ids
    next_id = spec.system_prompts * system_blocks  # ids below are the system prompts'
    rows, lists = [], []
    start = np.cumsum(rng.exponential(1 / spec.session_rate, spec.sessions))
    turns = rng.geometric(1 / spec.mean_turns, spec.sessions)  # >= 1, mean mean_turns
    for s in range(spec.sessions):
        system = int(rng.integers(spec.system_prompts))
        stream_ids = [system * system_blocks + b for b in range(system_blocks)]
        context, t = spec.system_tokens, float(start[s])
        users = _lengths(rng, spec.user_tokens, turns[s])
        answers = _lengths(rng, spec.output_tokens, turns[s])
        for user, answer in zip(users.tolist(), answers.tolist(), strict=True):
            prompt = context + user
            if prompt + answer > spec.max_context:
                break
            total = prompt + answer
            while len(stream_ids) < total // g:  # full blocks of the stream so far
                stream_ids.append(next_id)
                next_id += 1
            ids = list(stream_ids)
            if total % g:  # the last, partial block: the next turn extends it
                ids.append(next_id)
                next_id += 1
            rows.append((t, prompt, answer))
            lists.append(ids)
            context = total
            t += rng.exponential(spec.think_s) + answer * spec.answer_s_per_token
    order = sorted(range(len(rows)), key=lambda i: rows[i][0])
    arrival, prompt, output = (np.array([rows[i][k] for i in order]) for k in range(3))
    hashes = BlockHashes.from_lists([lists[i] for i in order], g, covers_output=True)
    return Workload(arrival - arrival[0] if len(arrival) else arrival, prompt, output,
                    source=f"{len(rows)} turns of {spec.sessions} synthetic chat sessions "
                           f"({spec.system_prompts} shared system prompts of "
                           f"{spec.system_tokens} tokens)",
                    meta={"hash_ids": hashes, "sessions": spec.sessions})
