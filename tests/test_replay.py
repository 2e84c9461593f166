"""The replay client end to end against a real server process (`transformers serve` on a
tiny random model, see tiny_server.py): every request recorded, lengths forced, errors and
timeouts kept; and its pieces (request bodies, SSE parsing, priorities) on their own."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from llmsim.cli import app as cli  # the commands as users run them
from llmsim.integrations.replay import (
    WORDS,
    ReplaySettings,
    _Stream,
    bench_json,
    client_priorities,
    completions_url,
    replay,
    request_body,
    synthetic_prompts,
    write_bench_json,
)
from llmsim.policies import SJF, SRPT
from llmsim.traces.workload import Workload

from .tiny_server import TinyServer, build_model, free_port, missing_packages

runner = CliRunner(env={"COLUMNS": "160"})

# vLLM `bench serve --save-result --save-detailed` fields (vllm/benchmarks/serve.py)
BENCH_FIELDS = {
    "date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id", "num_prompts",
    "request_rate", "burstiness", "max_concurrency", "duration", "completed", "failed",
    "total_input_tokens", "total_output_tokens", "request_throughput", "request_goodput",
    "output_throughput", "total_token_throughput", "input_lens", "output_lens", "ttfts",
    "itls", "latencies", "start_times", "queue_times", "errors", "max_output_tokens_per_s",
    "max_concurrent_requests", "mean_ttft_ms", "median_ttft_ms", "std_ttft_ms", "p99_ttft_ms",
    "mean_tpot_ms", "median_tpot_ms", "std_tpot_ms", "p99_tpot_ms", "mean_itl_ms",
    "median_itl_ms", "std_itl_ms", "p99_itl_ms", "mean_e2el_ms", "median_e2el_ms",
    "std_e2el_ms", "p99_e2el_ms",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    missing = missing_packages()
    if missing:
        pytest.skip(f"the real-server test needs {', '.join(missing)} "
                    "(pip install httpx fastapi uvicorn openai accelerate)")
    folder = tmp_path_factory.mktemp("tiny-server")
    srv = TinyServer(build_model(folder / "model"), folder / "serve.log")
    try:
        srv.wait_ready()
    except BaseException:
        srv.stop()
        raise
    yield srv
    srv.stop()


def trace(n=14, seed=3) -> Workload:
    rng = np.random.default_rng(seed)
    return Workload(np.sort(rng.uniform(0, 1.2, n)), rng.integers(3, 40, n),
                    rng.integers(2, 12, n), source="test trace")


def test_replay_records_every_request_with_its_forced_length(server, tmp_path):
    w = trace()
    settings = ReplaySettings(server.url, server.model, force_length="transformers",
                              timeout_s=60)
    seen = []
    run = replay(w, settings, progress=seen.append, warmup=1)
    path = write_bench_json(tmp_path / "r.json", bench_json(run, {"policy": "fcfs"}))
    doc = json.loads(path.read_text())

    assert BENCH_FIELDS <= set(doc)
    assert doc["completed"] == len(w) and doc["failed"] == 0 and seen[-1] == len(w)
    assert doc["errors"] == [""] * len(w)
    # the model always predicts EOS: these lengths exist only because they were forced
    assert doc["output_lens"] == w.output_tokens.tolist()
    assert doc["total_output_tokens"] == int(w.output_tokens.sum())
    # one word per token in this tokenizer, no BOS: the server saw the lengths asked for
    assert doc["input_lens"] == w.prompt_tokens.tolist()
    for ttft, e2e, itl, n in zip(doc["ttfts"], doc["latencies"], doc["itls"], doc["output_lens"],
                                 strict=True):
        assert 0 < ttft <= e2e
        assert len(itl) == n - 1 and all(x >= 0 for x in itl)
        assert e2e == pytest.approx(ttft + sum(itl))
    sched = np.array(doc["llmsim"]["workload"]["arrival"])
    assert np.allclose(sched, w.arrival - w.arrival[0])
    assert np.all(np.array(doc["start_times"]) >= sched - 1e-6)  # never sent early
    assert doc["mean_ttft_ms"] <= doc["mean_e2el_ms"]
    assert doc["llmsim"]["short_outputs"] == 0 and doc["llmsim"]["policy"] == "fcfs"


def test_errors_and_timeouts_are_recorded_not_dropped(server):
    w = Workload(np.array([0.0, 0.05, 0.1]), np.array([5, 6, 7]), np.array([3, 3, 4000]))
    # the last request would take seconds: it times out; the short ones complete, unless a
    # loaded machine slows them past the timeout too: either way each is recorded
    run = replay(w, ReplaySettings(server.url, server.model, force_length="transformers",
                                   timeout_s=1.0))
    doc = bench_json(run)
    assert doc["errors"][2].startswith("timeout") and doc["output_lens"][2] == 0
    assert all(not e or e.startswith("timeout") for e in doc["errors"])
    assert doc["completed"] + doc["failed"] == 3
    assert doc["failed"] == sum(bool(e) for e in doc["errors"])
    assert all(n == (0 if e else 3) for n, e in zip(doc["output_lens"], doc["errors"],
                                                     strict=True))

    # vLLM's fields are refused by transformers serve: an HTTP error per request
    doc = bench_json(replay(w, ReplaySettings(server.url, server.model, force_length="vllm")))
    assert doc["failed"] == 3 and all(e.startswith("HTTP 422") for e in doc["errors"])

    # nothing listens on this port
    dead = ReplaySettings(f"http://127.0.0.1:{free_port()}/v1/completions", "m", timeout_s=5)
    doc = bench_json(replay(w, dead))
    assert doc["completed"] == 0 and doc["failed"] == 3
    assert all("Connect" in e for e in doc["errors"]) and doc["mean_ttft_ms"] is None


def test_cli_replays_a_trace_and_validates_it(server, tmp_path):
    csv = tmp_path / "t.csv"
    w = trace(10, seed=5)
    csv.write_text("arrival_s,prompt_tokens,output_tokens\n" + "".join(
        f"{a},{p},{o}\n" for a, p, o in zip(w.arrival, w.prompt_tokens, w.output_tokens,
                                           strict=True)))
    out = tmp_path / "real.json"
    res = runner.invoke(cli, ["replay", "--model", server.model, "--endpoint", server.base,
                              "--trace", str(csv), "--force-length", "transformers",
                              "--out", str(out), "--sim-model", "llama-3-8b", "--gpu", "h100",
                              "--num-gpu-blocks", "2000", "--max-concurrency", "4",
                              "--no-async-scheduling", "--tokenizer", server.model])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["completed"] == 10 and doc["max_concurrency"] == 4
    assert doc["input_lens"] == w.prompt_tokens.tolist()  # cut by the server's tokenizer
    assert doc["tokenizer_id"] == server.model and "tokenizer" in doc["llmsim"]["prompts"]
    assert doc["llmsim"]["engine"]["num_gpu_blocks"] == 2000
    assert doc["llmsim"]["engine"]["async_scheduling"] is False
    assert doc["llmsim"]["deployment"]["model"] == "llama-3-8b"

    folder = tmp_path / "val"
    res = runner.invoke(cli, ["validate", str(out), "--out", str(folder)])
    assert res.exit_code == 0, res.output
    assert "TTFT" in res.output and "throughput" in res.output
    val = json.loads((folder / "validation.json").read_text())
    assert val["config"]["compared"] == 10
    assert (folder / "cdf.png").stat().st_size > 0


def test_cli_unusable_endpoint_is_a_clear_error_and_writes_nothing(tmp_path):
    pytest.importorskip("httpx")
    out = tmp_path / "r.json"
    res = runner.invoke(cli, ["replay", "--model", "m", "--endpoint",
                              f"http://127.0.0.1:{free_port()}", "--requests", "3",
                              "--out", str(out), "--timeout", "5"])
    assert res.exit_code == 2
    assert "warm-up" in res.output and "ConnectError" in res.output
    assert not out.exists() and list(tmp_path.iterdir()) == []

    # without a warm-up the run goes ahead: every failure is in the file, and the exit is 1
    res = runner.invoke(cli, ["replay", "--model", "m", "--endpoint",
                              f"http://127.0.0.1:{free_port()}", "--requests", "3",
                              "--out", str(out), "--timeout", "5", "--warmup", "0"])
    assert res.exit_code == 1 and "no request completed" in res.output
    doc = json.loads(out.read_text())
    assert doc["failed"] == 3 and doc["num_prompts"] == 3 and all(doc["errors"])


@pytest.mark.parametrize("args, message", [
    (["--force-length", "magic"], "force_length must be one of vllm, transformers, none"),
    (["--extra-body", "{bad"], "--extra-body is not JSON"),
    (["--extra-body", "[1]"], "must be a JSON object"),
    (["--policy", "lottery"], "unknown policy 'lottery'"),
    (["--policy", "srpt"], "re-ranks requests"),
    (["--load", "0.5"], "give --sim-model"),
    (["--load", "0.5", "--rate", "2"], "not both"),
    (["--endpoint", "ftp://x"], "http(s) URL"),
    (["--trace", "nope.csv"], "nope.csv"),
])
def test_cli_bad_options_exit_2_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "r.json"
    res = runner.invoke(cli, ["replay", "--model", "m", "--requests", "3", "--out", str(out),
                              *args])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
    assert not out.exists()


def test_request_body_forces_the_length_and_carries_the_priority():
    s = ReplaySettings("http://h/v1/completions", "m", extra_body={"temperature": 0})
    body = request_body(s, "hi", 7, priority=3)
    assert body == {"model": "m", "prompt": "hi", "max_tokens": 7, "stream": True,
                    "stream_options": {"include_usage": True}, "ignore_eos": True,
                    "min_tokens": 7, "priority": 3, "vllm_xargs": {"llmsim_score": 3},
                    "temperature": 0}  # the score: a server running llmsim's plug-in keeps it
    tf = request_body(ReplaySettings("http://h/v1/completions", "m", "transformers"), "hi", 5)
    assert json.loads(tf["generation_config"]) == {"max_new_tokens": 5, "min_new_tokens": 5}
    assert "priority" not in tf and "ignore_eos" not in tf and "vllm_xargs" not in tf
    oracle = request_body(ReplaySettings("http://h/v1/completions", "m", send_output_len=True),
                          "hi", 9)
    assert oracle["vllm_xargs"] == {"llmsim_output_len": 9}  # what the vLLM plug-in reads
    both = request_body(ReplaySettings("http://h/v1/completions", "m", send_output_len=True),
                        "hi", 9, priority=0)
    assert both["vllm_xargs"] == {"llmsim_score": 0, "llmsim_output_len": 9}
    assert completions_url("http://h:8000") == "http://h:8000/v1/completions"
    assert completions_url("http://h:8000/") == "http://h:8000/v1/completions"
    assert completions_url("http://h/x/v1/completions") == "http://h/x/v1/completions"


def test_priorities_follow_the_policy_rank():
    w = Workload(np.array([0.0, 1, 2, 3]), np.array([5, 5, 5, 5]), np.array([40, 10, 10, 30]))
    assert client_priorities(w, SJF).tolist() == [2, 0, 0, 1]  # ties stay ties
    with pytest.raises(ValueError, match="re-ranks"):
        client_priorities(w, SRPT)


def test_sse_parsing_times_token_chunks_only():
    s = _Stream(sent=10.0)
    for t, line in [
        (10.5, ": ping"),
        (10.6, 'data: {"choices":[{"text":"a","finish_reason":null}]}'),
        (10.6, ""),
        (10.7, 'data: {"choices":[{"text":"","finish_reason":null}]}'),  # a held-back byte
        (10.9, 'data: {"choices":[{"text":"b","finish_reason":"length"}]}'),
        (11.5, 'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":3}}'),
        (11.6, "data: [DONE]"),
    ]:
        s.feed(line, t)
    r = s.result(0.0, 0.0, 9, 0.0)
    assert r.success and r.ttft == pytest.approx(0.6) and r.latency == pytest.approx(0.9)
    assert r.itl == pytest.approx([0.1, 0.2]) and r.output_tokens == 3 and r.prompt_tokens == 4

    # transformers serve: the closing chunk has no text and carries the usage
    s = _Stream(sent=0.0)
    s.feed('data: {"choices":[{"text":"x"}]}', 1.0)
    s.feed('data: {"choices":[{"text":"","finish_reason":"length"}],"usage":'
           '{"completion_tokens":1,"prompt_tokens":2}}', 2.0)
    r = s.result(0.0, 0.0, 2, 0.0)
    assert r.latency == 1.0 and r.itl == [] and r.output_tokens == 1

    s = _Stream(sent=0.0)
    s.feed('data: {"error": "CUDA out of memory"}', 1.0)
    r = s.result(0.0, 0.0, 2, 0.0)
    assert not r.success and "out of memory" in r.error

    r = _Stream(sent=0.0).result(0.0, 0.0, 2, 0.0)
    assert not r.success and "without a token" in r.error


def test_synthetic_prompts_have_the_token_count_and_differ():
    w = Workload(np.zeros(3), np.array([1, 50, 50]), np.array([1, 1, 1]),
                 prompt_text=np.array([None, "given text", None], dtype=object))
    prompts = synthetic_prompts(w, np.random.default_rng(0))
    assert len(prompts[0].split()) == 1 and prompts[1] == "given text"
    assert len(prompts[2].split()) == 50
    other = synthetic_prompts(w, np.random.default_rng(1))
    assert other[2] != prompts[2]


def test_prompts_share_the_words_of_their_shared_leading_block_ids():
    from llmsim.traces.block_hashes import BlockHashes

    # 4-token blocks; requests 0 and 1 share ids 7, 8 then part; 2 has 8 first (another
    # place: other words); 3 has no ids
    hashes = BlockHashes.from_lists([[7, 8, 1], [7, 8, 2], [8], []], block_tokens=4)
    w = Workload(np.zeros(4), np.array([12, 11, 4, 6]), np.ones(4, dtype=int),
                 meta={"hash_ids": hashes})
    prompts = [p.split() for p in synthetic_prompts(w, np.random.default_rng(0))]
    assert [len(p) for p in prompts] == [12, 11, 4, 6]
    assert prompts[0][:8] == prompts[1][:8] and prompts[0][8:11] != prompts[1][8:11]
    assert prompts[2] != prompts[0][4:8]
    again = [p.split() for p in synthetic_prompts(w, np.random.default_rng(0))]
    other = [p.split() for p in synthetic_prompts(w, np.random.default_rng(1))]
    assert again == prompts and other[0][:8] == other[1][:8] and other[0] != prompts[0]
    plain = Workload(w.arrival, w.prompt_tokens, w.output_tokens)  # no ids: one draw a row
    rng = np.random.default_rng(0)
    assert synthetic_prompts(plain, np.random.default_rng(0)) == [
        " ".join(WORDS[j] for j in rng.integers(0, len(WORDS), n)) for n in w.prompt_tokens]
    doc = bench_json_of(w)
    assert doc["llmsim"]["workload"]["hash_ids"] == {
        "block_tokens": 4, "covers_output": False, "offsets": [0, 3, 6, 7, 7],
        "ids": [7, 8, 1, 7, 8, 2, 8]}


def bench_json_of(w: Workload) -> dict:
    from llmsim.integrations.replay import ReplayRun, RequestResult

    results = [RequestResult(True, "", 0.0, 0.0, 0.0, 0.1, [], 0.1, 1, int(p), "")
               for p in w.prompt_tokens]
    return bench_json(ReplayRun(w, ReplaySettings("http://x/v1/completions", "m"), results,
                                0.1, "20250101-000000", "synthetic", None))


def test_the_castillo_replay_trace_carries_test_prompts_with_capped_scaled_lengths(
        castillo, tmp_path):
    from llmsim.traces import load_castillo_pool
    from llmsim.traces.loaders import load_trace

    from .benchmark_script import load_benchmark

    make = load_benchmark("castillo_replay_trace").castillo_requests
    w = make(castillo, "Llama-3.1-8B-Instruct", 60, cap=50, scale=4.0, seed=1)
    pool = load_castillo_pool(castillo, model="Llama-3.1-8B-Instruct", split="test")
    row = {t: i for i, t in enumerate(pool.text)}
    for text, p, o in zip(w.prompt_text, w.prompt_tokens, w.output_tokens, strict=True):
        i = row[text]  # a test prompt, with its own token count and one of its lengths
        assert p == pool.input_size[i]
        assert o in np.maximum(1, np.rint(np.minimum(pool.output_sizes[i], 50) / 4))
    assert w.arrival[0] == 0 and (np.diff(w.arrival) > 0).all()
    out = tmp_path / "t.parquet"
    from llmsim.traces.native import write_parquet

    write_parquet(w, out)
    back = load_trace(out)  # what `llmsim replay --trace` reads: texts included
    assert list(back.prompt_text) == list(w.prompt_text)
    assert (back.output_tokens == w.output_tokens).all()
