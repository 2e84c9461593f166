"""The engine: requests, the KV pool, the scheduler, replicas, the two simulators.

Its hot modules (`COMPILED`) are compiled by mypyc at install where a C compiler is at
hand (setup.py), from these same sources: the fast simulator then runs about twice as
fast, with the same results (tests/test_engine_compiled.py). Otherwise the sources run.
They also run where LLMSIM_PURE_PYTHON=1, and, with a warning that says to rebuild
(`python setup.py build_ext --inplace`), where a source changed since its build (an edited
checkout) or the build is incomplete.
Compiled modules work only with each other, so it is all of them or none.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import warnings
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

COMPILED = ("blocks", "cluster", "decoders", "fast", "histogram", "key_table", "prefix_cache",
            "prefix_keys", "records", "reference", "replica", "request", "scheduler",
            "waiting")  # setup.py reads this
HERE = Path(__file__).parent


def stale(directory: Path = HERE) -> list[str]:
    """The compiled modules whose source changed since they were compiled (setup.py wrote
    the hashes of what it compiled beside them; none where nothing was built here)."""
    hashes = directory / "_native.sha256"
    built = any((directory / f"_native__mypyc{s}").exists() for s in EXTENSION_SUFFIXES)
    if not built or not hashes.exists():
        return []
    old = dict(line.split()[::-1] for line in hashes.read_text().splitlines())
    return [m for m in COMPILED if old.get(f"{m}.py") != hashlib.sha256(
        (directory / f"{m}.py").read_bytes()).hexdigest()]


def missing(directory: Path = HERE) -> list[str]:
    """What a build in `directory` lacks of the compiled modules and their shared library
    (`_native__mypyc`), where there is one: a build that failed part way, whose modules
    would import what is not there."""
    names = [*COMPILED, "_native__mypyc"]
    have = {n for n in names
            if any((directory / f"{n}{s}").exists() for s in EXTENSION_SUFFIXES)}
    return [n for n in names if n not in have] if have else []


class Sources:
    """An import finder that loads the compiled modules from their sources."""

    def find_spec(self, name, path=None, target=None):
        package, _, module = name.rpartition(".")
        if package == __name__ and module in COMPILED:
            return importlib.util.spec_from_file_location(name, HERE / f"{module}.py")
        return None


def _choose() -> None:
    if os.environ.get("LLMSIM_PURE_PYTHON"):
        sys.meta_path.insert(0, Sources())
        return
    gone, old = missing(), stale()
    why = (f"its build lacks {', '.join(gone)}" if gone else
           f"{', '.join(old)} changed since it was compiled" if old else None)
    if why:
        warnings.warn(f"llmsim.engine: {why}: running its sources (rebuild: python setup.py "
                      "build_ext --inplace)", RuntimeWarning, stacklevel=2)
        sys.meta_path.insert(0, Sources())


_choose()


def compiled() -> bool:
    """Whether the engine's modules run compiled (mypyc) in this process."""
    from . import fast

    return not fast.__file__.endswith(".py")
