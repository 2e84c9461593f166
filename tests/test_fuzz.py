"""Fuzzing what a user can hand llmsim: every trace loader, every option of `run` and
`compare`, the sweep TOML and the sweep's flags, the trace commands, and the files the other
commands read. One contract for every case:

- exit 0, and every request accounted for (completed + rejected = requests, in every
  policy's summary and records), or
- exit 2, one line on stderr (`error: ...`), and nothing written (the folder the command
  ran in is unchanged, hidden temporaries included);
- never a traceback, never another exit status.

Each test draws `LLMSIM_FUZZ_EXAMPLES` cases (default: the CI counts below, a few minutes
in all); the distinct cases run are counted and printed in pytest's summary.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow.parquet as pq
import typer.main
import typer.testing
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from llmsim.cli import app
from llmsim.errors import USER_ERRORS
from llmsim.traces import load_trace
from llmsim.traces.loaders import FORMATS

from .castillo_synth import write_castillo

CASES: dict[str, set] = defaultdict(set)  # test -> distinct cases run, for the summary
OUTCOMES: dict[str, Counter] = defaultdict(Counter)  # test -> exit statuses seen


def examples(ci: int) -> settings:
    n = int(os.environ.get("LLMSIM_FUZZ_EXAMPLES", ci))
    # no "explain" phase: its line tracer slows every simulation tenfold while shrinking
    phases = [Phase.explicit, Phase.generate]
    if "LLMSIM_FUZZ_NO_SHRINK" not in os.environ:
        phases.append(Phase.shrink)
    return settings(max_examples=n, deadline=None, phases=phases, database=None,
                    derandomize="LLMSIM_FUZZ_SEED" not in os.environ,
                    suppress_health_check=list(HealthCheck))


class FastRunner(CliRunner):
    """typer builds llmsim's click command tree anew on every invoke (~0.7 s here): build
    it once."""

    command = typer.main.get_command(app)

    def invoke(self, app, args=None, **kwargs):
        with mock.patch.object(typer.testing, "_get_command", lambda _: self.command):
            return super().invoke(app, args, **kwargs)


runner = FastRunner(env={"COLUMNS": "80", "LLMSIM_PROGRESS_SECONDS": "3600"})


def tree(folder: Path) -> dict[str, int]:
    """Every path under `folder` (hidden ones too) with its size; folders as -1."""
    return {str(p.relative_to(folder)): (-1 if p.is_dir() else p.stat().st_size)
            for p in sorted(folder.rglob("*"))}


def invoke(folder: Path, args: list[str]):
    """Run llmsim in `folder` (so that any default output would land there)."""
    old = os.getcwd()
    os.chdir(folder)
    try:
        return runner.invoke(app, args)
    finally:
        os.chdir(old)


def check_contract(res, folder: Path, before: dict, test: str) -> None:
    """Exit 0, or exit 2 with one line and nothing written; never a traceback."""
    OUTCOMES[test][res.exit_code] += 1
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"{type(res.exception).__name__}: {res.exception}\n{res.output}"
                             ) from res.exception
    assert "Traceback" not in res.output, res.output
    assert res.exit_code in (0, 2), f"exit {res.exit_code}: {res.output}"
    if res.exit_code == 2:
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
        assert tree(folder) == before, f"written despite the error: {res.stderr}"


def accounted(out: Path, expected: int) -> None:
    """Every policy's summary and records hold every request, completed or rejected."""
    summary = json.loads((out / "summary.json").read_text())
    assert summary
    for policy, s in summary.items():
        assert s["requests"] == expected, (policy, s["requests"], expected)
        assert s["completed"] + s["rejected"] == expected, (policy, s)
        table = pq.read_table(out / policy / "requests.parquet")
        assert table.num_rows == expected
        done = ~np.isnan(table.column("finish").to_numpy())
        rejected = table.column("rejected").to_numpy()
        assert np.all(done ^ rejected), "a request neither finished nor rejected"


# --- values: the right kind, the wrong kind, and the extremes ------------------------------

NUMBERS = st.one_of(
    st.integers(-5, 20), st.integers(-(10 ** 15), 10 ** 15),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0, 0.0, -0.0, 1e-300, 1e300, float("nan"), float("inf"), float("-inf")]))
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)


