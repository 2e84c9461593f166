"""The engine's modules compiled by mypyc (setup.py) against their sources: the same
records and summary, both simulators, with and without prefix caching (shared prefixes,
no ids, sessions' keys over the output), preempting; and how the engine chooses between
them (llmsim/engine/__init__.py).

The comparisons are skipped where the modules were not built (no C compiler: the sources
run); CI sets LLMSIM_REQUIRE_COMPILED=1, so there a missing build fails instead."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import numpy as np
import pytest

import llmsim.engine as engine
from llmsim import simulate
from llmsim.policies import FCFS, MLFQ, SJF, SRPT, with_starvation_prevention
from llmsim.traces.sessions import SessionSpec, synthesize_sessions
from tests.helpers import RunLinearCost, deployment
from tests.test_prefix_caching import busy_shared_workload

REPO = Path(__file__).resolve().parents[1]
REQUIRED = bool(os.environ.get("LLMSIM_REQUIRE_COMPILED"))
built = pytest.mark.skipif(not engine.compiled() and not REQUIRED,
                           reason="the engine's modules were not compiled: the sources run")


def cases():
    """(name, workload, policy, deployment): every scheduling path the engine has."""
    shared = busy_shared_workload(5, 300)  # ids shared by families (prefix caching)
    plain = shared.head(300)
    plain = type(plain)(plain.arrival, plain.prompt_tokens, plain.output_tokens * 3,
                        source="no ids, longer outputs")
    policies = {"fcfs": FCFS, "sjf": SJF, "srpt": SRPT, "mlfq": MLFQ,
                "sjf+sp": with_starvation_prevention(SJF, 3, 2)}
    for name, policy in policies.items():
        yield f"{name}-roomy", plain, policy, deployment(num_gpu_blocks=4000, block_size=16,
                                                         enable_prefix_caching=False)
        yield f"{name}-tight", plain, policy, deployment(num_gpu_blocks=300, block_size=16,
                                                         enable_prefix_caching=False,
                                                         max_num_batched_tokens=256)
        yield f"{name}-cached", shared, policy, deployment(
            num_gpu_blocks=500, block_size=16, enable_prefix_caching=True, num_replicas=2,
            router="cache-affinity")
        yield f"{name}-cached-no-ids", plain, policy, deployment(  # anonymous blocks, named
            num_gpu_blocks=300, block_size=16, enable_prefix_caching=True)  # when it preempts
    sessions = synthesize_sessions(SessionSpec(sessions=30, session_rate=4.0, think_s=1.0,
                                               system_tokens=300), np.random.default_rng(5))
    yield "sessions", sessions, FCFS, deployment(  # keys over the output: set while decoding
        num_gpu_blocks=500, block_size=16, max_num_seqs=12, enable_prefix_caching=True)


def run_cases(out: Path) -> None:
    """Every case with both simulators, records and summary written under `out`."""
    for name, w, policy, dep in cases():
        for simulator in ("fast", "reference"):
            res = simulate(w, policy, dep, cost=RunLinearCost(0.005, 2e-5, 1e-7),
                           simulator=simulator)
            np.savez(out / f"{name}-{simulator}.npz", **res.records.columns())
            (out / f"{name}-{simulator}.json").write_text(
                json.dumps(res.summary, sort_keys=True))  # NaN written alike


def pure(code: str, **env) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter whose engine runs from its sources."""
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "LLMSIM_PURE_PYTHON": "1", **env},
                          check=True)


@built
def test_compiled_and_source_engines_give_the_same_results(tmp_path):
    assert engine.compiled(), "LLMSIM_REQUIRE_COMPILED=1: the engine's modules were not built"
    (tmp_path / "compiled").mkdir()
    (tmp_path / "python").mkdir()
    run_cases(tmp_path / "compiled")
    pure(f"from tests.test_engine_compiled import run_cases; from pathlib import Path; "
         f"run_cases(Path({str(tmp_path / 'python')!r}))")
    names = sorted(p.name for p in (tmp_path / "compiled").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "python").iterdir())
    assert len(names) == 2 * 2 * (5 * 4 + 1)
    preempted = 0
    for name in names:
        a, b = tmp_path / "compiled" / name, tmp_path / "python" / name
        if name.endswith(".json"):
            assert a.read_text() == b.read_text(), name
            preempted += json.loads(a.read_text())["preemptions"]
            continue
        ca, cb = np.load(a), np.load(b)
        assert ca.files == cb.files
        for column in ca.files:
            np.testing.assert_array_equal(ca[column], cb[column], err_msg=f"{name}: {column}")
    assert preempted > 0  # the tight pools preempt


@built
def test_the_sources_run_where_asked_and_a_run_says_which_ran():
    assert engine.compiled() and engine.fast.__file__.endswith(tuple(EXTENSION_SUFFIXES))
    w = busy_shared_workload(1, 20)
    assert simulate(w, FCFS, deployment()).config["engine_modules"] == "compiled"
    out = pure("import llmsim.engine as e, llmsim.engine.scheduler as s; "
               "print(e.compiled(), s.__file__)")
    flag, path = out.stdout.split()
    assert flag == "False" and path.endswith("scheduler.py")


def test_an_edited_source_is_told_apart_from_its_build(tmp_path):
    for m in engine.COMPILED:
        (tmp_path / f"{m}.py").write_text(f"# {m}\n")
    assert engine.stale(tmp_path) == []  # nothing built: nothing stale, the sources run
    (tmp_path / f"_native__mypyc{EXTENSION_SUFFIXES[0]}").write_bytes(b"")
    assert engine.stale(tmp_path) == []  # no hashes (installed from a wheel): trusted
    (tmp_path / "_native.sha256").write_text("".join(
        f"{hashlib.sha256((tmp_path / f'{m}.py').read_bytes()).hexdigest()}  {m}.py\n"
        for m in engine.COMPILED))
    assert engine.stale(tmp_path) == []
    (tmp_path / "fast.py").write_text("# fast, edited\n")
    assert engine.stale(tmp_path) == ["fast"]


def test_a_build_that_failed_part_way_is_not_used(tmp_path):
    for m in engine.COMPILED[:3]:  # some modules built, the rest and the library not
        (tmp_path / f"{m}{EXTENSION_SUFFIXES[0]}").write_bytes(b"")
    assert engine.missing(tmp_path) == [*engine.COMPILED[3:], "_native__mypyc"]
    for m in [*engine.COMPILED, "_native__mypyc"]:
        (tmp_path / f"{m}{EXTENSION_SUFFIXES[0]}").write_bytes(b"")
    assert engine.missing(tmp_path) == []
    assert engine.missing(tmp_path / "nothing") == []  # nothing built: the sources run


def test_a_stale_build_warns_and_runs_the_sources(tmp_path):
    """An edited checkout: the warning names the module and says how to rebuild."""
    code = ("import warnings, llmsim.engine as e\n"
            "e.stale, e.missing = lambda: ['fast'], lambda: []\n"
            "sys_meta = __import__('sys').meta_path\n"
            "n = len(sys_meta)\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    warnings.simplefilter('always')\n"
            "    e._choose()\n"
            "print(len(sys_meta) - n, str(seen[0].message))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True,
                         env={k: v for k, v in os.environ.items() if k != "LLMSIM_PURE_PYTHON"})
    added, message = out.stdout.split(" ", 1)
    assert added == "1" and "fast changed" in message and "build_ext --inplace" in message
    assert "running its sources" in message
