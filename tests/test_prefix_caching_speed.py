"""benchmarks/prefix_caching_speed.py on a four-request trace: both trees' processes run,
each line and the medians are printed, and a missing trace is one line."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from llmsim.engine import compiled

from .benchmark_script import load_benchmark

FIX = Path(__file__).parent / "fixtures" / "traces"


@pytest.mark.skipif(not compiled(), reason="the script measures the compiled engine only")
def test_the_speed_script_alternates_trees_and_prints_their_medians(tmp_path, monkeypatch,
                                                                     capsys):
    speed = load_benchmark("prefix_caching_speed")
    (tmp_path / "mooncake").mkdir()
    shutil.copy(FIX / "mooncake.jsonl", tmp_path / "mooncake" / "conversation_trace.jsonl")
    monkeypatch.setattr(sys, "argv", ["x", "--runs", "1", "--rounds", "2", "--data",
                                      str(tmp_path), "--tree", str(speed.REPO)])
    speed.main()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and all("on/off" in line for line in lines)
    assert lines[-1].startswith("median over 4 processes")  # one tree, named twice


def test_the_speed_script_names_a_missing_trace(tmp_path, monkeypatch):
    speed = load_benchmark("prefix_caching_speed")
    monkeypatch.setattr(sys, "argv", ["x", "--data", str(tmp_path)])
    with pytest.raises(SystemExit, match="no Mooncake trace"):
        speed.main()
