"""Files on disk: written whole or not at all, and JSON read with errors that name the file.

A file (or folder) is written under a hidden temporary name beside its target,
`.NAME.PID.RANDOM.tmp`, and renamed into place when complete; the rename is atomic on one
filesystem, which the same folder guarantees. On any error the temporary is removed and
the error re-raised, so nothing half-written is left; a temporary that a killed process
(SIGKILL, power cut) left behind is removed by the next write of the same target, once
its process is gone. Files and folders get ordinary permissions (the user's umask).
`durable=True` also flushes the file and its folder to disk, so that it survives a power
cut (a sweep's points, which a resumed sweep trusts).

Every folder written whole holds a marker file, `MARKER`: `--force` replaces a folder
only if llmsim wrote it (or it is empty), never a user's file or folder. `check_folder`
and `check_file` say, before any work, whether an output can be written there.
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

MARKER = ".llmsim-output"  # in every folder llmsim writes whole


class OutputExistsError(FileExistsError):
    """The output is there already, or is something llmsim will not replace."""


def check_folder(out: str | Path, force: bool) -> None:
    """Before any work: `out` can become a folder written whole. An existing folder is
    replaced only with `force`, and only if llmsim wrote it or it is empty; a file never."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise OutputExistsError(f"{out} exists and is not a folder; llmsim never replaces "
                                    "a file with its output: choose another --out")
        if not force:
            raise OutputExistsError(f"{out} already exists; pass --force to replace it")
        if not (out / MARKER).is_file() and any(out.iterdir()):
            raise OutputExistsError(
                f"{out} was not written by llmsim (no {MARKER} in it); --force replaces only "
                "llmsim's own output folders: choose another --out or remove it yourself")
    check_writable(out)


def check_file(out: str | Path, force: bool) -> None:
    """Before any work: `out` can be written as a file (replacing one only with `force`)."""
    out = Path(out)
    if out.is_dir():
        raise OutputExistsError(f"{out} is a folder; give a file name")
    if (out.exists() or out.is_symlink()) and not force:
        raise OutputExistsError(f"{out} already exists; pass --force to replace it")
    check_writable(out)


def check_writable(out: str | Path) -> None:
    """The nearest existing folder above `out` is a folder this process may create files
    in (tried, not guessed from permission bits: root, ACLs and read-only mounts differ)."""
    out = Path(out).absolute()
    above = out.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise NotADirectoryError(f"{out}: {above} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".llmsim-probe-", dir=above))
    except OSError as e:
        raise PermissionError(f"{out}: cannot write in {above} ({e.strerror})") from None


def write_atomic(out: str | Path, write: Callable[[Path], object],
                 durable: bool = False, clean: bool = True) -> Path:
    """Call `write(tmp_path)`, then rename the result to `out`; returns `out`. `clean`
    first removes temporaries of `out` that dead processes left (a caller writing many
    files into one folder cleans it once instead)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if clean:
        remove_stale(out)
    tmp = _temporary(out)
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
    remove_stale(out)
    tmp = _temporary(out)
    tmp.mkdir()  # mode 0777 less the umask, unlike mkdtemp's 0700
    try:
        fill(tmp)
        (tmp / MARKER).write_text("written whole by llmsim; --force may replace this folder\n")
        if out.exists():
            old = _temporary(out, "old")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def remove_stale(out: str | Path) -> list[Path]:
    """Remove the temporaries of `out` whose writing process is gone; returns them. A
    replaced folder set aside (`.old`) goes back in place if `out` itself is missing."""
    out = Path(out)
    if not out.parent.is_dir():
        return []
    removed = []
    prefix = f".{out.name}."
    for entry in os.scandir(out.parent):
        name = entry.name
        parts = name[len(prefix):].split(".") if name.startswith(prefix) else []
        # exactly PID.RANDOM.KIND: not the temporaries of another target named OUT.something
        if len(parts) != 3 or not parts[0].isdigit() or parts[2] not in ("tmp", "old"):
            continue
        if _alive(int(parts[0])):
            continue
        path = Path(entry.path)
        if name.endswith(".old") and not out.exists():
            os.replace(path, out)  # killed between the two renames: the old folder stays
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _temporary(out: Path, kind: str = "tmp") -> Path:
    return out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.{kind}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: leave its files alone
    return True


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
