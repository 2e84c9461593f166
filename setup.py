"""The one compiled piece: the fast simulator's decode-run loop (llmsim/engine/_runs.c).

Optional: where it cannot be built (no C compiler), llmsim installs without it and the
fast simulator runs the same loop in Python (fast.py), with the same results, slower.
Everything else is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "llmsim.engine._runs", ["llmsim/engine/_runs.c"], optional=True,
    # the same IEEE operations as the Python loop: no fused multiply-add in a + b * C
    extra_compile_args=["-O2", "-ffp-contract=off"],
)])
