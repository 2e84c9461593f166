"""Bad input is refused before any work, in one line with exit status 2, and nothing is
written: the cases a new user ran into (issue 18), one test each. Also the feedback a
long command gives: plain progress lines off a terminal, tables that fit 80 columns."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from llmsim.cli import app
from llmsim.cli_kit import PlainProgress, duration

runner = CliRunner(env={"COLUMNS": "80"})
TRACE = "arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,10,5\n2,30,8\n"


def invoke(tmp_path, *args):
    trace = tmp_path / "t.csv"
    if not trace.exists():
        trace.write_text(TRACE)
    return runner.invoke(app, [str(a) for a in args])


def refused(res, *words):
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    for w in words:
        assert w in lines[0], lines[0]


def hf_config(tmp_path, **fields):
    cfg = {"num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 4096,
           "num_hidden_layers": 32, "intermediate_size": 14336, "vocab_size": 128256, **fields}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.mark.parametrize("args, words", [
    (["--tp", "3"], ["--tp 3", "32 attention heads"]),
    (["--model", "qwen2.5-7b", "--tp", "7"], ["--tp 7", "4 KV heads"]),
    (["--load", "inf"], ["--load", "finite"]),
    (["--rate", "inf"], ["--rate", "finite"]),
    (["--rate", "nan"], ["--rate"]),
    (["--slo-ttft-ms", "-5"], ["TTFT objective", "> 0"]),
    (["--slo-tpot-ms", "inf"], ["TPOT objective"]),
    (["--draw", "1000000000000"], ["--draw", "memory"]),
    (["--replicas", "1000000000"], ["replicas", "memory"]),
    (["--seed", "-1"], ["--seed"]),
    (["--tp", "abc"], ["--tp", "run --help"]),
    (["--no-such-option"], ["--no-such-option"]),
])
def test_bad_options(tmp_path, args, words):
    out = tmp_path / "out"
    res = invoke(tmp_path, "run", "--trace", tmp_path / "t.csv", "--out", out, *args)
    refused(res, *words)
    assert not out.exists()


def test_hf_config_with_no_layers(tmp_path):
    res = invoke(tmp_path, "run", "--trace", tmp_path / "t.csv", "--rate", "1", "--model",
                 hf_config(tmp_path, num_hidden_layers=0), "--out", tmp_path / "out")
    refused(res, "num_hidden_layers", ">= 1")
    res = invoke(tmp_path, "run", "--trace", tmp_path / "t.csv", "--rate", "1", "--model",
                 hf_config(tmp_path, num_key_value_heads=5), "--out", tmp_path / "out")
    refused(res, "not a multiple")


def test_simultaneous_arrivals(tmp_path):
    trace = tmp_path / "same.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n3,10,5\n3,10,5\n3,12,4\n")
    res = invoke(tmp_path, "run", "--trace", trace, "--rate", "2", "--out", tmp_path / "a")
    refused(res, "same instant", "--arrival-process")
    res = invoke(tmp_path, "run", "--trace", trace, "--out", tmp_path / "b")
    assert res.exit_code == 0, res.output
    assert "all arriving at once" in res.output and "nan" not in res.output


def test_an_empty_folder_is_not_an_unknown_policy(tmp_path):
    (tmp_path / "mypred").mkdir()
    os.chdir(tmp_path)
    res = invoke(tmp_path, "run", "--trace", "t.csv", "--policy", "mypred", "--out", "o")
    refused(res, "mypred", "not a predictor", "card.json")


def test_trace_convert_needs_force(tmp_path):
    out = tmp_path / "t.parquet"
    assert invoke(tmp_path, "trace", "convert", tmp_path / "t.csv", out).exit_code == 0
    before = out.read_bytes()
    refused(invoke(tmp_path, "trace", "convert", tmp_path / "t.csv", out), "--force")
    assert out.read_bytes() == before
    assert invoke(tmp_path, "trace", "convert", tmp_path / "t.csv", out, "--force"
                  ).exit_code == 0


def test_a_truncated_point_file_is_named(tmp_path):
    args = ["sweep", "--policies", "fcfs", "--rates", "5,6", "--seeds", "0", "--requests",
            "20", "--jobs", "1", "--out", str(tmp_path / "sw")]
    assert runner.invoke(app, args).exit_code == 0
    (tmp_path / "sw" / "results.parquet").unlink()  # as if stopped before the end
    point = next((tmp_path / "sw" / "points").glob("*.json"))
    point.write_text(point.read_text()[:40])
    refused(runner.invoke(app, args), point.name, "delete it")
    refused(runner.invoke(app, ["report", str(tmp_path / "sw")]), point.name)


def test_compare_table_fits_80_columns_with_units_by_size(tmp_path):
    res = invoke(tmp_path, "compare", "--policies", "fcfs,sjf,srpt+sp", "--requests", "200",
                 "--slo-ttft-ms", "200", "--out", tmp_path / "o")
    assert res.exit_code == 0, res.output
    assert max(len(line) for line in res.stdout.splitlines()) <= 80, res.stdout
    assert "…" not in res.stdout
    assert duration(1584.127) == "26.4 min" and duration(0.193) == "193 ms"
    assert duration(7.444) == "7.44 s" and duration(0.0042) == "4.2 ms"


def test_plain_progress_lines(capsys):
    with PlainProgress(every=0.05) as bar:
        task = bar.add_task("sweep", total=8)
        for _ in range(8):
            bar.advance(task)
            import time

            time.sleep(0.03)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("sweep: ") for line in lines), err
    assert lines[-1].startswith("sweep: 8/8 (100%)") and lines[-1].endswith("(done)")
