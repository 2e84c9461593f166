"""`llmsim replay` and `llmsim validate`: a real server's latencies, and the simulator's
prediction beside them. Parses, checks, reports; the work is in `replay.py` and
`validate.py`. User errors exit 2 with one line and write nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from .. import __version__
from ..cli_kit import console, default_out, err, ms, num, one_line, pct, progress, user_errors
from ..engine.config import EngineConfig
from ..output import check_file, check_folder
from ..simulate import Deployment
from ..workload_spec import WorkloadSpec

Force = Annotated[bool, typer.Option(help="Replace the output if it exists.")]
SimModel = Annotated[str | None, typer.Option(
    help="Model shape preset or config.json the simulator prices (for --load, and recorded "
         "for `llmsim validate`).")]
Gpu = Annotated[str | None, typer.Option(help="GPU preset of the server: h100, h200, a100.")]
Tp = Annotated[int | None, typer.Option(help="Tensor-parallel degree of the server.", min=1)]
ProfileOpt = Annotated[str | None, typer.Option(
    "--profile", help="Measured cost profile (a path or a bundled name) for the simulator.")]


@user_errors
def replay(
    model: Annotated[str, typer.Option(help="The served model name, as the server knows it.")],
    endpoint: Annotated[str, typer.Option(
        help="Completions URL, or the server's base URL (then /v1/completions is added).")]
    = "http://127.0.0.1:8000",
    trace: Annotated[Path | None, typer.Option(
        help="Trace file (see `llmsim trace info`); default: the bundled Azure sample.")] = None,
    requests: Annotated[int | None, typer.Option(help="Send only the first N requests.",
                                                 min=1)] = None,
    rate: Annotated[float | None, typer.Option(
        help="Rescale the trace's arrivals to this mean rate (req/s).")] = None,
    load: Annotated[float | None, typer.Option(
        help="Rescale arrivals to this fraction of the simulated capacity of --sim-model on "
             "--gpu.")] = None,
    force_length: Annotated[str, typer.Option(
        help="How the output length is forced: vllm (ignore_eos + min_tokens), transformers "
             "(generation_config min/max_new_tokens) or none (max_tokens only).")] = "vllm",
    extra_body: Annotated[str | None, typer.Option(
        help="JSON object merged into every request body (e.g. '{\"temperature\": 0}').")]
    = None,
    timeout: Annotated[float, typer.Option(
        help="Seconds a request may take, from sending to its last token.")] = 600.0,
    max_concurrency: Annotated[int | None, typer.Option(
        help="Requests in flight at most; later ones wait in the client.", min=1)] = None,
    policy: Annotated[str | None, typer.Option(
        help="Send vLLM's integer `priority` per request, ranked by this llmsim policy (fcfs, "
             "sjf, or a predictor folder), also as vllm_xargs.llmsim_score so that llmsim's "
             "plug-in keeps it; the server must run --scheduling-policy priority.")] = None,
    server_policy: Annotated[str | None, typer.Option(
        help="Record that the server itself runs this llmsim policy (the vLLM plug-in), for "
             "`llmsim validate`.")] = None,
    send_output_len: Annotated[bool, typer.Option(
        help="Send each request's true output length in vllm_xargs.llmsim_output_len, for "
             "the vLLM plug-in's oracle policy (LLMSIM_POLICY=sjf).")] = False,
    tokenizer: Annotated[str | None, typer.Option(
        help="Hugging Face tokenizer (path or cached name) to cut synthetic prompts to the "
             "exact token count.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic prompts.")] = 0,
    warmup: Annotated[int, typer.Option(
        help="Requests sent first and not recorded; if all fail, nothing is run.", min=0)] = 1,
    max_num_seqs: Annotated[int, typer.Option(help="The server's max_num_seqs (recorded).",
                                              min=1)] = 256,
    max_num_batched_tokens: Annotated[int, typer.Option(
        help="The server's max_num_batched_tokens (recorded).", min=1)] = 8192,
    block_size: Annotated[int, typer.Option(help="The server's KV block size (recorded).",
                                            min=1)] = 16,
    gpu_memory_utilization: Annotated[float, typer.Option(
        help="The server's gpu_memory_utilization (recorded).")] = 0.9,
    num_gpu_blocks: Annotated[int | None, typer.Option(
        help="The server's KV blocks ('# GPU blocks' in vLLM's log; recorded).", min=1)] = None,
    async_scheduling: Annotated[bool, typer.Option(
        "--async-scheduling/--no-async-scheduling",
        help="The server overlaps a step's CPU work with the previous step (vLLM's default on "
             "GPUs; vLLM-CPU turns it off); recorded.")] = True,
    enable_prefix_caching: Annotated[bool, typer.Option(
        help="The server caches prefixes, vLLM's default (recorded: `llmsim validate` then "
             "simulates llmsim's prefix cache over the trace's block ids, which shape the "
             "prompts either way).")]
    = True,
    sim_model: SimModel = None, gpu: Gpu = None, tp: Tp = None, profile: ProfileOpt = None,
    out: Annotated[Path | None, typer.Option(
        help="Result JSON (default llmsim-out/replay-<time>.json).")] = None,
    force: Force = False,
    save_texts: Annotated[bool, typer.Option(help="Keep the generated texts.")] = False,
) -> None:
    """Send a trace to a real OpenAI-compatible server at its arrival times and record
    TTFT, TPOT, ITL and E2E per request, in vLLM `bench serve`'s result fields."""
    from ..policies import get_policy
    from . import replay as rp

    # Everything is checked before the first request is sent.
    body = _json_object(extra_body, "--extra-body")
    settings = rp.ReplaySettings(rp.completions_url(endpoint), model, force_length, body,
                                 timeout_s=timeout, max_concurrency=max_concurrency,
                                 send_output_len=send_output_len)
    engine = EngineConfig(max_num_seqs, max_num_batched_tokens, block_size,
                          gpu_memory_utilization, num_gpu_blocks,
                          async_scheduling=async_scheduling,
                          enable_prefix_caching=enable_prefix_caching)
    spec = WorkloadSpec(None if trace is None else str(trace), requests=requests, rate=rate,
                        load=load)
    if load is not None and sim_model is None:
        raise ValueError("--load is a fraction of the simulated capacity: give --sim-model "
                         "(and --gpu) to price it, or use --rate")
    if server_policy is not None:
        get_policy(server_policy)  # unknown names fail here
    out = out or default_out("replay", ".json")
    check_file(out, force)
    sim = {"model": sim_model, "gpu": gpu or "h100", "tp": tp or 1, "profile": profile} \
        if sim_model is not None else {"model": None, "gpu": gpu, "tp": tp, "profile": profile}
    deployment = None
    if load is not None:
        deployment = Deployment(sim["model"], sim["gpu"], sim["tp"], engine=engine,
                                profile=profile)
    workload, capacity = spec.build(deployment)
    if capacity is not None:
        rate = load * capacity
    priorities = None
    if policy is not None:
        priorities = rp.client_priorities(workload, _policy_for(policy, workload))
    tok = _load_tokenizer(tokenizer) if tokenizer else None
    prompts = rp.synthetic_prompts(workload, np.random.default_rng(seed), tok)

    with progress(">10") as bar:
        task = bar.add_task("replaying", total=len(workload))
        run = rp.replay(workload, settings, prompts, priorities,
                        rp.describe_prompts(workload, tokenizer),
                        progress=lambda done: bar.update(task, completed=done), warmup=warmup)
    meta = {"llmsim_version": __version__, "command": " ".join(["llmsim", *sys.argv[1:]]),
            "tokenizer": tokenizer, "seed": seed, "policy": policy or server_policy,
            "scheduling_policy": "priority" if priorities is not None else None,
            "engine": engine.to_dict(), "deployment": sim, "load": load, "rate": rate}
    doc = rp.bench_json(run, meta, save_texts)
    rp.write_bench_json(out, doc)
    _print_replay(doc, out)
    if not doc["completed"]:
        err.print(f"[bold red]no request completed[/]; first error: {doc['errors'][0]}",
                  highlight=False)
        raise typer.Exit(1)


