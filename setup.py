"""The compiled pieces: the fast simulator's decode-run loop (llmsim/engine/_runs.c), the
prefix-caching pool's per-block steps (llmsim/engine/_pool.c), and the engine's hot modules
compiled by mypyc from their own sources (llmsim/engine/__init__.py lists them).

Optional: where they cannot be built (no C compiler), llmsim installs without them and
runs the same steps in Python (fast.py, prefix_cache.py, the engine's sources), with the
same results, slower. Everything else is in pyproject.toml.
"""

import ast
import hashlib
from pathlib import Path

from setuptools import Extension, setup

NO_FMA = "-ffp-contract=off"  # the same IEEE operations as Python: no fused a + b * c


def engine_modules() -> list:
    """mypyc's extensions for the modules `llmsim/engine/__init__.py` names in `COMPILED`
    (mypy is a build requirement: pyproject.toml), all in one shared library."""
    try:
        from mypyc.build import mypycify
    except ImportError:  # `setup.py build_ext` in an environment without mypy
        print("mypy not installed: the engine's modules stay Python")
        return []
    init = ast.parse(Path("llmsim/engine/__init__.py").read_text())
    modules = next(ast.literal_eval(node.value) for node in init.body
                   if isinstance(node, ast.Assign) and node.targets[0].id == "COMPILED")
    # what is compiled, for the engine to tell an edited source from its build
    Path("llmsim/engine/_native.sha256").write_text("".join(
        f"{hashlib.sha256(Path(f'llmsim/engine/{m}.py').read_bytes()).hexdigest()}  {m}.py\n"
        for m in modules))
    extensions = mypycify(
        ["--ignore-missing-imports", "--follow-imports=silent",
         *(f"llmsim/engine/{m}.py" for m in modules)],
        opt_level="3", group_name="llmsim.engine._native")
    for ext in extensions:
        ext.optional = True
        ext.extra_compile_args = [*ext.extra_compile_args, NO_FMA]
    return extensions


setup(ext_modules=[
    Extension(
        "llmsim.engine._runs", ["llmsim/engine/_runs.c"], optional=True,
        extra_compile_args=["-O2", NO_FMA],
    ),
    Extension(  # the prefix-caching pool's per-block steps (prefix_cache.py falls back)
        "llmsim.engine._pool", ["llmsim/engine/_pool.c"], optional=True,
        extra_compile_args=["-O2"],
    ),
    *engine_modules(),
])