def value(kind: st.SearchStrategy) -> st.SearchStrategy[str]:
    """Mostly the option's own kind of value, sometimes any number or text."""
    return st.one_of(kind, NUMBERS, TEXT).map(str)


def small_ints(lo: int, hi: int) -> st.SearchStrategy:
    return st.integers(lo, hi)


POLICY_NAMES = ["fcfs", "sjf", "srpt", "mlfq", "sjf+sp", "mlfq+sp", "fcfs,sjf", "srpt,mlfq",
                "FCFS", "lottery", "", ",", "fcfs,fcfs", "sjf+xx", "./no/such/predictor",
                "emptydir", "emptydir+sp"]
MODELS = ["llama-3-8b", "llama-3.1-70b", "qwen2.5-7b", "qwen3-8b", "mistral-7b", "tiny",
          "gpt-5", "config.json", "badconfig.json", "missing.json"]
ENGINE = {  # sane ranges (for --load's probe) and anything
    "--max-num-seqs": (small_ints(16, 512), small_ints(-2, 10 ** 7)),
    "--max-num-batched-tokens": (small_ints(512, 16384), small_ints(-2, 10 ** 9)),
    "--block-size": (st.sampled_from([8, 16, 32]), small_ints(-2, 10 ** 6)),
    "--num-gpu-blocks": (small_ints(2000, 10 ** 6), small_ints(-2, 10 ** 13)),
}
RUN_OPTIONS = {
    "--policies": st.sampled_from(POLICY_NAMES),
    "--requests": value(small_ints(-2, 60)),
    "--draw": value(st.one_of(small_ints(0, 60), st.just(10 ** 12))),
    "--rate": value(st.floats(0.01, 1e4)),
    "--load": value(st.floats(0.05, 3.0)),
    "--arrival-process": st.sampled_from(["trace", "poisson", "gamma", "uniform", ""]),
    "--burstiness": value(st.floats(0.01, 10)),
    "--seed": value(small_ints(-3, 2 ** 70)),
    "--model": st.sampled_from(MODELS),
    "--gpu": st.sampled_from(["h100", "h200", "a100", "H100", "tpu-v9"]),
    "--tp": value(small_ints(-1, 16)),
    "--replicas": value(st.one_of(small_ints(-1, 8), st.just(10 ** 9))),
    "--router": st.sampled_from(["round-robin", "least-tokens", "random"]),
    "--gpu-memory-utilization": value(st.floats(0.01, 1.0)),
    "--slo-ttft-ms": value(st.floats(0.1, 1e5)),
    "--slo-tpot-ms": value(st.floats(0.1, 1e4)),
    "--slo-e2e-ms": value(st.floats(0.1, 1e6)),
    "--simulator": st.sampled_from(["fast", "reference", "turbo"]),
    "--profile": st.sampled_from(["nosuch", "badprofile.json", "config.json"]),
    "--scoring-delay-ms": value(st.floats(0, 100)),
    "--engine-overhead-ms": value(st.floats(0, 10)),
    "--trace-model": st.sampled_from(["Llama-3.1-8B-Instruct", "nobody"]),
    "--split": st.sampled_from(["test", "train", "nosplit"]),
    "--out": st.sampled_from(["existing-file", "existing-file/below", "results-of-user",
                              "fresh/nested/out"]),
    "--force": st.just(None),
    "--trace": st.sampled_from(["trace.csv", "missing.csv", "equal-times.csv", "castillo",
                                "empty.csv"]),
}


def write_inputs(folder: Path, rng: np.random.Generator, rows: int) -> None:
    """The files the options above name."""
    arrival = np.sort(rng.uniform(0, 10, rows)).round(6)
    prompt = rng.integers(1, 3000, rows)
    output = rng.integers(1, 800, rows)
    lines = ["arrival_s,prompt_tokens,output_tokens"]
    lines += [f"{a},{p},{o}" for a, p, o in zip(arrival, prompt, output, strict=True)]
    (folder / "trace.csv").write_text("\n".join(lines) + "\n")
    (folder / "equal-times.csv").write_text(
        "arrival_s,prompt_tokens,output_tokens\n" + "".join(f"5,{p},{o}\n" for p, o in
                                                            zip(prompt, output, strict=True)))
    (folder / "empty.csv").write_text("arrival_s,prompt_tokens,output_tokens\n")
    write_castillo(folder / "castillo", prompts_per_split=(6, 3, 4), seed=int(rng.integers(99)))
    (folder / "existing-file").write_text("the user's own file")
    (folder / "results-of-user").mkdir()
    (folder / "results-of-user" / "notes.txt").write_text("the user's own notes")
    (folder / "emptydir").mkdir()
    (folder / "config.json").write_text(json.dumps(
        {"num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 4096,
         "num_hidden_layers": 32, "intermediate_size": 14336, "vocab_size": 128256}))
    (folder / "badconfig.json").write_text(json.dumps(
        {"num_attention_heads": 32, "hidden_size": 4096, "num_hidden_layers": 0,
         "intermediate_size": 14336, "vocab_size": 128256}))
    (folder / "badprofile.json").write_text('{"format": "nope"}')


