"""The compiled pieces: the fast simulator's decode-run loop (llmsim/engine/_runs.c) and
the prefix-caching pool's per-block steps (llmsim/engine/_pool.c).

Optional: where they cannot be built (no C compiler), llmsim installs without them and
runs the same steps in Python (fast.py, prefix_cache.py), with the same results, slower.
Everything else is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension(
        "llmsim.engine._runs", ["llmsim/engine/_runs.c"], optional=True,
        # the same IEEE operations as the Python loop: no fused multiply-add in a + b * C
        extra_compile_args=["-O2", "-ffp-contract=off"],
    ),
    Extension(  # the prefix-caching pool's per-block steps (prefix_cache.py falls back)
        "llmsim.engine._pool", ["llmsim/engine/_pool.c"], optional=True,
        extra_compile_args=["-O2"],
    ),
])
