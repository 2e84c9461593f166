"""Trace loaders, arrival processes, synthesis, the bundled default and `llmsim trace`.

Fixtures in tests/fixtures/traces/ (see its README): one small file per format and, per
format, files with one malformed row at a known line. The real shared data are checked
when present (the `shared_data` fixture of conftest.py), else skipped.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from llmsim.traces import arrivals, azure, native, sharegpt, timed_jsonl, vidur
from llmsim.traces.block_hashes import BlockHashes
from llmsim.traces.castillo import load_castillo_pool
from llmsim.traces.cli import trace_app
from llmsim.traces.default import default_workload
from llmsim.traces.errors import TraceError
from llmsim.traces.loaders import FORMATS, load_trace, sniff_format
from llmsim.traces.native import write_parquet
from llmsim.traces.pool import PromptPool
from llmsim.traces.stats import summarize
from llmsim.traces.synth import synthesize
from llmsim.traces.tokens import approx_tokens
from llmsim.traces.workload import Workload, WorkloadError

FIX = Path(__file__).parent / "fixtures" / "traces"


def rng(seed=0):
    return np.random.default_rng(seed)


# -- loaders: good files ---------------------------------------------------------------

@pytest.mark.parametrize("name, fmt, rows, timed", [
    ("llmsim.csv", "llmsim", 4, True),
    ("azure.csv", "azure", 4, True),
    ("mooncake.jsonl", "mooncake", 4, True),
    ("timed_trace.jsonl", "timed_trace", 3, True),
    ("vidur.csv", "vidur", 3, True),
    ("vidur_stats.csv", "vidur_stats", 2, False),
    ("castillo", "castillo", 4, False),
    ("sharegpt.json", "sharegpt", 3, False),
    ("prompt_output.jsonl", "prompt_output", 3, False),
    ("prompt_output.csv", "prompt_output", 2, False),
])
def test_each_format_is_sniffed_and_loaded(name, fmt, rows, timed):
    path = FIX / name
    assert sniff_format(path) == fmt
    w = load_trace(path)
    assert len(w) == rows
    assert w.meta["format"] == fmt and w.meta["has_arrivals"] is timed
    assert f"{fmt} format" in w.source or fmt == "castillo"
    if not timed:
        assert not w.arrival.any() and "no arrival times" in w.source
    assert load_trace(path, format=fmt).source == w.source  # naming the format: same result


def test_llmsim_csv_optional_columns_and_blank_lines():
    w = load_trace(FIX / "llmsim.csv")
    assert list(w.arrival) == [0.0, 0.25, 0.25, 1.5]
    assert list(w.prompt_tokens) == [120, 64, 900, 33]
    assert list(w.output_tokens) == [30, 1, 250, 17]
    assert list(w.prompt_id) == [7, 8, 9, 10]
    assert list(w.model) == ["llama", "llama", "qwen", "qwen"]
    assert list(w.tenant) == ["a", "b", "a", ""]


def test_azure_times_are_seconds_from_the_first_row_and_duplicates_are_kept():
    w = load_trace(FIX / "azure.csv")
    assert list(w.arrival) == pytest.approx([0.0, 4.314579, 4.314579, 14.319410], abs=1e-9)
    assert list(w.prompt_tokens) == [374, 396, 879, 91]
    assert list(w.output_tokens) == [44, 109, 45, 389]
    assert w.meta["duplicate_arrivals"] == 1 and w.meta["rows_out_of_order"] == 0
    assert w.meta["start_time"] == "2023-11-16T18:15:46.680590000"


def test_azure_times_ignore_the_local_time_zone(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")  # a DST change would shift local-time parses
    w = load_trace(FIX / "azure.csv")
    assert w.arrival[1] == pytest.approx(4.314579, abs=1e-9)


def test_byte_order_mark_crlf_and_zone_offsets(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"\xef\xbb\xbfTIMESTAMP,ContextTokens,GeneratedTokens\r\n"
                     b"2023-11-16 18:15:46.6805900+00:00,374,44\r\n"
                     b"2023-11-16 19:15:50.9951690+01:00,396,109\r\n")
    w = load_trace(path)
    assert w.meta["format"] == "azure" and list(w.arrival) == pytest.approx([0, 4.314579])


def test_mooncake_milliseconds_and_block_hashes():
    w = load_trace(FIX / "mooncake.jsonl")
    assert list(w.arrival) == [0.0, 0.0, 3.0, 5.999]
    h = w.meta["hash_ids"]
    assert isinstance(h, BlockHashes) and len(h) == 4 and h.block_tokens == 512
    assert list(h.of(0)) == list(range(14)) and list(h.of(3)) == [0, 17]
    assert list(h.take(np.array([3, 1])).of(1)) == [0, 14]
    assert "hash_ids" not in load_trace(FIX / "mooncake.jsonl", keep_hash_ids=False).meta


def test_timed_trace_seconds_and_multiplier():
    w = load_trace(FIX / "timed_trace.jsonl")
    assert list(w.arrival) == [0.0, 0.5, 1.25]
    half = load_trace(FIX / "timed_trace.jsonl", sec_multiplier=0.5)
    assert list(half.arrival) == [0.0, 0.25, 0.625]
    # a Mooncake file read as vLLM is told to read it gives Mooncake's times
    as_vllm = load_trace(FIX / "mooncake.jsonl", format="timed_trace", sec_multiplier=1e-3)
    assert np.allclose(as_vllm.arrival, load_trace(FIX / "mooncake.jsonl").arrival)


def test_vidur_stats_has_lengths_but_no_arrivals():
    w = load_trace(FIX / "vidur_stats.csv")
    assert list(w.prompt_tokens) == [3772, 2015] and list(w.output_tokens) == [54, 156]
    assert list(w.arrival) == [0.0, 0.0] and w.meta["duplicate_arrivals"] == 0


def test_sharegpt_uses_the_first_two_turns_and_a_labelled_approximation():
    w = load_trace(FIX / "sharegpt.json")
    # ceil(chars / 4): 30 -> 8 and 31 -> 8; 14 -> 4 and "" -> 1; 7 -> 2 and 19 -> 5
    assert list(w.prompt_tokens) == [8, 4, 2] and list(w.output_tokens) == [8, 1, 5]
    assert w.prompt_text[0] == "What is the capital of France?"
    assert w.meta["skipped_short"] == 1 and "approximate" in w.meta["token_counts"]
    assert "approximate" in w.source and "1 conversations with fewer than 2 turns" in w.source
    given = load_trace(FIX / "sharegpt_lengths.json")
    assert list(given.prompt_tokens) == [7, 4] and list(given.output_tokens) == [8, 1]
    assert "from the file" in given.meta["token_counts"]


def test_prompt_output_jsonl_and_csv():
    w = load_trace(FIX / "prompt_output.jsonl")
    assert list(w.prompt_tokens) == [7, 11, 1] and list(w.output_tokens) == [20, 300, 1]
    assert "approximate" in w.meta["token_counts"]
    c = load_trace(FIX / "prompt_output.csv")
    assert list(c.prompt_tokens) == [6, 1] and list(c.output_tokens) == [128, 7]
    assert list(c.prompt_text) == ["Summarise this, please", "hello"]


def test_approx_tokens():
    assert list(approx_tokens(["", "a", "abcd", "abcde", "x" * 400])) == [1, 1, 1, 2, 100]


# -- loaders: bad rows -------------------------------------------------------------------

@pytest.mark.parametrize("name, line, message", [
    ("llmsim_bad_missing.csv", 3, "missing field 'output_tokens'"),
    ("llmsim_bad_negative.csv", 4, "field 'prompt_tokens' must be >= 1, got -10"),
    ("llmsim_bad_nonnumeric.csv", 3, "field 'output_tokens' is not a number: 'lots'"),
    ("azure_bad_missing.csv", 3, "missing field 'ContextTokens'"),
    ("azure_bad_negative.csv", 4, "field 'GeneratedTokens' must be >= 1, got 0"),
    ("azure_bad_nonnumeric.csv", 3, "field 'TIMESTAMP' is not a time: 'yesterday'"),
    ("mooncake_bad_missing.jsonl", 2, "missing field 'input_length'"),
    ("mooncake_bad_negative.jsonl", 3, "field 'output_length' must be >= 1, got -4"),
    ("mooncake_bad_nonnumeric.jsonl", 2, "field 'timestamp' is not a time: 'soon'"),
    ("mooncake_bad_json.jsonl", 2, "not valid JSON"),
    ("timed_trace_bad_missing.jsonl", 2, "missing field 'output_length'"),
    ("timed_trace_bad_negative.jsonl", 2, "field 'timestamp' must be >= 0, got -0.5"),
    ("timed_trace_bad_nonnumeric.jsonl", 1, "field 'input_length' is not a number: '12x'"),
    ("vidur_bad_missing.csv", 3, "missing field 'num_decode_tokens'"),
    ("vidur_bad_negative.csv", 3, "field 'num_prefill_tokens' must be >= 1, got -396"),
    ("vidur_bad_nonnumeric.csv", 3, "field 'arrived_at' is not a time: 'later'"),
    ("vidur_stats_bad_negative.csv", 3, "field 'num_decode_tokens' must be >= 1, got 0"),
    ("vidur_stats_bad_nonnumeric.csv", 3, "field 'num_prefill_tokens' is not a number: 'many'"),
    ("prompt_output_bad_missing.jsonl", 2, "missing field 'prompt'"),
    ("prompt_output_bad_negative.jsonl", 2, "field 'output_len' must be >= 1, got -1"),
    ("prompt_output_bad_nonnumeric.jsonl", 1, "field 'output_len' is not a number: 'three'"),
    ("sharegpt_bad_missing.json", 19, "missing field 'conversations[1].value'"),
    ("sharegpt_bad_no_conversations.json", 19, "missing field 'conversations'"),
    ("sharegpt_bad_negative.json", 21, "field 'output_len' must be >= 1, got -1"),
])
def test_bad_rows_name_file_line_and_field(name, line, message):
    with pytest.raises(TraceError) as e:
        load_trace(FIX / name)
    assert str(e.value) == f"{FIX / name}, line {line}: {message}" or (
        str(e.value).startswith(f"{FIX / name}, line {line}: {message}"))
    assert isinstance(e.value, WorkloadError) and isinstance(e.value, ValueError)


@pytest.mark.parametrize("folder, file, line, message", [
    ("castillo_bad", "castillo_output_lengths.jsonl", 2,
     "field 'output_sizes' must hold whole numbers >= 1"),
    ("castillo_bad_ragged", "castillo_output_lengths.jsonl", 2,
     "field 'output_sizes' is not a list of 10 lengths"),
    ("castillo_bad_join", "castillo_output_lengths.jsonl", 2,
     "field 'prompt_id' 'p2' is not in castillo_prompts.jsonl"),
])
def test_castillo_bad_rows(folder, file, line, message):
    with pytest.raises(TraceError, match="^" + str(FIX / folder / file).replace(".", r"\.")
                       + f", line {line}: {message}"):
        load_castillo_pool(FIX / folder)


def test_the_earliest_bad_line_is_reported_whatever_the_field(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n0,1,1\n1,2,zero\n2,-1,1\n")
    with pytest.raises(TraceError, match=r"line 3: field 'output_tokens'"):
        load_trace(path)
    path.write_text("arrival_s,prompt_tokens,output_tokens\n0,1,1\n1,2.5,1\n2,x,1\n")
    with pytest.raises(TraceError, match=r"line 3: field 'prompt_tokens' is not a whole"):
        load_trace(path)


def test_quoted_multiline_csv_rows_keep_their_line_numbers(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('prompt,output_len\n"two\nlines",3\nok,-2\n')
    with pytest.raises(TraceError, match=r"line 4: field 'output_len' must be >= 1"):
        load_trace(path)


def test_fast_and_exact_readers_agree(monkeypatch):
    """Clean files go through pyarrow; the line-numbered Python readers must give the same."""
    names = ["llmsim.csv", "azure.csv", "mooncake.jsonl", "timed_trace.jsonl", "vidur.csv",
             "vidur_stats.csv", "azure_unsorted.csv", "mooncake_unsorted.jsonl"]
    fast = {n: load_trace(FIX / n) for n in names}
    for module in (native, azure, vidur):
        monkeypatch.setattr(module, "fast_csv", lambda *a, **k: None)
    monkeypatch.setattr(timed_jsonl, "fast_jsonl", lambda *a, **k: None)
    for n in names:
        exact = load_trace(FIX / n)
        a = fast[n]
        assert exact.source == a.source
        for col in ("arrival", "prompt_tokens", "output_tokens", "prompt_id"):
            x, y = getattr(a, col), getattr(exact, col)
            assert (x is None and y is None) or np.array_equal(x, y), (n, col)
        if "hash_ids" in a.meta:
            assert np.array_equal(a.meta["hash_ids"].ids, exact.meta["hash_ids"].ids)
            assert np.array_equal(a.meta["hash_ids"].offsets, exact.meta["hash_ids"].offsets)


# -- loaders: order, formats, errors -----------------------------------------------------

def test_unsorted_rows_are_sorted_stably_and_noted():
    w = load_trace(FIX / "llmsim_unsorted.csv")
    assert list(w.arrival) == [0.5, 1.0, 1.0, 2.0] and list(w.prompt_tokens) == [4, 2, 3, 1]
    assert w.meta["rows_out_of_order"] == 2 and w.meta["duplicate_arrivals"] == 1
    assert "rows sorted by arrival time (2 rows were earlier" in w.source
    a = load_trace(FIX / "azure_unsorted.csv")  # seconds from the earliest row
    assert list(a.arrival) == [0.0, 5.5, 10.0] and list(a.prompt_tokens) == [20, 30, 10]
    m = load_trace(FIX / "mooncake_unsorted.jsonl")  # block hashes move with their rows
    assert list(m.prompt_tokens) == [20, 30, 10]
    assert [list(m.meta["hash_ids"].of(i)) for i in range(3)] == [[1, 2], [3, 4, 5], [0]]


def test_format_names_options_and_sniffing_errors(tmp_path):
    assert len(load_trace(FIX / "vidur.csv", format="vidur_stats")) == 3  # arrivals ignored
    with pytest.raises(TraceError, match="unknown format 'csv'; known formats: llmsim, parquet"):
        load_trace(FIX / "vidur.csv", format="csv")
    with pytest.raises(TraceError, match="format azure takes no option 'model'"):
        load_trace(FIX / "azure.csv", model="x")
    odd = tmp_path / "odd.csv"
    odd.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(TraceError, match="cannot tell the format .* known formats: llmsim"):
        load_trace(odd)
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"ts": 1}\n')
    with pytest.raises(TraceError, match=r"cannot tell the format from the keys of line 1"):
        load_trace(odd)
    with pytest.raises(FileNotFoundError, match="no such trace file"):
        load_trace(tmp_path / "nope.csv")
    with pytest.raises(TraceError, match="not a CASTILLO one"):
        load_trace(tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("arrival_s,prompt_tokens,output_tokens\n\n")
    with pytest.raises(TraceError, match="no rows"):
        load_trace(empty)
    assert set(FORMATS) == {"llmsim", "parquet", "azure", "mooncake", "timed_trace", "vidur",
                            "vidur_stats", "castillo", "sharegpt", "prompt_output"}


def test_parquet_round_trip_keeps_columns_source_and_hashes(tmp_path):
    for name in ("llmsim.csv", "mooncake.jsonl", "sharegpt.json"):
        w = load_trace(FIX / name)
        out = write_parquet(w, tmp_path / f"{name}.parquet")
        back = load_trace(out)
        assert back.meta["format"] == "parquet" and f"converted from {w.source}" in back.source
        assert back.meta["has_arrivals"] == w.meta["has_arrivals"]
        for col in ("arrival", "prompt_tokens", "output_tokens", "prompt_id", "prompt_text",
                    "model", "tenant"):
            x, y = getattr(w, col), getattr(back, col)
            assert (x is None and y is None) or list(x) == list(y), (name, col)
    back = load_trace(tmp_path / "mooncake.jsonl.parquet")
    assert list(back.meta["hash_ids"].of(0)) == list(range(14))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "llmsim.csv.parquet", "mooncake.jsonl.parquet", "sharegpt.json.parquet"]


def test_a_failed_parquet_write_leaves_nothing(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    def broken(table, where):
        Path(where).write_bytes(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        write_parquet(load_trace(FIX / "llmsim.csv"), tmp_path / "w.parquet")
    assert list(tmp_path.iterdir()) == []


def test_parquet_bad_values_name_the_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"arrival_s": [0.0, 1.0], "prompt_tokens": [5, 0],
                             "output_tokens": [1, 1]}), tmp_path / "b.parquet")
    with pytest.raises(TraceError, match=r"b\.parquet, row 1: field 'prompt_tokens' must be >= 1"):
        load_trace(tmp_path / "b.parquet")


# -- CASTILLO pool ---------------------------------------------------------------------

def test_castillo_pool_joins_filters_and_dedupes():
    pool = load_castillo_pool(FIX / "castillo")
    assert len(pool) == 4 and pool.samples == 10 and pool.meta["duplicates_dropped"] == 1
    assert list(pool.prompt_id) == ["p1", "p2", "p3", "p1"]
    assert pool.text[2] == "Write a function that adds two numbers."
    assert list(pool.output_sizes[1]) == [10] * 10  # the first of the duplicated pair
    llama = load_castillo_pool(FIX / "castillo", model="llama-3.1-8b-instruct")
    assert len(llama) == 3 and set(llama.model) == {"meta-llama--Llama-3.1-8B-Instruct"}
    assert llama.meta["model"] == "meta-llama--Llama-3.1-8B-Instruct"
    test = load_castillo_pool(FIX / "castillo", model="meta-llama--Llama-3.1-8B-Instruct",
                              split="test")
    assert list(test.prompt_id) == ["p1", "p2"] and list(test.input_size) == [37, 30]
    validate = load_castillo_pool(FIX / "castillo", split="validate")
    assert list(validate.output_sizes[0]) == [11] * 10
    with pytest.raises(TraceError, match="no model matches 'gpt-4'; models: Qwen"):
        load_castillo_pool(FIX / "castillo", model="gpt-4")
    with pytest.raises(TraceError, match="no split 'dev'; splits: test, train, validate"):
        load_castillo_pool(FIX / "castillo", split="dev")


def test_castillo_from_either_file():
    lengths = FIX / "castillo" / "castillo_output_lengths.jsonl"
    assert sniff_format(lengths) == "castillo"
    assert sniff_format(FIX / "castillo" / "castillo_prompts.jsonl") == "castillo"
    assert load_castillo_pool(lengths).text[0] == "Describe Python."
    w = load_trace(FIX / "castillo", model="Qwen2.5-7B-Instruct-1M")
    assert len(w) == 1 and list(w.output_tokens) == [1] and w.meta["pool"].samples == 10


def test_castillo_without_prompt_texts(tmp_path):
    (tmp_path / "castillo_output_lengths.jsonl").write_text(
        (FIX / "castillo" / "castillo_output_lengths.jsonl").read_text())
    pool = load_castillo_pool(tmp_path)
    assert pool.text is None and "no prompt texts" in pool.source


# -- arrivals ----------------------------------------------------------------------------

def test_arrival_processes_are_deterministic_under_a_seed():
    for process in (arrivals.Poisson(3.0), arrivals.Gamma(3.0, 0.3)):
        a, b = process.times(1000, rng(7)), process.times(1000, rng(7))
        assert np.array_equal(a, b) and not np.array_equal(a, process.times(1000, rng(8)))
        assert np.all(np.diff(a) >= 0) and a[0] >= 0
    assert np.array_equal(arrivals.poisson(50, 2.0, rng(1)),
                          arrivals.Poisson(2.0).times(50, rng(1)))


def test_gamma_with_burstiness_one_matches_poisson():
    n, rate = 200_000, 5.0
    p = np.diff(arrivals.poisson(n, rate, rng(1)))
    g = np.diff(arrivals.gamma(n, rate, 1.0, rng(2)))
    for gaps in (p, g):
        assert 1 / gaps.mean() == pytest.approx(rate, rel=0.02)
        assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.03)
    # vLLM's definition: shape = burstiness, scale = 1/(rate*burstiness): cv = 1/sqrt(shape)
    b = np.diff(arrivals.Gamma(rate, 1 / 9).times(n, rng(3)))
    assert 1 / b.mean() == pytest.approx(rate, rel=0.05)
    assert b.std() / b.mean() == pytest.approx(3.0, rel=0.08)


def test_arrival_argument_checks_and_infinite_rate():
    with pytest.raises(ValueError, match="rate must be > 0"):
        arrivals.poisson(5, 0, rng())
    with pytest.raises(ValueError, match="burstiness must be > 0"):
        arrivals.gamma(5, 1.0, 0.0, rng())
    assert not arrivals.Poisson(float("inf")).times(4, rng()).any()
    with pytest.raises(ValueError, match="rate must be > 0"):
        arrivals.scale_to_rate(np.arange(3.0), 0)


def test_replay_tiles_a_trace_by_repeating_its_gaps():
    t = np.array([10.0, 11.0, 13.0, 16.0])  # gaps 1, 2, 3; span 6; mean gap 2
    assert list(arrivals.replay(t, 3)) == [0.0, 1.0, 3.0]
    tiled = arrivals.Replay(t).times(10)
    assert list(tiled) == [0, 1, 3, 6, 8, 9, 11, 14, 16, 17]
    assert list(np.diff(tiled)) == [1, 2, 3, 2, 1, 2, 3, 2, 1]  # seam gap = the mean gap
    long = arrivals.tile(t, 4 * 1000)
    assert (len(long) - 1) / long[-1] == pytest.approx(3 / 6, rel=1e-3)  # the trace's rate
    with pytest.raises(ValueError, match="allow tiling"):
        arrivals.Replay(t, tile_past_end=False).times(5)
    with pytest.raises(ValueError, match="all at the same time"):
        arrivals.tile(np.zeros(3), 5)


def test_scale_to_rate_keeps_the_shape():
    t = arrivals.gamma(5000, 2.0, 0.25, rng(4))
    s = arrivals.scale_to_rate(t, 10.0)
    assert (len(s) - 1) / s[-1] == pytest.approx(10.0)
    assert np.allclose(np.diff(s) / np.diff(s).mean(), np.diff(t) / np.diff(t).mean())


# -- synthesis ---------------------------------------------------------------------------

def pool():
    return load_castillo_pool(FIX / "castillo", model="Llama-3.1-8B-Instruct")


def test_synthesis_is_deterministic_and_draws_real_samples():
    p = pool()
    a = synthesize(20_000, p, arrivals.Gamma(50.0, 0.5), rng(11))
    b = synthesize(20_000, p, arrivals.Gamma(50.0, 0.5), rng(11))
    for col in ("arrival", "prompt_tokens", "output_tokens", "prompt_id"):
        assert np.array_equal(getattr(a, col), getattr(b, col))
    assert not np.array_equal(a.output_tokens, synthesize(20_000, p, arrivals.Poisson(50.0),
                                                          rng(12)).output_tokens)
    assert a.prompt_id.dtype == np.int64 and a.prompt_text is None and a.meta["pool"] is p
    assert np.array_equal(a.prompt_tokens, p.input_size[a.prompt_id])
    # every output is one of that prompt's own generations, and all of them get used
    assert (p.output_sizes[a.prompt_id] == a.output_tokens[:, None]).any(axis=1).all()
    first = a.prompt_id == 0
    assert set(a.output_tokens[first]) == set(p.output_sizes[0])
    assert np.bincount(a.prompt_id, minlength=len(p)).min() > 20_000 / len(p) * 0.9
    assert a.meta["model"] == "meta-llama--Llama-3.1-8B-Instruct" and a.model is None
    assert p.text[a.prompt_id[:3]].tolist()  # texts through the pool, not per request


def test_synthesis_streams_are_independent_and_prefix_stable():
    p = pool()
    big = synthesize(5000, p, arrivals.Poisson(10.0), rng(3))
    small = synthesize(100, p, arrivals.Gamma(2.0, 4.0), rng(3))  # other arrivals, same seed
    assert np.array_equal(small.prompt_id, big.prompt_id[:100])
    assert np.array_equal(small.output_tokens, big.output_tokens[:100])
    assert np.array_equal(synthesize(100, p, arrivals.Poisson(10.0), rng(3)).arrival,
                          big.arrival[:100])


def test_synthesis_tiles_a_real_trace_and_takes_any_pool():
    trace = load_trace(FIX / "vidur.csv")
    w = synthesize(7, pool(), trace.arrival, rng(0))
    assert list(w.arrival) == pytest.approx([0, 4.314579, 4.5, 6.75, 11.064579, 11.25, 13.5])
    assert "replay of 3 trace arrivals, tiled" in w.source
    from_trace = synthesize(50, trace, arrivals.Poisson(1.0), rng(0))  # a workload as pool
    assert set(from_trace.output_tokens) <= {44, 109, 45}
    mixed = synthesize(200, load_castillo_pool(FIX / "castillo"), arrivals.Poisson(1.0), rng(0))
    assert mixed.model is not None and set(mixed.model) == {
        "meta-llama--Llama-3.1-8B-Instruct", "Qwen--Qwen2.5-7B-Instruct-1M"}
    with pytest.raises(ValueError, match="n must be >= 1"):
        synthesize(0, pool(), arrivals.Poisson(1.0), rng(0))


def test_prompt_pool_validates():
    with pytest.raises(WorkloadError, match="output_sizes must be >= 1: row 1"):
        PromptPool(np.array(["a", "b"], dtype=object), np.array([1, 1]),
                   np.array([[1, 2], [0, 3]]))
    with pytest.raises(WorkloadError, match="at least one prompt"):
        PromptPool(np.array([], dtype=object), np.array([]), np.zeros((0, 10)))


# -- bundled default, stats ----------------------------------------------------------------

def test_default_workload_is_the_documented_sample():
    w = default_workload()
    assert len(w) == 3000 and w.arrival[0] == 0 and w.arrival[-1] == pytest.approx(493.396365)
    assert (w.output_tokens >= 1).all() and (w.prompt_tokens >= 1).all()
    assert w.prompt_tokens[0] == 1074 and w.output_tokens[0] == 377
    assert "Azure" in w.source and w.meta["licence"] == "CC-BY-4.0"


def test_summary_numbers():
    s = summarize(load_trace(FIX / "azure.csv"))
    assert s.rows == 4 and s.duration_s == pytest.approx(14.31941)
    assert s.mean_rate_rps == pytest.approx(3 / 14.31941)
    assert s.prompt.max == 879 and s.output.median == pytest.approx(77.0)
    assert summarize(load_trace(FIX / "sharegpt.json")).mean_rate_rps is None


# -- CLI ---------------------------------------------------------------------------------

runner = CliRunner(env={"COLUMNS": "160"})


def test_cli_info():
    res = runner.invoke(trace_app, ["info", str(FIX / "azure.csv")])
    assert res.exit_code == 0, res.output
    for text in ("rows", "4", "duration", "14.3 s", "mean rate", "0.210 req/s", "prompt",
                 "output", "P99", "879"):
        assert text in res.stdout
    res = runner.invoke(trace_app, ["info", str(FIX / "castillo"),
                                    "--model", "Qwen2.5-7B-Instruct-1M"])
    assert res.exit_code == 0 and "none in the file" in res.stdout


def test_cli_convert_writes_parquet_whole(tmp_path):
    out = tmp_path / "m.parquet"
    res = runner.invoke(trace_app, ["convert", str(FIX / "mooncake.jsonl"), str(out)])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.stdout and [p.name for p in tmp_path.iterdir()] == ["m.parquet"]
    assert len(load_trace(out)) == 4


def test_cli_plot_writes_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    res = runner.invoke(trace_app, ["plot", str(FIX / "azure.csv"), "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert names == ["arrival_rate.png", "output_tokens.png", "prompt_tokens.png"]
    assert (tmp_path / "p" / "prompt_tokens.png").read_bytes()[:4] == b"\x89PNG"
    res = runner.invoke(trace_app, ["plot", str(FIX / "sharegpt.json"),
                                    "--out", str(tmp_path / "s")])
    assert res.exit_code == 0 and len(list((tmp_path / "s").iterdir())) == 2  # no arrivals


@pytest.mark.parametrize("args, message", [
    (["info", "nope.csv"], "error: nope.csv: no such trace file"),
    (["info", str(FIX / "azure_bad_negative.csv")],
     f"error: {FIX / 'azure_bad_negative.csv'}, line 4: field 'GeneratedTokens' must be >= 1"),
    (["info", str(FIX / "azure.csv"), "--format", "nope"], "unknown format 'nope'"),
    (["convert", str(FIX / "azure.csv"), "out.csv"], "the output must end in .parquet"),
])
def test_cli_errors_are_one_line_and_exit_2(args, message, tmp_path):
    res = runner.invoke(trace_app, args)
    assert res.exit_code == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert res.stdout == ""


# -- the real data (skipped without it) ---------------------------------------------------

@pytest.mark.parametrize("rel, fmt, rows", [
    ("azure_llm_2023/AzureLLMInferenceTrace_conv.csv", "azure", 19366),
    ("azure_llm_2023/AzureLLMInferenceTrace_code.csv", "azure", 8819),
    ("mooncake/conversation_trace.jsonl", "mooncake", 12031),
    ("mooncake/synthetic_trace.jsonl", "mooncake", 3993),
    ("vidur_traces/splitwise_conv.csv", "vidur", 19366),
    ("vidur_traces/splitwise_code.csv", "vidur", 8819),
    ("vidur_traces/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv", "vidur_stats",
     28257),
])
def test_real_traces_load_with_the_documented_row_counts(shared_data, rel, fmt, rows):
    w = load_trace(shared_data / rel)
    assert w.meta["format"] == fmt and len(w) == rows
    assert w.meta["rows_out_of_order"] == 0


def test_real_castillo_counts(shared_data):
    pool = load_castillo_pool(shared_data / "castillo")
    assert len(set(pool.prompt_id)) == 7898
    assert len(pool) + pool.meta["duplicates_dropped"] == 67565
    assert pool.samples == 10 and pool.text is not None
    one = load_castillo_pool(shared_data / "castillo", model="Llama-3.1-8B-Instruct", split="test")
    assert len(one) > 1000 and len(set(one.prompt_id)) == len(one)


def test_real_azure_and_vidur_agree_and_the_default_is_reproducible(shared_data, tmp_path):
    a = load_trace(shared_data / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv")
    v = load_trace(shared_data / "vidur_traces" / "splitwise_conv.csv")
    assert np.allclose(a.arrival, v.arrival, atol=1e-6)
    assert np.array_equal(a.prompt_tokens, v.prompt_tokens)
    from llmsim.traces.make_default import make

    out = make(shared_data / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv",
               tmp_path / "d.csv")
    bundled = Path(__file__).resolve().parents[1] / "llmsim" / "data" / "default_workload.csv"
    assert out.read_bytes() == bundled.read_bytes()


def test_real_mooncake_hashes(shared_data):
    w = load_trace(shared_data / "mooncake" / "conversation_trace.jsonl")
    h = w.meta["hash_ids"]
    assert len(h) == 12031 and len(h.ids) == 288500
    blocks = np.diff(h.offsets)
    assert np.all(blocks == -(-w.prompt_tokens // 512))  # one id per 512-token block


def test_json_lines_fixture_files_are_one_object_per_line():
    for path in FIX.rglob("*.jsonl"):
        if "bad_json" in path.name:
            continue
        for line in path.read_text().splitlines():
            assert isinstance(json.loads(line), dict)


def test_workload_constructor_is_unchanged():
    w = Workload(np.array([0.0, 1.0]), np.array([1, 2]), np.array([3, 4]))
    assert w.source == "unknown" and w.meta == {}


# -- properties ----------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [1, 2, 5, 64])
def test_sharegpt_reads_the_same_through_any_window(monkeypatch, chunk):
    whole = load_trace(FIX / "sharegpt.json")
    monkeypatch.setattr(sharegpt, "CHUNK", chunk)
    w = load_trace(FIX / "sharegpt.json")
    assert list(w.prompt_tokens) == list(whole.prompt_tokens)
    assert list(w.prompt_text) == list(whole.prompt_text)
    for name, line in (("sharegpt_bad_missing.json", 19), ("sharegpt_bad_negative.json", 21)):
        with pytest.raises(TraceError, match=f", line {line}: "):
            load_trace(FIX / name)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=30), st.text(max_size=30)), min_size=1, max_size=8),
       st.integers(1, 40), st.sampled_from([None, 0, 2]))
def test_sharegpt_window_property(tmp_path_factory, pairs, chunk, indent):
    data = [{"conversations": [{"from": "human", "value": p}, {"from": "gpt", "value": o}]}
            for p, o in pairs]
    path = tmp_path_factory.mktemp("s") / "s.json"
    path.write_text(json.dumps(data, indent=indent, ensure_ascii=False), encoding="utf-8")
    old = sharegpt.CHUNK
    sharegpt.CHUNK = chunk
    try:
        w = load_trace(path)
    finally:
        sharegpt.CHUNK = old
    assert list(w.prompt_text) == [p for p, _ in pairs]
    assert list(w.output_tokens) == list(approx_tokens([o for _, o in pairs]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 10**6), st.integers(1, 10**4)),
                min_size=1, max_size=30))
def test_csv_rows_come_back_stably_sorted(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("c") / "t.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n"
                    + "".join(f"{t / 4},{p},{o}\n" for t, p, o in rows))
    w = load_trace(path)
    expect = sorted(rows, key=lambda r: r[0])  # Python's sort is stable too
    assert list(w.arrival) == [t / 4 for t, _, _ in expect]
    assert list(w.prompt_tokens) == [p for _, p, _ in expect]
    assert list(w.output_tokens) == [o for _, _, o in expect]
    assert w.meta["rows_out_of_order"] == sum(b[0] < a[0] for a, b in pairwise(rows))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.001, 100), min_size=1, max_size=20), st.integers(1, 200))
def test_tiled_arrivals_repeat_the_gaps(gaps, n):
    t = np.concatenate([[5.0], 5.0 + np.cumsum(gaps)])
    out = arrivals.tile(t, n)
    assert len(out) == n and out[0] == 0 and np.all(np.diff(out) > 0)
    m = len(t)
    period = (t[-1] - t[0]) * m / (m - 1)
    assert np.allclose(out, (t - t[0])[np.arange(n) % m] + period * (np.arange(n) // m))