def expected_requests(args: dict, rows: int) -> int:
    if "--draw" in args:
        return int(args["--draw"])
    n = {"trace.csv": rows, "equal-times.csv": rows, "castillo": 4 * 2}.get(
        args.get("--trace", "trace.csv"))
    if args.get("--trace") == "castillo" and "--trace-model" not in args:
        n = 13 * 2  # every prompt, both models
    if args.get("--trace") == "castillo" and "--split" in args and "--trace-model" in args:
        n = {"test": 4, "train": 6}.get(args["--split"], 0)
    elif args.get("--trace") == "castillo" and "--trace-model" in args:
        n = 13
    elif args.get("--trace") == "castillo" and "--split" in args:
        n = {"test": 4, "train": 6}.get(args["--split"], 0) * 2
    if "--requests" in args:
        n = min(n, int(args["--requests"]))
    return n


@examples(150)
@given(data=st.data(), command=st.sampled_from(["run", "compare"]),
       rows=st.integers(1, 30), seed=st.integers(0, 2 ** 32 - 1))
def test_run_and_compare_options(data, command, rows, seed):
    names = data.draw(st.lists(st.sampled_from(sorted(RUN_OPTIONS)), max_size=7, unique=True))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_inputs(folder, np.random.default_rng(seed), rows)
        args = {"--trace": "trace.csv", "--rate": "5", "--out": "out"}
        if "--load" in names or "--draw" in names:
            args.pop("--rate")
        for name in names:
            args[name] = data.draw(RUN_OPTIONS[name], label=name)
        sane = "--load" in args  # the capacity probe: keep the engine's budget realistic
        for name in data.draw(st.lists(st.sampled_from(sorted(ENGINE)), max_size=2,
                                       unique=True)):
            args[name] = str(data.draw(ENGINE[name][0 if sane else 1], label=name))
        argv = [command]
        for k, v in args.items():
            argv += [k] if v is None else [k, v]
        CASES["run/compare options"].add(repr(argv))
        before = tree(folder)
        res = invoke(folder, argv)
        check_contract(res, folder, before, "run/compare options")
        if res.exit_code == 0:
            accounted(folder / args["--out"], expected_requests(args, rows))


# --- loaders: every format, from well-formed to garbage -----------------------------------

FIELD_VALUES = st.one_of(st.integers(-3, 5000), st.integers(-(2 ** 70), 2 ** 70),
                         st.floats(allow_nan=True, allow_infinity=True), TEXT, st.none(),
                         st.booleans(), st.lists(st.integers(-2, 50), max_size=12))


def csv_cell(v) -> str:
    return "" if v is None else str(v).replace("\n", " ").replace(",", ";")