def _policy_for(name: str, workload):
    from ..policies import get_policy
    from ..predictors import is_predictor_name, load_predictor_policy

    if is_predictor_name(name):
        return load_predictor_policy(name, workload)
    return get_policy(name)


def _load_tokenizer(name: str):
    try:
        from transformers import AutoTokenizer
    except ImportError as e:
        raise ImportError(f"--tokenizer needs transformers ({e})") from None
    try:
        return AutoTokenizer.from_pretrained(name)
    except OSError as e:
        raise FileNotFoundError(f"--tokenizer {name}: {one_line(e)}") from None


def _json_object(text: str | None, option: str) -> dict:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{option} is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option} must be a JSON object, got {text!r}")
    return value


def _print_replay(doc: dict, out: Path) -> None:
    table = Table(title=f"{doc['num_prompts']} requests to {doc['model_id']}",
                  title_style="bold")
    for head in ("done", "failed", "req/s", "out tok/s", "TTFT mean", "TTFT p99", "TPOT mean",
                 "ITL mean", "E2E mean", "E2E p99"):
        table.add_column(head, justify="right")
    table.add_row(str(doc["completed"]), str(doc["failed"]), num(doc["request_throughput"]),
                  num(doc["output_throughput"]),
                  *(_ms(doc[k]) for k in ("mean_ttft_ms", "p99_ttft_ms", "mean_tpot_ms",
                                           "mean_itl_ms", "mean_e2el_ms", "p99_e2el_ms")))
    console.print(table)
    if doc["failed"]:
        first = next(e for e in doc["errors"] if e)
        err.print(f"[yellow]{doc['failed']} requests failed[/] (kept in the results); first "
                  f"error: {first[:200]}", highlight=False)
    if doc["llmsim"]["short_outputs"]:
        err.print(f"[yellow]{doc['llmsim']['short_outputs']} requests returned another output "
                  "length than asked[/]: check --force-length for this server", highlight=False)
    console.print(f"results in [bold]{out}[/]")


