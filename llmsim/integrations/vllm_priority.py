"""An llmsim policy's score as vLLM's integer request priority, without importing vLLM.

vLLM's priority scheduling (`--scheduling-policy priority`) serves waiting requests by the
lowest (priority, arrival time) and, when the KV cache runs dry, preempts the running
request with the largest (priority, arrival time): the same two rules as an llmsim policy
with `victim="priority"`, whose rank is the score here. So a score maps to a priority by
any increasing function; this one is

    priority = round(score * scale), clipped to [PRIORITY_MIN, PRIORITY_MAX - 1]

with `scale` = 1000 by default: scores that differ by less than 1/scale tie, and ties go
by arrival, as in llmsim. PRIORITY_MAX itself is kept for requests whose score could not
be had (FALLBACK_PRIORITY): they run after every scored request, first come first served
among themselves. The range is int32's, well inside what vLLM's API accepts (int64).

Two ways to use it:
- client side, plain vLLM: `with_priority(body, score)` puts the integer `priority` into
  an OpenAI-compatible request body;
- server side, the plug-in `llmsim.integrations.vllm.PolicyScheduler`: the engine scores
  each request itself with a `PriorityAssigner` (oracle length, a trained predictor, or a
  score the client sent in `vllm_xargs`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PRIORITY_MIN = -(2**31)
PRIORITY_MAX = 2**31 - 1
FALLBACK_PRIORITY = PRIORITY_MAX
DEFAULT_SCALE = 1000.0

# Fields a client sends in the request body's `vllm_xargs` (SamplingParams.extra_args).
SCORE_FIELD = "llmsim_score"  # a score computed by the client; overrides the server's policy
OUTPUT_LEN_FIELD = "llmsim_output_len"  # the true output length, for the oracle policy `sjf`

# LLMSIM_POLICY values that are not predictor folders.
NAMED_POLICIES = {
    "fcfs": "first come first served (every request gets priority 0)",
    "sjf": f"oracle shortest job first on vllm_xargs.{OUTPUT_LEN_FIELD}",
    "client": f"the score the client sends in vllm_xargs.{SCORE_FIELD}",
}


class ScoreError(Exception):
    """A request that could not be scored. `cause` is what is logged once (stable across
    requests: 'no llmsim_output_len in vllm_xargs'); `detail` says which request and value."""

    def __init__(self, cause: str, detail: str = ""):
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause
        self.detail = detail


def priority_for(score: float, scale: float = DEFAULT_SCALE) -> int:
    """vLLM's priority for an llmsim score (lower runs first). Raises ValueError for a score
    that is not a finite number."""
    if isinstance(score, (bool, np.bool_)):  # True is 1 to Python: a client's mistake
        raise ValueError(f"score {score!r} is not a number")
    try:
        score = float(score)  # numpy scalars, numeric strings from JSON
    except (TypeError, ValueError):
        raise ValueError(f"score {score!r} is not a number") from None
    if not math.isfinite(score):
        raise ValueError(f"score {score!r} is not finite")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    scaled = score * scale
    if not math.isfinite(scaled):  # a huge finite score times the scale
        return PRIORITY_MIN if scaled < 0 else PRIORITY_MAX - 1
    return min(max(round(scaled), PRIORITY_MIN), PRIORITY_MAX - 1)


def with_priority(body: Mapping, score: float, scale: float = DEFAULT_SCALE) -> dict:
    """A copy of an OpenAI-compatible request body (completions or chat) with vLLM's
    integer `priority` set from `score`; the server must run `--scheduling-policy priority`
    (vLLM rejects a nonzero priority otherwise)."""
    return {**body, "priority": priority_for(score, scale)}


def with_llmsim_fields(body: Mapping, score: float | None = None,
                       output_len: int | None = None) -> dict:
    """A copy of a request body carrying llmsim's fields in `vllm_xargs`, for a server that
    runs the plug-in: `score` (used as is, any policy) or `output_len` (policy `sjf`)."""
    xargs = dict(body.get("vllm_xargs") or {})
    if score is not None:
        xargs[SCORE_FIELD] = float(score)
    if output_len is not None:
        xargs[OUTPUT_LEN_FIELD] = int(output_len)
    return {**body, "vllm_xargs": xargs}


@dataclass(frozen=True, slots=True)
class PromptInfo:
    """What a scorer may read of a request: its `vllm_xargs`, its prompt's token ids, and
    its prompt text on demand (`text()` detokenizes; raises ScoreError without a
    tokenizer)."""

    extra_args: Mapping | None
    prompt_token_ids: Sequence[int] | None
    text: Callable[[], str]
    request_id: str = ""

    @property
    def prompt_tokens(self) -> int:
        if self.prompt_token_ids is None:
            raise ScoreError("request has no prompt token ids (prompt embeddings?)")
        return len(self.prompt_token_ids)


def _field(info: PromptInfo, name: str) -> float:
    args = info.extra_args or {}
    if name not in args:
        raise ScoreError(f"no {name} in vllm_xargs")
    value = args[name]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ScoreError(f"{name} in vllm_xargs is not a number", repr(value)) from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ScoreError(f"{name} in vllm_xargs is not a finite number", repr(value))
    return number


def client_score(info: PromptInfo) -> float:
    return _field(info, SCORE_FIELD)


def oracle_output_length(info: PromptInfo) -> float:
    length = _field(info, OUTPUT_LEN_FIELD)
    if length < 0:
        raise ScoreError(f"{OUTPUT_LEN_FIELD} in vllm_xargs is negative", repr(length))
    return length


def no_score(info: PromptInfo) -> float:
    return 0.0


class PredictorScorer:
    """A trained llmsim predictor (`llmsim.predictors.load_predictor`) scoring one request
    at a time: higher score, longer expected answer, later service. A folder that does not
    load is kept as `load_error`, and every request then fails with it as the cause."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.predictor = None
        self.load_error: ScoreError | None = None
        try:
            from ..predictors import load_predictor

            self.predictor = load_predictor(self.folder)
        except Exception as e:  # missing folder, bad card, weights, a missing package
            self.load_error = ScoreError(
                f"predictor {self.folder} did not load ({type(e).__name__})", str(e))

    @property
    def kind(self) -> str:
        return self.predictor.kind if self.predictor is not None else "?"

    def __call__(self, info: PromptInfo) -> float:
        if self.load_error is not None:
            raise self.load_error
        tokens = np.asarray([info.prompt_tokens], dtype=np.int64)
        texts = None if self.kind == "length" else [info.text()]
        return float(self.predictor.score(texts, tokens)[0])