HEADERS = {
    "llmsim": ["arrival_s", "prompt_tokens", "output_tokens"],
    "azure": ["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
    "vidur": ["arrived_at", "num_prefill_tokens", "num_decode_tokens"],
    "vidur_stats": ["num_prefill_tokens", "num_decode_tokens"],
    "prompt_output": ["prompt", "output_len"],
}
JSON_FIELDS = {
    "mooncake": ["timestamp", "input_length", "output_length", "hash_ids"],
    "timed_trace": ["timestamp", "input_length", "output_length"],
    "prompt_output": ["prompt", "output_len"],
}


@st.composite
def trace_file(draw) -> tuple[str, str, bytes]:
    """(format, file name, content): rows of a format's fields with values of any kind,
    some fields missing, extra ones, or plain garbage."""
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    kind = draw(st.sampled_from(["rows", "rows", "rows", "garbage", "empty"]))
    if kind == "garbage":
        return fmt, "t.dat", draw(st.binary(max_size=300))
    if kind == "empty":
        return fmt, "t.csv", b""
    n = draw(st.integers(0, 8))
    good = st.integers(1, 4000)
    if fmt in HEADERS:
        header = list(HEADERS[fmt])
        if draw(st.booleans()):
            header = draw(st.permutations(header + draw(st.lists(TEXT.filter(
                lambda t: t and "," not in t and "\n" not in t), max_size=2))))
        if draw(st.integers(0, 5)) == 0 and header:
            header.pop(draw(st.integers(0, len(header) - 1)))
        lines = [",".join(header)]
        for i in range(n):
            cells = [csv_cell(draw(st.one_of(good, st.just(i), FIELD_VALUES))) for _ in header]
            lines.append(",".join(cells))
        return fmt, "t.csv", ("\n".join(lines) + "\n").encode()
    if fmt in JSON_FIELDS:
        lines = []
        for i in range(n):
            record = {k: draw(st.one_of(good, st.just(i), FIELD_VALUES))
                      for k in JSON_FIELDS[fmt] if draw(st.integers(0, 9))}
            lines.append(json.dumps(record))
        return fmt, "t.jsonl", ("\n".join(lines) + "\n").encode()
    if fmt == "sharegpt":
        convs = [{"id": str(i), "conversations": [
            {"from": draw(st.sampled_from(["human", "gpt", "system", "x"])),
             "value": draw(st.one_of(TEXT, FIELD_VALUES))}
            for _ in range(draw(st.integers(0, 4)))]} for i in range(n)]
        return fmt, "t.json", json.dumps(draw(st.one_of(st.just(convs), FIELD_VALUES))).encode()
    if fmt == "castillo":
        rows = [{"prompt_id": draw(st.one_of(st.just(f"p{i}"), FIELD_VALUES)),
                 "model": draw(st.sampled_from(["meta-llama--Llama-3.1-8B-Instruct", "", 5])),
                 "split": draw(st.sampled_from(["test", "train", "x", None])),
                 "input_size": draw(st.one_of(good, FIELD_VALUES)),
                 "output_sizes": draw(st.one_of(st.lists(good, min_size=10, max_size=10),
                                                FIELD_VALUES))} for i in range(n)]
        return fmt, "castillo_output_lengths.jsonl", "\n".join(map(json.dumps, rows)).encode()
    # parquet: a real Parquet file with columns of any kind, or bytes behind the magic
    if draw(st.booleans()):
        return fmt, "t.parquet", b"PAR1" + draw(st.binary(max_size=200))
    import pyarrow as pa

    cols = {k: draw(st.lists(st.one_of(good, st.floats(allow_nan=True)), min_size=n,
                             max_size=n)) for k in HEADERS["llmsim"] if draw(st.integers(0, 7))}
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(cols) if cols else pa.table({"x": [1]}), sink)
    return fmt, "t.parquet", sink.getvalue().to_pybytes()


@examples(300)
@given(case=trace_file(), named=st.booleans())
def test_every_loader(case, named):
    fmt, name, content = case
    CASES["loaders"].add((fmt, name, content, named))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / name
        path.write_bytes(content)
        target = folder if name.startswith("castillo") else path
        try:
            w = load_trace(target, fmt if named else None)
        except USER_ERRORS as e:
            text = str(e)
            assert text and "\n" not in text.strip() or isinstance(e, OSError), repr(e)
        else:
            assert len(w) == len(w.prompt_tokens) == len(w.output_tokens)
            assert np.all(w.prompt_tokens >= 1) and np.all(w.output_tokens >= 1)
            assert np.all(np.isfinite(w.arrival)) and np.all(np.diff(w.arrival) >= 0)
        argv = ["trace", "info", str(target)] + (["--format", fmt] if named else [])
        before = tree(folder)
        check_contract(invoke(folder, argv), folder, before, "loaders")


# --- the sweep: its TOML file and its flags ------------------------------------------------

