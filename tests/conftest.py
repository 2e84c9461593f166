"""What every test module shares: where the real data lives, and which simulators run.

`shared_data` is the project's shared data folder (LLMSIM_SHARED_DATA, else ../shared/data
beside the repository); a test that asks for it is skipped where it is absent. `simulator`
runs a test once per simulator, for the semantics both must share. `castillo` (a small
synthetic CASTILLO folder) and `cache` (an embedding cache) serve the predictor tests, one
of each per test module.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("LLMSIM_SHARED_DATA")
                   or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"no shared data at {SHARED_DATA} (set LLMSIM_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(params=["reference", "fast"])
def simulator(request) -> str:
    return request.param


def pytest_terminal_summary(terminalreporter) -> None:
    """How many distinct cases the fuzz tests ran (tests/test_fuzz.py)."""
    fuzz = sys.modules.get("tests.test_fuzz")
    for name, cases in sorted(getattr(fuzz, "CASES", {}).items()):
        exits = ", ".join(f"{n} exit {code}" for code, n in
                          sorted(fuzz.OUTCOMES.get(name, {}).items()))
        terminalreporter.write_line(f"fuzz: {len(cases)} distinct cases of {name} ({exits})")
    trials = getattr(sys.modules.get("tests.test_interrupts"), "OUTCOMES", [])
    if trials:
        hung = trials.count("hung")
        counts = {o: trials.count(o) for o in sorted(set(trials)) if o != "hung"}
        terminalreporter.write_line(
            f"interrupts: {len(trials)} runs, {f'{hung} HUNG' if hung else 'none hung'}: "
            + "; ".join(f"{n} x {o}" for o, n in counts.items()))


@pytest.fixture(scope="module")
def castillo(tmp_path_factory) -> Path:
    from .castillo_synth import write_castillo

    return write_castillo(tmp_path_factory.mktemp("castillo"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from llmsim.predictors import EmbeddingCache

    return EmbeddingCache(tmp_path_factory.mktemp("emb"), 64)
