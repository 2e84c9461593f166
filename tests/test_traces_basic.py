"""The trace loaders the core needs (llmsim CSV, Azure CSV), arrivals, and the bundled sample."""

from __future__ import annotations

import numpy as np
import pytest

from llmsim.traces import arrivals
from llmsim.traces.default import default_workload
from llmsim.traces.loaders import TraceError, load_trace
from llmsim.traces.workload import Workload, WorkloadError


def write(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_llmsim_csv(tmp_path):
    w = load_trace(write(tmp_path, "arrival_s,prompt_tokens,output_tokens\n0,10,5\n0.5,20,1\n"))
    assert len(w) == 2 and list(w.prompt_tokens) == [10, 20] and list(w.arrival) == [0, 0.5]


def test_azure_csv_times_become_seconds(tmp_path):
    w = load_trace(write(tmp_path, "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                   "2023-11-16 18:15:46.6805900,374,44\n"
                                   "2023-11-16 18:15:50.9951690,396,109\n"))
    assert w.arrival[0] == 0 and w.arrival[1] == pytest.approx(4.314579)


@pytest.mark.parametrize("row, message", [
    ("1,-3,5", "line 3: field 'prompt_tokens' must be >= 1"),
    ("1,0,5", "line 3: field 'prompt_tokens' must be >= 1"),
    ("1,ten,5", "line 3: field 'prompt_tokens' is not a number: 'ten'"),
    ("1,2.5,5", "line 3: field 'prompt_tokens' is not a whole number"),
    ("1,10", "line 3: missing field 'output_tokens'"),
    ("soon,10,5", "line 3: field 'arrival_s' is not a time"),
    ("nan,10,5", "line 3: field 'arrival_s' is not finite"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, row, message):
    path = write(tmp_path, f"arrival_s,prompt_tokens,output_tokens\n0,10,5\n{row}\n")
    with pytest.raises(TraceError, match=message) as e:
        load_trace(path)
    assert str(path) in str(e.value)


def test_unsorted_rows_are_sorted_and_said_so(tmp_path):
    w = load_trace(write(tmp_path, "arrival_s,prompt_tokens,output_tokens\n2,1,1\n1,2,2\n1,3,3\n"))
    assert list(w.arrival) == [1, 1, 2] and list(w.prompt_tokens) == [2, 3, 1]
    assert "sorted" in w.source


def test_unknown_header_and_missing_file(tmp_path):
    with pytest.raises(TraceError, match="cannot tell the format"):
        load_trace(write(tmp_path, "a,b,c\n1,2,3\n"))
    with pytest.raises(FileNotFoundError, match="no such trace file"):
        load_trace(tmp_path / "nope.csv")


def test_workload_validates_columns():
    with pytest.raises(WorkloadError, match="output_tokens must be >= 1: row 1"):
        Workload(np.array([0.0, 1.0]), np.array([1, 1]), np.array([1, 0]))
    with pytest.raises(WorkloadError, match="arrivals must be sorted: row 1"):
        Workload(np.array([1.0, 0.0]), np.array([1, 1]), np.array([1, 1]))


def test_bundled_workload_is_the_documented_sample():
    w = default_workload()
    assert len(w) == 3000 and w.arrival[0] == 0
    assert w.prompt_tokens[0] == 1074 and w.output_tokens[0] == 377
    assert "Azure" in w.source


def test_bundled_sample_matches_the_real_trace(shared_data):
    real = load_trace(shared_data / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv")
    assert len(real) == 19366
    w = default_workload()
    assert np.array_equal(w.prompt_tokens, real.prompt_tokens[5000:8000])
    assert np.allclose(w.arrival, real.arrival[5000:8000] - real.arrival[5000], atol=1e-6)


def test_arrival_processes_are_seeded_and_scaled():
    rng = lambda: np.random.default_rng(5)  # noqa: E731
    a, b = arrivals.poisson(10_000, 4.0, rng()), arrivals.poisson(10_000, 4.0, rng())
    assert np.array_equal(a, b)
    assert len(a) / a[-1] == pytest.approx(4.0, rel=0.05)
    g = arrivals.gamma(10_000, 4.0, 0.25, rng())
    gaps = np.diff(g)
    assert gaps.std() / gaps.mean() == pytest.approx(2.0, rel=0.1)  # cv = 1/sqrt(shape)
    s = arrivals.scale_to_rate(g, 10.0)
    assert (len(s) - 1) / s[-1] == pytest.approx(10.0)
    assert np.allclose(np.diff(s) / np.diff(s).mean(), gaps / gaps.mean())
    with pytest.raises(ValueError, match="rate must be > 0"):
        arrivals.poisson(5, 0, rng())
