"""Writing a file (or a folder) so that it is either whole or absent: write beside it,
then rename.

The temporary name is unique (process id and a random part) and hidden (leading dot); the
rename is atomic on one filesystem, which the same folder guarantees. On any error the
temporary file is removed and the error re-raised, so nothing half-written is left. The
file gets ordinary permissions (the user's umask), unlike `tempfile.mkstemp`'s 0600.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def write_atomic(out: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp_path)`, then rename the result to `out`; returns `out`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def write_folder_atomic(out: str | Path, fill: Callable[[Path], object]) -> Path:
    """Call `fill(tmp_folder)`, then put the folder in place of `out` (replacing an existing
    one only once the new one is complete); on any error nothing is left behind."""
    import shutil
    import tempfile

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
