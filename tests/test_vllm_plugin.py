"""The vLLM plug-in: llmsim's score -> vLLM priority mapping and its fallbacks (no vLLM
needed), then the REAL vLLM V1 scheduler built on the CPU with the plug-in, checked to
serve and preempt requests as the llmsim policy says. The second part skips where vLLM
is not installed (its own CI venv: see docs/vllm.md)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from llmsim.engine.request import Request as SimRequest
from llmsim.integrations.vllm_priority import (
    FALLBACK_PRIORITY,
    OUTPUT_LEN_FIELD,
    PRIORITY_MAX,
    PRIORITY_MIN,
    SCORE_FIELD,
    AssignerConfig,
    PredictorScorer,
    PriorityAssigner,
    PromptInfo,
    ScoreError,
    priority_for,
    with_llmsim_fields,
    with_priority,
)
from llmsim.policies import FCFS, SJF
from tests.vllm_scheduler import build_scheduler, tiny_model_config, vllm_request

TEST_LOGGER = "llmsim.test.vllm_plugin"


def info(xargs=None, prompt=(1, 2, 3), text="a prompt", request_id="r"):
    def read_text():
        if isinstance(text, Exception):
            raise text
        return text

    return PromptInfo(xargs, list(prompt) if prompt is not None else None, read_text,
                      request_id)


def assigner(policy="client", scorer=None, **config):
    return PriorityAssigner(AssignerConfig(policy, **config), logging.getLogger(TEST_LOGGER),
                            scorer)


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# --- the mapping ---------------------------------------------------------------------------

@pytest.mark.parametrize(("score", "scale", "priority"), [
    (0, 1000, 0), (1.5, 1000, 1500), (0.0004, 1000, 0), (0.0006, 1000, 1), (-2.25, 1000, -2250),
    (7, 1, 7), (np.float32(3.0), 1000, 3000), (1e12, 1000, PRIORITY_MAX - 1),
    (-1e12, 1000, PRIORITY_MIN), (1e308, 1000, PRIORITY_MAX - 1), (-1e308, 10, PRIORITY_MIN),
])
def test_priority_for(score, scale, priority):
    assert priority_for(score, scale) == priority
    assert isinstance(priority_for(score, scale), int)


@pytest.mark.parametrize("score", [math.nan, math.inf, -math.inf, None, "short", True, [1]])
def test_priority_for_refuses_what_is_not_a_finite_number(score):
    with pytest.raises(ValueError, match="score"):
        priority_for(score)


@pytest.mark.parametrize("scale", [0, -1, math.inf, math.nan])
def test_priority_for_refuses_a_bad_scale(scale):
    with pytest.raises(ValueError, match="scale"):
        priority_for(1.0, scale)


def test_priority_is_monotone_and_the_fallback_runs_last():
    scores = np.sort(np.random.default_rng(7).normal(0, 1e3, 2000))
    priorities = [priority_for(s) for s in scores]
    assert priorities == sorted(priorities)
    assert max(priorities) < FALLBACK_PRIORITY == PRIORITY_MAX


def test_client_side_bodies_are_copies_with_the_fields():
    body = {"model": "m", "prompt": "hi", "max_tokens": 8, "vllm_xargs": {"other": 1}}
    assert with_priority(body, 2.5) == {**body, "priority": 2500}
    assert with_priority(body, 2.5, scale=1) == {**body, "priority": 2}
    sent = with_llmsim_fields(body, score=0.5, output_len=40)
    assert sent["vllm_xargs"] == {"other": 1, SCORE_FIELD: 0.5, OUTPUT_LEN_FIELD: 40}
    assert body["vllm_xargs"] == {"other": 1} and "priority" not in body
    assert with_llmsim_fields({"prompt": "x"}, output_len=3)["vllm_xargs"] == {
        OUTPUT_LEN_FIELD: 3}


# --- settings and fallbacks ----------------------------------------------------------------

def test_config_from_env():
    assert AssignerConfig.from_env({}) == AssignerConfig("client", 1000.0, FALLBACK_PRIORITY)
    config = AssignerConfig.from_env({"LLMSIM_POLICY": " sjf ", "LLMSIM_PRIORITY_SCALE": "1",
                                      "LLMSIM_FALLBACK_PRIORITY": "-5"})
    assert config == AssignerConfig("sjf", 1.0, -5)


@pytest.mark.parametrize(("env", "named"), [
    ({"LLMSIM_PRIORITY_SCALE": "fast"}, "LLMSIM_PRIORITY_SCALE"),
    ({"LLMSIM_PRIORITY_SCALE": "0"}, "LLMSIM_PRIORITY_SCALE"),
    ({"LLMSIM_FALLBACK_PRIORITY": "1.5"}, "LLMSIM_FALLBACK_PRIORITY"),
    ({"LLMSIM_FALLBACK_PRIORITY": str(2**40)}, "LLMSIM_FALLBACK_PRIORITY"),
])
def test_bad_settings_say_which(env, named):
    with pytest.raises(ValueError, match=named):
        AssignerConfig.from_env(env)


def test_sjf_scores_the_oracle_length_and_a_client_score_overrides():
    sjf = assigner("sjf")
    assert sjf.priority(info({OUTPUT_LEN_FIELD: 40})) == 40_000
    assert sjf.priority(info({OUTPUT_LEN_FIELD: "12"})) == 12_000  # JSON may send strings
    assert sjf.priority(info({OUTPUT_LEN_FIELD: 40, SCORE_FIELD: -1.0})) == -1000
    assert assigner("fcfs").priority(info()) == 0
    assert sjf.fallbacks == 0


def test_failures_fall_back_and_are_logged_once_per_cause(caplog):
    sjf = assigner("sjf")
    with caplog.at_level(logging.ERROR, logger=TEST_LOGGER):
        for i in range(3):
            assert sjf.priority(info(None, request_id=f"a{i}")) == FALLBACK_PRIORITY
            assert sjf.priority(info({OUTPUT_LEN_FIELD: "long"})) == FALLBACK_PRIORITY
            assert sjf.priority(info({OUTPUT_LEN_FIELD: -3})) == FALLBACK_PRIORITY
            assert sjf.priority(info({SCORE_FIELD: math.nan})) == FALLBACK_PRIORITY
    logged = errors(caplog)
    assert len(logged) == 4 and sjf.fallbacks == 12
    assert f"no {OUTPUT_LEN_FIELD} in vllm_xargs" in logged[0] and "request a0" in logged[0]
    assert "'long'" in logged[1] and "negative" in logged[2] and SCORE_FIELD in logged[3]
    assert all(str(FALLBACK_PRIORITY) in line for line in logged)


def test_a_scorer_that_raises_does_not_escape(caplog):
    def broken(_):
        raise RuntimeError("CUDA error: out of memory")

    scored = assigner("mine", scorer=broken, fallback=77)
    with caplog.at_level(logging.ERROR, logger=TEST_LOGGER):
        assert [scored.priority(info()) for _ in range(5)] == [77] * 5
        assert scored.priority(info({SCORE_FIELD: 0.25})) == 250  # the client's still counts
    assert len(errors(caplog)) == 1 and "RuntimeError" in errors(caplog)[0]


def test_a_missing_predictor_is_logged_at_start_and_every_request_falls_back(tmp_path,
                                                                            caplog):
    with caplog.at_level(logging.ERROR, logger=TEST_LOGGER):
        missing = assigner(str(tmp_path / "no-such-predictor"))
        assert len(errors(caplog)) == 1 and "did not load" in errors(caplog)[0]
        assert missing.priority(info()) == missing.priority(info()) == FALLBACK_PRIORITY
    assert len(errors(caplog)) == 1


def test_a_length_predictor_folder_scores_prompt_tokens(tmp_path):
    from llmsim.predictors import save_predictor
    from llmsim.predictors.length import PromptLengthPredictor

    folder = save_predictor(PromptLengthPredictor(), tmp_path / "length", {})
    by_length = assigner(str(folder), scale=1)
    assert by_length.priority(info(prompt=range(17))) == 17
    assert by_length.priority(info(prompt=None)) == FALLBACK_PRIORITY


def test_a_text_predictor_without_text_falls_back(tmp_path, caplog):
    from llmsim.predictors import save_predictor
    from llmsim.predictors.length import PromptLengthPredictor

    scorer = PredictorScorer(save_predictor(PromptLengthPredictor(), tmp_path / "p", {}))
    scorer.predictor.kind = "pars"  # as a text predictor asks for the prompt's text
    scorer.predictor.score = lambda texts, tokens: np.array([len(texts[0])], dtype=float)
    text_reader = assigner("pars", scorer=scorer, scale=1)
    assert text_reader.priority(info(text="four")) == 4
    with caplog.at_level(logging.ERROR, logger=TEST_LOGGER):
        no_tokenizer = ScoreError("the server runs with --skip-tokenizer-init")
        assert text_reader.priority(info(text=no_tokenizer)) == FALLBACK_PRIORITY
    assert "skip-tokenizer-init" in errors(caplog)[0]


# --- the real vLLM V1 scheduler on the CPU ---------------------------------------------------

BLOCK = 16


@pytest.fixture(scope="module")
def model_config(tmp_path_factory):
    pytest.importorskip("vllm")
    return tiny_model_config(tmp_path_factory.mktemp("tiny-llama"), max_model_len=512)


def scheduler(model_config, *, num_blocks=64, max_num_seqs=1, async_scheduling=False,
              policy="priority"):
    from llmsim.integrations.vllm import PolicyScheduler

    return build_scheduler(model_config, PolicyScheduler, num_blocks=num_blocks,
                           block_size=BLOCK, max_num_seqs=max_num_seqs,
                           max_num_batched_tokens=512, policy=policy,
                           async_scheduling=async_scheduling)


def service_order(sched) -> list[str]:
    """Admission order with one seat (max_num_seqs=1): schedule, finish what was admitted,
    repeat until the queue is empty."""
    from vllm.v1.request import RequestStatus

    order = []
    while sched.waiting or sched.running:
        admitted = [r.req_id for r in sched.schedule().scheduled_new_reqs]
        assert len(admitted) == 1, admitted
        order += admitted
        sched.finish_requests(admitted, RequestStatus.FINISHED_ABORTED)
    return order


def step(sched):
    """One engine step: schedule, then the 'model' samples one token for each request."""
    from vllm.v1.outputs import ModelRunnerOutput

    out = sched.schedule()
    ids = list(out.num_scheduled_tokens)
    sched.update_from_output(out, ModelRunnerOutput(
        req_ids=ids, req_id_to_index={r: k for k, r in enumerate(ids)},
        sampled_token_ids=[[5] for _ in ids]))
    return out


def llmsim_order(policy, jobs) -> list[str]:
    """The order llmsim's own policy serves `jobs` = [(id, arrival, prompt, output)] in."""
    sim = {name: SimRequest(k, arrival, prompt, output)
           for k, (name, arrival, prompt, output) in enumerate(jobs)}
    for r in sim.values():
        r.rank = policy.rank(r, 0.0)
    return sorted(sim, key=lambda name: sim[name].sort_key())