@user_errors
def validate(
    results: Annotated[Path, typer.Argument(help="Result JSON of `llmsim replay`.")],
    model: Annotated[str | None, typer.Option(
        help="Model shape preset or config.json to simulate (default: the run's --sim-model).")]
    = None,
    gpu: Annotated[str | None, typer.Option(
        help="GPU preset (default: the run's --gpu, else h100).")] = None,
    tp: Tp = None, profile: ProfileOpt = None,
    policy: Annotated[str | None, typer.Option(
        help="Simulate this policy instead of what the run recorded.")] = None,
    engine_overhead_ms: Annotated[float, typer.Option(
        help="The engine's own work per iteration beyond the model's kernels, added to the "
             "cost model (measure it: one request alone, real TPOT minus simulated).",
        min=0)] = 0.0,
    out: Annotated[Path | None, typer.Option(
        help="Output folder for validation.json and cdf.png (default "
             "llmsim-out/validate-<time>).")] = None,
    force: Force = False,
) -> None:
    """Simulate a real run's workload, engine settings and policy, and show the prediction
    beside the measurement: TTFT, TPOT, E2E and throughput, with relative errors."""
    from ..files import write_folder_atomic, write_json
    from . import validate as va

    out = out or default_out("validate")
    check_folder(out, force)
    real = va.load_measured_run(results)
    recorded = real.deployment
    model = model or recorded.get("model")
    if not model:
        raise ValueError(f"{results} does not say which model shape to simulate: give --model")
    deployment = Deployment(model, gpu or recorded.get("gpu") or "h100",
                            tp or recorded.get("tp") or 1,
                            profile=profile or recorded.get("profile"),
                            engine_overhead_s=engine_overhead_ms / 1e3)
    deployment.cost_model()  # an unknown model, GPU or profile fails before anything runs
    v = va.validate(real, deployment, policy=policy)

    def fill(tmp: Path) -> None:
        write_json(tmp / "validation.json", va.to_json(v))
        try:
            va.plot_cdfs(v, tmp / "cdf.png")
        except ImportError:
            err.print("[yellow]matplotlib is not installed: no cdf.png[/] (pip install "
                      "'llmsim[plot]')")

    write_folder_atomic(out, fill)
    _print_validation(v)
    console.print(f"validation in [bold]{out}[/]")


def _print_validation(v) -> None:
    c = v.config
    title = (f"{c['compared']} requests of {c['results']}: simulated {c['deployment']['model']} "
             f"on {c['deployment']['gpu']}, policy {c['policy']['name']}")
    table = Table(title=title, caption=f"costs: {c['cost_model']}; error = (sim - real) / real",
                  title_style="bold")
    for head, justify in (("metric", "left"), ("stat", "left"), ("real", "right"),
                          ("sim", "right"), ("error", "right")):
        table.add_column(head, justify=justify)
    for name in ("ttft", "tpot", "e2e"):
        row = v.table[name]
        for i, stat in enumerate(("mean", "p50", "p90", "p99")):
            table.add_row(name.upper() if i == 0 else "", stat, ms(row["real"][stat], 1),
                          ms(row["sim"][stat], 1), pct(row["rel_error"][stat]),
                          end_section=i == 3)
    rates = v.table["throughput"]
    for key, label in (("requests_per_s", "req/s"), ("output_tokens_per_s", "out tok/s")):
        table.add_row("throughput" if key == "requests_per_s" else "", label,
                      num(rates["real"][key]), num(rates["sim"][key]),
                      pct(rates["rel_error"][key]))
    console.print(table)
    if c["failed_in_real_run"]:
        err.print(f"[yellow]{c['failed_in_real_run']} requests failed in the real run and are "
                  "left out on both sides[/]")