TOML_KEYS = {
    "workload": {"trace": st.sampled_from(["trace.csv", "missing.csv", "equal-times.csv"]),
                 "requests": st.one_of(st.integers(1, 25), FIELD_VALUES),
                 "burstiness": st.one_of(st.floats(0.1, 4), FIELD_VALUES)},
    "deployment": {"model": st.sampled_from(MODELS), "gpu": st.sampled_from(["h100", "x"]),
                   "tp": st.one_of(st.integers(-1, 8), FIELD_VALUES),
                   "replicas": st.one_of(st.integers(0, 3), FIELD_VALUES),
                   "router": st.sampled_from(["round-robin", "least-tokens", "x"]),
                   "profile": st.sampled_from(["nosuch", "badprofile.json"])},
    "slo": {"ttft_ms": st.one_of(st.floats(1, 1e4), FIELD_VALUES),
            "tpot_ms": st.one_of(st.floats(1, 1e3), FIELD_VALUES),
            "e2e_ms": st.one_of(st.floats(1, 1e5), FIELD_VALUES)},
    "grid": {"policies": st.one_of(st.lists(st.sampled_from(["fcfs", "sjf", "srpt", "mlfq",
                                                             "sjf+sp", "x"]), max_size=2),
                                   FIELD_VALUES),
             "loads": st.one_of(st.lists(st.floats(0.2, 1.5), min_size=1, max_size=2),
                                FIELD_VALUES),
             "rates": st.one_of(st.lists(st.floats(0.5, 50), min_size=1, max_size=2),
                                FIELD_VALUES),
             "seeds": st.one_of(st.lists(st.integers(-1, 3), min_size=1, max_size=2),
                                FIELD_VALUES),
             "simulator": st.sampled_from(["fast", "reference", "x"])},
    "engines": {"name": st.sampled_from(["small", "big", "bad name!", ""]),
                "max_num_seqs": st.one_of(st.integers(8, 256), FIELD_VALUES),
                "max_num_batched_tokens": st.one_of(st.integers(512, 8192), FIELD_VALUES),
                "block_size": st.sampled_from([16, 32, 0]),
                "gpu_memory_utilization": st.one_of(st.floats(0.3, 0.95), FIELD_VALUES),
                "num_gpu_blocks": st.one_of(st.integers(100, 10 ** 5), FIELD_VALUES)},
    "capacity": {"tolerance": st.floats(0, 1)},
    "bogus": {"x": st.integers()},
}


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return "nan" if math.isnan(v) else repr(v)
    if isinstance(v, int):
        return str(v) if abs(v) < 2 ** 63 else f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if v is None:
        return '""'
    return json.dumps(str(v))  # a TOML basic string is a JSON string