def make_scorer(policy: str) -> Callable[[PromptInfo], float]:
    """The scorer LLMSIM_POLICY names: one of NAMED_POLICIES, else a predictor folder."""
    named = {"fcfs": no_score, "sjf": oracle_output_length, "client": client_score}
    if policy.lower() in named:
        return named[policy.lower()]
    return PredictorScorer(policy)


def describe(policy: str) -> str:
    return NAMED_POLICIES.get(policy.lower(), f"the llmsim predictor in {policy}")


@dataclass(frozen=True, slots=True)
class AssignerConfig:
    """The plug-in's settings, read from the environment of `vllm serve`:
    LLMSIM_POLICY (default `client`), LLMSIM_PRIORITY_SCALE (default 1000) and
    LLMSIM_FALLBACK_PRIORITY (default PRIORITY_MAX: unscored requests run last)."""

    policy: str = "client"
    scale: float = DEFAULT_SCALE
    fallback: int = FALLBACK_PRIORITY

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AssignerConfig:
        # Settings are read once at start-up: a bad one stops `vllm serve` with its name.
        policy = env.get("LLMSIM_POLICY", "").strip() or "client"
        scale = _env_number(env, "LLMSIM_PRIORITY_SCALE", DEFAULT_SCALE, float)
        fallback = _env_number(env, "LLMSIM_FALLBACK_PRIORITY", FALLBACK_PRIORITY, int)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"LLMSIM_PRIORITY_SCALE must be > 0, got {scale}")
        if not PRIORITY_MIN <= fallback <= PRIORITY_MAX:
            raise ValueError(f"LLMSIM_FALLBACK_PRIORITY must be in [{PRIORITY_MIN}, "
                             f"{PRIORITY_MAX}], got {fallback}")
        return cls(policy, scale, fallback)


def _env_number(env: Mapping[str, str], name: str, default, kind):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not {'an integer' if kind is int else 'a number'}"
                         ) from None


class PriorityAssigner:
    """Turns each request into vLLM's priority: the client's `llmsim_score` when it sent
    one, else the configured policy's score, mapped by `priority_for`. Never raises for a
    request: one that cannot be scored gets `fallback` (FCFS among such requests), and each
    distinct cause of failure is logged once, with the first request's detail."""

    def __init__(self, config: AssignerConfig, logger: logging.Logger,
                 scorer: Callable[[PromptInfo], float] | None = None):
        self.config = config
        self.logger = logger
        self.scorer = scorer if scorer is not None else make_scorer(config.policy)
        self.logged_causes: set[str] = set()
        self.fallbacks = 0  # requests that got the fallback priority so far
        load_error = getattr(self.scorer, "load_error", None)
        if load_error is not None:
            self._log_once(load_error)

    def priority(self, info: PromptInfo) -> int:
        try:
            sent = info.extra_args is not None and SCORE_FIELD in info.extra_args
            score = client_score(info) if sent else self.scorer(info)
            try:
                return priority_for(score, self.config.scale)
            except ValueError as e:
                raise ScoreError("the policy's score is not a finite number", str(e)) from None
        except ScoreError as e:
            self._log_once(e, info.request_id)
        except Exception as e:  # a predictor's own failure must not take the engine down
            self._log_once(ScoreError(f"scoring raised {type(e).__name__}", str(e)),
                           info.request_id)
        self.fallbacks += 1
        return self.config.fallback

    def _log_once(self, error: ScoreError, request_id: str = "") -> None:
        if error.cause in self.logged_causes:
            return
        self.logged_causes.add(error.cause)
        where = [f"request {request_id}"] if request_id else []
        detail = ", ".join(where + ([error.detail] if error.detail else []))
        self.logger.error(
            "llmsim policy %r: %s%s; such requests get priority %d (first come first served "
            "among them). Logged once per cause.", self.config.policy, error.cause,
            f" ({detail})" if detail else "", self.config.fallback)
