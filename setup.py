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
from setuptools.command.build_ext import build_ext

NO_FMA = "-ffp-contract=off"  # the same IEEE operations as Python: no fused a + b * c
ENGINE = Path("llmsim/engine")
COMPILED: list[str] = []  # the engine's modules mypyc compiles (engine_modules)


def engine_modules() -> list:
    """mypyc's extensions for the modules `llmsim/engine/__init__.py` names in `COMPILED`
    (mypy is a build requirement: pyproject.toml), all in one shared library."""
    try:
        from mypyc.build import mypycify
    except ImportError:  # `setup.py build_ext` in an environment without mypy
        print("mypy not installed: the engine's modules stay Python")
        return []
    init = ast.parse((ENGINE / "__init__.py").read_text())
    COMPILED[:] = next(ast.literal_eval(node.value) for node in init.body
                       if isinstance(node, ast.Assign) and node.targets[0].id == "COMPILED")
    extensions = mypycify(
        ["--ignore-missing-imports", "--follow-imports=silent",
         *(str(ENGINE / f"{m}.py") for m in COMPILED)],
        opt_level="3", group_name="llmsim.engine._native")
    for ext in extensions:
        ext.optional = True
        ext.extra_compile_args = [*ext.extra_compile_args, NO_FMA]
    return extensions


def pool_extension() -> list:
    """The caching pool's per-block steps, which read NumPy arrays through NumPy's C API
    (numpy is a build requirement: pyproject.toml)."""
    try:
        import numpy
    except ImportError:  # `setup.py build_ext` in an environment without numpy
        print("numpy not installed: the caching pool's steps stay NumPy's")
        return []
    return [Extension(
        "llmsim.engine._pool", ["llmsim/engine/_pool.c"], optional=True,
        include_dirs=[numpy.get_include()],
        extra_compile_args=["-O3"],  # integers only; -O3 vectorizes its scans (GCC 12's
        # -O2 does not: its range checks cost ~10 instructions a block)
    )]


class BuildExt(build_ext):
    """Once the engine's shared library is built: the hashes of the sources it was built
    from, for the engine to tell an edited source from its build (a failed build leaves
    the old ones, which then disagree); and, built in place, no module left compiled that
    is no longer in COMPILED (it would shadow its source)."""

    def build_extension(self, ext) -> None:
        super().build_extension(ext)  # a failure raises: an optional extension is skipped
        if ext.name == "llmsim.engine._native__mypyc":
            (ENGINE / "_native.sha256").write_text("".join(
                f"{hashlib.sha256((ENGINE / f'{m}.py').read_bytes()).hexdigest()}  {m}.py\n"
                for m in COMPILED))

    def run(self) -> None:
        super().run()  # builds, then copies in place (`inplace` is off while it builds)
        if self.inplace:
            for lib in ENGINE.glob("*.cpython-*.so"):
                name = lib.name.split(".")[0]
                if (ENGINE / f"{name}.py").exists() and name not in COMPILED:
                    lib.unlink()


setup(cmdclass={"build_ext": BuildExt}, ext_modules=[
    Extension(
        "llmsim.engine._runs", ["llmsim/engine/_runs.c"], optional=True,
        extra_compile_args=["-O2", NO_FMA],
    ),
    *pool_extension(),  # prefix_cache.py falls back to NumPy where it is not built
    *engine_modules(),
])
