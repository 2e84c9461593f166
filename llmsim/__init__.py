"""llmsim: which scheduler should my LLM serving engine run, on my model, GPU and traffic?

The small public API:

    from llmsim import simulate, Deployment, Workload, get_policy
    result = simulate(workload, get_policy("sjf"), Deployment(model="llama-3-8b", gpu="h100"))
    result.summary["e2e"]["mean"]
"""

import os as _os
import signal as _signal
import sys as _sys


def _interrupted_while_loading(signum, frame):
    _os.write(2, b"interrupted\n")
    _os._exit(130)  # nothing written yet: nothing to clean up


# The llmsim command (`llmsim`, `python -m llmsim`) is starting: a Ctrl-C while numpy and
# friends load would surface as whatever import it broke (numpy reports a failed C-extension
# import and a page of advice), so until the CLI takes over (__main__.py) it exits 130 with
# one line. A program that imports llmsim keeps its own Ctrl-C.
if (_sys.orig_argv[1:3] == ["-m", "llmsim"]
        or _os.path.basename(_sys.argv[0]) == "llmsim") \
        and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    _signal.signal(_signal.SIGINT, _interrupted_while_loading)

from .engine.config import EngineConfig  # noqa: E402
from .engine.summary import Slo  # noqa: E402
from .policies import POLICIES, Policy, get_policy  # noqa: E402
from .simulate import Deployment, RunResult, simulate  # noqa: E402
from .traces.workload import Workload  # noqa: E402

__all__ = ["POLICIES", "Deployment", "EngineConfig", "Policy", "RunResult", "Slo", "Workload",
           "get_policy", "simulate"]
__version__ = "0.1.0"