JOBS = [("a", 0.0, 8, 300), ("b", 1.0, 40, 20), ("c", 2.0, 24, 120), ("d", 3.0, 8, 20),
        ("e", 4.0, 16, 5)]


def add_jobs(sched, jobs=JOBS, with_length=True):
    for name, arrival, prompt, output in jobs:
        xargs = {OUTPUT_LEN_FIELD: output} if with_length else None
        sched.add_request(vllm_request(name, arrival, prompt, xargs))


@pytest.mark.parametrize("async_scheduling", [False, True])
def test_vllm_serves_shortest_oracle_job_first_as_llmsim_sjf(model_config, monkeypatch,
                                                            async_scheduling):
    monkeypatch.setenv("LLMSIM_POLICY", "sjf")
    sched = scheduler(model_config, async_scheduling=async_scheduling)
    assert type(sched).__name__ == ("AsyncPolicyScheduler" if async_scheduling
                                    else "PolicyScheduler")
    add_jobs(sched)
    assert [r.priority for r in sched.waiting] == sorted(r.priority for r in sched.waiting)
    assert service_order(sched) == llmsim_order(SJF, JOBS) == ["e", "b", "d", "c", "a"]


def test_vllm_fcfs_policy_serves_in_arrival_order(model_config, monkeypatch):
    monkeypatch.setenv("LLMSIM_POLICY", "fcfs")
    sched = scheduler(model_config)
    add_jobs(sched)
    assert service_order(sched) == llmsim_order(FCFS, JOBS) == ["a", "b", "c", "d", "e"]


