"""llmsim: which scheduler should my LLM serving engine run, on my model, GPU and traffic?

The small public API:

    from llmsim import simulate, Deployment, Workload, get_policy
    result = simulate(workload, get_policy("sjf"), Deployment(model="llama-3-8b", gpu="h100"))
    result.summary["e2e"]["mean"]
"""

from .engine.config import EngineConfig
from .engine.summary import Slo
from .policies import POLICIES, Policy, get_policy
from .simulate import Deployment, RunResult, simulate
from .traces.workload import Workload

__all__ = ["POLICIES", "Deployment", "EngineConfig", "Policy", "RunResult", "Slo", "Workload",
           "get_policy", "simulate"]
__version__ = "0.1.0"
