"""llmsim: which scheduler should my LLM serving engine run, on my model, GPU and traffic?

The small public API:

    from llmsim import simulate, Deployment, Workload, get_policy
    result = simulate(workload, get_policy("sjf"), Deployment(model="llama-3-8b", gpu="h100"))
    result.summary["e2e"]["mean"]
"""

from importlib import import_module

# The public names load on first use: `import llmsim` stays light, so the `llmsim` command
# can take Ctrl-C quietly while the heavy modules load (__main__.py).
_PUBLIC = {"EngineConfig": ".engine.config", "Slo": ".engine.summary",
           "POLICIES": ".policies", "Policy": ".policies", "get_policy": ".policies",
           "Deployment": ".simulate", "RunResult": ".simulate", "simulate": ".simulate",
           "Workload": ".traces.workload"}

__all__ = sorted(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'llmsim' has no attribute {name!r}")
    value = getattr(import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