def test_vllm_length_predictor_serves_shortest_prompt_first(model_config, monkeypatch,
                                                            tmp_path):
    from llmsim.predictors import save_predictor
    from llmsim.predictors.length import PromptLengthPredictor

    folder = save_predictor(PromptLengthPredictor(), tmp_path / "length", {})
    monkeypatch.setenv("LLMSIM_POLICY", str(folder))
    sched = scheduler(model_config)
    add_jobs(sched, with_length=False)
    assert service_order(sched) == ["a", "d", "e", "c", "b"]  # prompt 8, 8, 16, 24, 40


def test_a_client_score_overrides_the_server_policy(model_config, monkeypatch):
    monkeypatch.setenv("LLMSIM_POLICY", "sjf")
    sched = scheduler(model_config)
    jobs = [("long-but-urgent", 0.0, 8, 300), ("mid", 1.0, 8, 20), ("short", 2.0, 8, 5),
            ("short-but-batch", 3.0, 8, 1)]
    scores = {"long-but-urgent": -1.0, "short-but-batch": 1e3}
    for name, arrival, prompt, output in jobs:
        xargs = {OUTPUT_LEN_FIELD: output}
        if name in scores:
            xargs[SCORE_FIELD] = scores[name]
        sched.add_request(vllm_request(name, arrival, prompt, xargs))
    assert service_order(sched) == ["long-but-urgent", "short", "mid", "short-but-batch"]