def _ms(milliseconds: float | None) -> str:
    """bench serve's figures are in ms already."""
    return ms(None if milliseconds is None else milliseconds / 1e3, 1)


@user_errors
def run_transformers(
    hf_config: Annotated[str, typer.Option(
        help="A transformers config.json (or its folder) whose model is built with random "
             "weights, or 'tiny' (a 2-layer Llama for a CPU).")] = "tiny",
    trace: Annotated[Path | None, typer.Option(
        help="Trace file (see `llmsim trace info`); default: the bundled Azure sample.")] = None,
    requests: Annotated[int | None, typer.Option(help="Serve only the first N requests.",
                                                 min=1)] = None,
    rate: Annotated[float | None, typer.Option(
        help="Rescale the trace's arrivals to this mean rate (req/s).")] = None,
    policy: Annotated[str, typer.Option(
        help="llmsim policy ordering the engine's waiting queue (fcfs, sjf, or a predictor "
             "folder); ranked once per request, on arrival.")] = "fcfs",
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16.")] = "float32",
    num_blocks: Annotated[int, typer.Option(help="KV cache blocks.", min=1)] = 256,
    block_size: Annotated[int, typer.Option(help="Tokens per KV block.", min=1)] = 16,
    max_batch_tokens: Annotated[int, typer.Option(help="Token budget per step.", min=1)] = 256,
    max_requests_per_batch: Annotated[int, typer.Option(
        help="Requests per step at most.", min=1)] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the weights and the prompt tokens.")] = 0,
    sim_model: SimModel = None, gpu: Gpu = None,
    out: Annotated[Path | None, typer.Option(
        help="Result JSON (default llmsim-out/transformers-<time>.json).")] = None,
    force: Force = False,
) -> None:
    """Serve a trace on transformers' continuous batching in this process, with an llmsim
    policy ordering its queue, and record it as `llmsim replay` does (for `validate`)."""
    from . import replay as rp
    from . import transformers_cb as cb

    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"--dtype must be float32, bfloat16 or float16, got {dtype!r}")
    spec = WorkloadSpec(None if trace is None else str(trace), requests=requests, rate=rate)
    out = out or default_out("transformers", ".json")
    check_file(out, force)
    workload, _ = spec.build()
    chosen = _policy_for(policy, workload)
    cb.static_ranks(workload, chosen)  # a policy that re-ranks fails before the model loads
    config = _hf_config(hf_config)
    need = int((workload.prompt_tokens + workload.output_tokens).max())
    if getattr(config, "max_position_embeddings", need) < need:
        raise ValueError(f"a request needs {need} positions; the model has "
                         f"{config.max_position_embeddings}: use --requests or another config")
    if need > num_blocks * block_size:
        raise ValueError(f"a request needs {need} tokens of KV cache; --num-blocks {num_blocks} "
                         f"x --block-size {block_size} hold {num_blocks * block_size}")
    settings = cb.EngineSettings(num_blocks, block_size, max_batch_tokens,
                                 max_requests_per_batch, device=device, dtype=dtype)
    model = cb.random_model(config, settings, seed)
    with progress(">10") as bar:
        task = bar.add_task("serving", total=len(workload))
        run = cb.run_workload(model, workload, chosen, settings, seed,
                              progress=lambda done: bar.update(task, completed=done))
    meta = {"llmsim_version": __version__, "command": " ".join(["llmsim", *sys.argv[1:]]),
            "policy": policy, "engine": cb.engine_config(settings).to_dict(),
            "transformers_engine": {"hf_config": hf_config, "device": device, "dtype": dtype,
                                    "num_blocks": num_blocks, "block_size": block_size,
                                    "max_batch_tokens": max_batch_tokens,
                                    "max_requests_per_batch": max_requests_per_batch},
            "deployment": {"model": sim_model, "gpu": gpu, "tp": 1, "profile": None},
            "rate": rate, "seed": seed}
    doc = rp.bench_json(cb.replay_run(run, workload, f"random-weights:{hf_config}"), meta)
    rp.write_bench_json(out, doc)
    _print_replay(doc, out)


def _hf_config(spec: str):
    from transformers import AutoConfig, LlamaConfig

    if spec == "tiny":
        # the shape of llmsim's `tiny` preset, so that `llmsim calibrate --model tiny` prices it
        return LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=32768)
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"--hf-config {spec}: no such file or folder")
    return AutoConfig.from_pretrained(path.parent if path.is_file() else path)