@st.composite
def sweep_toml(draw) -> str:
    # always a small grid (the defaults are 96 points of 3,000 requests)
    doc = {"workload": {"trace": "trace.csv", "requests": 12},
           "grid": {"policies": ["fcfs"], "rates": [4.0], "seeds": [0]}}
    for section in draw(st.lists(st.sampled_from(sorted(TOML_KEYS)), max_size=4, unique=True)):
        keys = TOML_KEYS[section]
        chosen = draw(st.lists(st.sampled_from(sorted(keys)), max_size=3, unique=True))
        table = doc.setdefault(section, {})
        for key in chosen:
            table[key] = draw(keys[key])
    if "loads" in doc["grid"] and "rates" in doc["grid"] and draw(st.booleans()):
        del doc["grid"]["rates"]
    lines = []
    for section, table in doc.items():
        lines.append(f"[[{section}]]" if section == "engines" else f"[{section}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 15)):
        return text
    # cut short, but after the lines that keep the workload small (trace, requests)
    keep = len("\n".join(lines[:3]))
    return text[:draw(st.integers(keep, len(text)))]


@examples(40)
@given(text=sweep_toml(), flags=st.lists(st.sampled_from(
    [["--policies", "fcfs,x"], ["--loads", "0.5"], ["--rates", "nan"], ["--seeds", "a"],
     ["--requests", "0"], ["--out", "existing-file"], ["--out", "results-of-user"],
     ["--force"], ["--loads", "0.5:0.4:0.1"]]), max_size=2))
def test_sweep_toml_and_flags(text, flags):
    CASES["sweep"].add((text, repr(flags)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_inputs(folder, np.random.default_rng(0), 20)
        (folder / "sweep.toml").write_text(text)
        argv = ["sweep", "sweep.toml", "--jobs", "1", "--out", "sw"]
        for f in flags:
            argv += f
        before = tree(folder)
        res = invoke(folder, argv)
        check_contract(res, folder, before, "sweep")
        if res.exit_code == 0:
            out = folder / _out_of(argv)
            rows = pq.read_table(out / "results.parquet").to_pylist()
            record = json.loads((out / "sweep.json").read_text())
            assert len(rows) == len(record["points"])
            for row in rows:
                assert row["completed"] + row["rejected"] == row["requests"], row


def _out_of(argv: list[str]) -> str:
    return [b for a, b in zip(argv, argv[1:], strict=False) if a == "--out"][-1]


# --- the other commands: the files and options they take ----------------------------------

OTHER = [
    ["trace", "convert", "trace.csv", "out.parquet"],
    ["trace", "convert", "trace.csv", "existing-file"],
    ["trace", "convert", "trace.csv", "out.txt"],
    ["trace", "convert", "garbage.csv", "out.parquet"],
    ["trace", "convert", "trace.csv", "existing-file/below.parquet"],
    ["trace", "info", "castillo", "--model", "nobody"],
    ["trace", "info", "castillo", "--split", "nosplit"],
    ["trace", "info", "emptydir"],
    ["trace", "plot", "trace.csv", "--out", "existing-file"],
    ["report", "emptydir"],
    ["report", "garbage.csv"],
    ["report", "fake-sweep"],
    ["report", "missing"],
    ["validate", "garbage.csv"],
    ["validate", "config.json"],
    ["validate", "missing.json"],
    ["validate", "fake-run.json", "--out", "existing-file"],
    ["capacity-search", "sweep.toml"],
    ["capacity-search", "--ttft-p90-ms", "-3", "--requests", "10"],
    ["capacity-search", "--ttft-p90-ms", "500", "--low", "5"],
    ["capacity-search", "--ttft-p90-ms", "500", "--requests", "10", "--out", "a.txt"],
    ["evaluate-ranker", "emptydir", "--data", "castillo", "--model", "Llama-3.1-8B-Instruct"],
    ["evaluate-ranker", "length", "--data", "emptydir", "--model", "x"],
    ["train", "--data", "emptydir", "--model", "x", "--predictor", "length"],
    ["train", "--data", "castillo", "--model", "nobody", "--predictor", "length"],
    ["train", "--data", "castillo", "--model", "Llama-3.1-8B-Instruct", "--predictor", "x"],
    ["train", "--data", "castillo", "--model", "Llama-3.1-8B-Instruct", "--predictor",
     "length", "--out", "existing-file"],
    ["train", "--data", "castillo", "--model", "Llama-3.1-8B-Instruct", "--predictor",
     "length", "--out", "results-of-user", "--force"],
    ["train", "--data", "castillo", "--model", "Llama-3.1-8B-Instruct", "--set", "x"],
    ["calibrate", "--device", "cpu", "--model", "badconfig.json"],
    ["calibrate", "--device", "cpu", "--model", "tiny", "--dtype", "fp8"],
    ["calibrate", "--device", "cpu", "--model", "tiny", "--out", "results-of-user"],
    ["replay", "--model", "m", "--endpoint", "not a url", "--requests", "2"],
    ["replay", "--model", "m", "--extra-body", "[1,2]", "--requests", "2"],
    ["replay", "--model", "m", "--load", "0.5", "--requests", "2"],
    ["replay", "--model", "m", "--out", "existing-file", "--requests", "2"],
    ["run-transformers", "--dtype", "int3"],
    ["run-transformers", "--hf-config", "missing.json"],
    ["run-transformers", "--out", "existing-file"],
]


@examples(60)
@given(argv=st.sampled_from(OTHER), garbage=st.binary(max_size=200))
def test_other_commands_refuse_bad_input_cleanly(argv, garbage):
    CASES["other commands"].add((tuple(argv), garbage))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_inputs(folder, np.random.default_rng(0), 10)
        (folder / "garbage.csv").write_bytes(garbage)
        (folder / "fake-run.json").write_bytes(garbage)
        (folder / "fake-sweep").mkdir()
        (folder / "fake-sweep" / "sweep.json").write_bytes(garbage)
        (folder / "sweep.toml").write_bytes(garbage)
        before = tree(folder)
        res = invoke(folder, argv)
        check_contract(res, folder, before, "other commands")
