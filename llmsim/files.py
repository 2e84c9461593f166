"""Files on disk: written whole or not at all, and JSON read with errors that name the file.

A file (or folder) is written under a hidden, unique temporary name beside its target and
renamed into place when complete; the rename is atomic on one filesystem, which the same
folder guarantees. On any error the temporary is removed and the error re-raised, so
nothing half-written is left. Files get ordinary permissions (the user's umask), unlike
`tempfile.mkstemp`'s 0600. `durable=True` also flushes the file and its folder to disk, so
that it survives a power cut (a sweep's points, which a resumed sweep trusts).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np


def write_atomic(out: str | Path, write: Callable[[Path], object],
                 durable: bool = False) -> Path:
    """Call `write(tmp_path)`, then rename the result to `out`; returns `out`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        if durable:
            _fsync(tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync(out.parent)
    return out


def write_folder_atomic(out: str | Path, fill: Callable[[Path], object]) -> Path:
    """Call `fill(tmp_folder)`, then put the folder in place of `out` (replacing an existing
    one only once the new one is complete); on any error nothing is left behind."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        fill(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def write_json(out: str | Path, obj, indent: int | None = 2, durable: bool = False) -> Path:
    """`obj` as JSON, whole or not at all; NaN and infinities become null (`finite_json`)."""
    text = json.dumps(finite_json(obj), indent=indent) + "\n"
    return write_atomic(out, lambda tmp: Path(tmp).write_text(text), durable)


def read_json_object(path: str | Path, error: type[Exception] = ValueError,
                     what: str = "file") -> dict:
    """The JSON object in `path`. A missing file is a FileNotFoundError naming `what`; a
    file that is not a JSON object raises `error` saying so."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: not a JSON file ({e})") from None
    if not isinstance(doc, dict):
        raise error(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


def finite_json(obj):
    """JSON has no NaN: null for figures that do not exist (e.g. TPOT of 1-token runs), and
    numpy scalars as Python numbers."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    if isinstance(obj, np.generic):
        return finite_json(obj.item())
    return obj


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not every platform opens folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
