"""What every `llmsim` command shares: how a user error ends it, its progress bars, where
its output goes by default, and how figures are printed."""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from typer.core import TyperGroup

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


# Click's exceptions, from the click that typer runs on (newer typers vendor their own).
_click_errors = sys.modules[typer.BadParameter.__module__]
ClickException = _click_errors.ClickException
NoArgsIsHelpError = getattr(_click_errors, "NoArgsIsHelpError", ())


class OneLineErrors(TyperGroup):
    """llmsim's command group: a mistyped option or value (click's usage errors) is one
    line on stderr and exit status 2, like every other user error, instead of the usage
    text and a framed message."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        restore = _second_interrupt_quits()
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as e:
            e.show()  # the help text: what a bare `llmsim trace` asks for
            rv = e.exit_code
        except ClickException as e:
            where = e.ctx.command_path if getattr(e, "ctx", None) is not None else "llmsim"
            err.print(f"[bold red]error:[/] {one_line(e)} (see `{where} --help`)",
                      highlight=False, soft_wrap=True)
            rv = e.exit_code
        except typer.Abort:
            rv = 1
        finally:
            restore()
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def _second_interrupt_quits() -> Callable[[], None]:
    """The first Ctrl-C raises KeyboardInterrupt as usual: the command cleans up and exits
    130. A second one, while that cleanup runs, exits 130 at once: a cleanup that hangs (a
    library's threads at exit) must not keep the user waiting. It is as safe as a kill:
    outputs appear whole or not at all, and the next run removes the hidden temporaries.
    Returns what puts the previous handler back (left alone outside the main thread, or
    when someone else handles SIGINT)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        return lambda: None

    def first(signum, frame):
        signal.signal(signal.SIGINT, again)
        raise KeyboardInterrupt

    def again(signum, frame):
        os.write(2, b"interrupted again: leaving now\n")  # no locks: rich's may be held
        os._exit(130)

    signal.signal(signal.SIGINT, first)
    return lambda: signal.signal(signal.SIGINT, signal.default_int_handler)


def progress(label: str = ">12", remaining: bool = False,
             enabled: bool = True) -> Progress | PlainProgress:
    """A progress bar on stderr that disappears when done: `with progress() as bar: ...`.
    `label` formats each task's description (e.g. "<34": left-aligned in 34 columns).
    When stderr is not a terminal (a log, CI, a pipe), a plain line per task every
    `PLAIN_EVERY_S` seconds instead (LLMSIM_PROGRESS_SECONDS overrides), and nothing for
    work done sooner."""
    if enabled and not err.is_terminal:
        return PlainProgress(float(os.environ.get("LLMSIM_PROGRESS_SECONDS", PLAIN_EVERY_S)))
    columns = [TextColumn(f"{{task.description:{label}}}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn()]
    if remaining:
        columns.append(TimeRemainingColumn())
    return Progress(*columns, console=err, transient=True, disable=not enabled)


PLAIN_EVERY_S = 10.0


class PlainProgress:
    """The part of rich's Progress that llmsim uses, as plain lines on stderr: every
    `every` seconds (from a timer thread, so that a long step still shows it is alive), one
    line per task: 'description: done/total (percent), elapsed'; a last line when the work
    ends, if any line was printed."""

    def __init__(self, every: float = PLAIN_EVERY_S) -> None:
        self.every = every
        self.tasks: dict[int, dict] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.started = time.monotonic()
        self.printed = False
        self.timer = threading.Thread(target=self._tick, daemon=True)

    def __enter__(self) -> PlainProgress:
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        if self.printed and exc[0] is None:
            self._print(final=True)

    def add_task(self, description: str, total: float | None = None, completed: float = 0,
                 **_) -> int:
        with self.lock:
            task = len(self.tasks)
            self.tasks[task] = {"description": description, "total": total,
                                "completed": completed, "shown": True}
        return task

    def update(self, task: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, **_) -> None:
        with self.lock:
            t = self.tasks[task]
            if total is not None:
                t["total"] = total
            if completed is not None:
                t["completed"] = completed
            if advance is not None:
                t["completed"] += advance
            if description is not None:
                t["description"] = description

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def remove_task(self, task: int) -> None:
        with self.lock:
            self.tasks[task]["shown"] = False

    def _tick(self) -> None:
        while not self.stopped.wait(self.every):
            self._print()

    def _print(self, final: bool = False) -> None:
        elapsed = duration(time.monotonic() - self.started)
        with self.lock:
            lines = []
            for t in self.tasks.values():
                if not t["shown"]:
                    continue
                done, total = t["completed"], t["total"]
                of = (f"{done:,.0f}/{total:,.0f} ({done / total:.0%})" if total
                      else f"{done:,.0f}")
                lines.append(f"{t['description']}: {of}, {elapsed}" + (" (done)" if final
                                                                          else ""))
        for line in lines:
            err.print(line, highlight=False, markup=False, soft_wrap=True)
        self.printed = self.printed or bool(lines)


def default_out(command: str, suffix: str = "") -> Path:
    """llmsim-out/<command>-<time><suffix>: a new name for each run."""
    return Path("llmsim-out") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}{suffix}"


def one_line(e: BaseException) -> str:
    """The error's message on one line; an OS error as 'PATH: what'."""
    if isinstance(e, OSError) and e.strerror and e.filename:
        return f"{e.filename}: {e.strerror}"
    if isinstance(e, ClickException):
        text = e.format_message()
    else:
        text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(text.split()) or type(e).__name__


def duration(seconds: float | None) -> str:
    """Seconds in the unit that suits their size, three significant figures at most:
    '4.2 ms', '193 ms', '7.44 s', '26.4 min', '3.1 h'; '-' when the figure does not exist."""
    if seconds is None or seconds != seconds:
        return "-"
    s = abs(seconds)
    sign = "-" if seconds < 0 else ""
    if s < 0.9995:
        v = s * 1e3
        return f"{sign}{v:.1f} ms" if v < 9.95 else f"{sign}{v:.0f} ms"
    if s < 59.95:
        return f"{sign}{s:.2f} s" if s < 9.995 else f"{sign}{s:.1f} s"
    if s < 3600:
        return f"{sign}{s / 60:.1f} min"
    return f"{sign}{s / 3600:,.1f} h"


def table(title: str | None = None, caption: str | None = None) -> Table:
    """A table that fits 80 columns: one space between columns, no vertical rules; give
    long headers two lines ('TTFT\\nmean') and numbers `no_wrap`."""
    return Table(title=title, caption=caption, title_style="bold", box=box.SIMPLE_HEAD,
                 padding=(0, 0), show_edge=False)


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
