"""What every test module shares: where the real data lives, and which simulators run.

`shared_data` is the project's shared data folder (LLMSIM_SHARED_DATA, else ../shared/data
beside the repository); a test that asks for it is skipped where it is absent. `simulator`
runs a test once per simulator, for the semantics both must share.
"""

from __future__ import annotations

import os
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
