"""What every `llmsim` command shares: how a user error ends it, its progress bars, where
its output goes by default, and how figures are printed."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .errors import USER_ERRORS

console = Console()
err = Console(stderr=True)


def user_errors(command: Callable) -> Callable:
    """A typer command whose user errors (`errors.USER_ERRORS`) print one line on stderr and
    exit with status 2, instead of a traceback."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as e:
            err.print(f"[bold red]error:[/] {one_line(e)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted:[/] nothing was written", highlight=False)
            raise typer.Exit(130) from None
        except MemoryError as e:  # a size no check foresaw: still the user's to reduce
            err.print(f"[bold red]error:[/] out of memory ({one_line(e)}); use fewer requests "
                      "or a smaller configuration", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return run


def progress(label: str = ">12", remaining: bool = False, enabled: bool = True) -> Progress:
    """A progress bar on stderr that disappears when done: `with progress() as bar: ...`.
    `label` formats each task's description (e.g. "<34": left-aligned in 34 columns)."""
    columns = [TextColumn(f"{{task.description:{label}}}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn()]
    if remaining:
        columns.append(TimeRemainingColumn())
    return Progress(*columns, console=err, transient=True, disable=not enabled)


def default_out(command: str, suffix: str = "") -> Path:
    """llmsim-out/<command>-<time><suffix>: a new name for each run."""
    return Path("llmsim-out") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}{suffix}"


def one_line(e: BaseException) -> str:
    """The error's message on one line; an OS error as 'PATH: what'."""
    if isinstance(e, OSError) and e.strerror and e.filename:
        return f"{e.filename}: {e.strerror}"
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(text.split()) or type(e).__name__


def ms(seconds: float | None, decimals: int = 0) -> str:
    """Seconds as milliseconds, '-' when the figure does not exist (None or NaN)."""
    if seconds is None or seconds != seconds:
        return "-"
    return f"{seconds * 1e3:.{decimals}f} ms"


def num(value: float | None, decimals: int = 2) -> str:
    return "-" if value is None or value != value else f"{value:.{decimals}f}"


def pct(value: float | None) -> str:
    """A signed relative error: +12.3%."""
    return "-" if value is None or value != value else f"{value:+.1%}"