def test_broken_scores_fall_back_to_fcfs_without_raising(model_config, monkeypatch):
    from llmsim.integrations.vllm import LOGGER_NAME

    monkeypatch.setenv("LLMSIM_POLICY", "sjf")
    sched = scheduler(model_config)
    # Our own handler: vLLM's "vllm" logger may or may not propagate to caplog's root one.
    seen = ListHandler()
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(seen)
    try:
        broken = [("x1", 0.0, None), ("ok-long", 1.0, {OUTPUT_LEN_FIELD: 50}),
                  ("x2", 2.0, {OUTPUT_LEN_FIELD: "many"}), ("x3", 3.0, {}),
                  ("ok-short", 4.0, {OUTPUT_LEN_FIELD: 10}), ("x4", 5.0, {SCORE_FIELD: "?"}),
                  ("x5", 6.0, {OUTPUT_LEN_FIELD: "lots"})]
        for name, arrival, xargs in broken:
            sched.add_request(vllm_request(name, arrival, 8, xargs))
        order = service_order(sched)
    finally:
        logger.removeHandler(seen)
    # Scored requests first by the policy, then the rest first come first served.
    assert order == ["ok-short", "ok-long", "x1", "x2", "x3", "x4", "x5"]
    logged = [r.getMessage() for r in seen.records if r.levelno >= logging.ERROR]
    assert len(logged) == 3, logged  # missing field (x1, x3), not a number (x2, x5), x4
    assert "request x1" in logged[0] and "request x2" in logged[1] and "request x4" in logged[2]
    assert sched.llmsim_priorities.fallbacks == 5


def test_vllm_preempts_the_victim_llmsim_priority_rule_picks(model_config, monkeypatch):
    """Under KV pressure vLLM's priority rule preempts the running request with the largest
    (priority, arrival), llmsim's victim="priority"; its FCFS rule would take the one
    admitted last. Here they differ: the long job is admitted first, alone; a short one
    joins it; both need a new block when the pool has none."""
    monkeypatch.setenv("LLMSIM_POLICY", "sjf")
    # 3 usable blocks (one is vLLM's null block): one each for the two 15-token prompts,
    # one more; the 17th token of each needs a second block.
    sched = scheduler(model_config, num_blocks=4, max_num_seqs=4)
    sched.add_request(vllm_request("long", 0.0, 15, {OUTPUT_LEN_FIELD: 40}))
    step(sched)
    sched.add_request(vllm_request("short", 1.0, 15, {OUTPUT_LEN_FIELD: 5}))
    step(sched)
    running = list(sched.running)
    assert [r.request_id for r in running] == ["long", "short"]  # FCFS would evict "short"
    expected = max(running, key=lambda r: (r.priority, r.arrival_time)).request_id
    sim = {r.request_id: SimRequest(k, r.arrival_time, 15, r.sampling_params.extra_args[
        OUTPUT_LEN_FIELD]) for k, r in enumerate(running)}
    for r in sim.values():
        r.rank = SJF.rank(r, 0.0)
    assert expected == max(sim, key=lambda name: sim[name].sort_key()) == "long"
    preempted = set()
    for _ in range(3):
        preempted |= set(step(sched).preempted_req_ids)
    assert preempted == {"long"}
    assert [r.request_id for r in sched.running] == ["short"]
    assert [r.request_id for r in sched.waiting] == ["long"]


def test_the_plugin_refuses_a_server_without_priority_scheduling(model_config):
    with pytest.raises(ValueError, match="--scheduling-policy priority"):
        scheduler(model_config, policy="fcfs")


def test_a_text_predictor_needs_the_tokenizer_the_server_skipped(model_config, monkeypatch):
    monkeypatch.setenv("LLMSIM_POLICY", "fcfs")
    sched = scheduler(model_config)
    with pytest.raises(ScoreError, match="skip-tokenizer-init"):
        sched._prompt_text(vllm_request("t", 0.0))
