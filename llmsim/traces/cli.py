"""`llmsim trace ...`: look at a trace file and convert it, from the command line.

    llmsim trace info PATH            rows, duration, rate and length quantiles
    llmsim trace plot PATH --out DIR  PNG histograms and the arrival rate over time
    llmsim trace convert PATH OUT.parquet

A typer sub-app (`trace_app`) mounted by llmsim's main CLI. Every command takes
`--format` to name the format instead of sniffing it, and `--model` / `--split` for
CASTILLO. A file that cannot be read prints one line to stderr and exits with code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..cli_kit import user_errors
from ..files import check_file, check_writable
from .loaders import FORMATS, load_trace
from .workload import Workload

trace_app = typer.Typer(help="Look at trace files and convert them to Parquet.",
                        no_args_is_help=True, add_completion=False,
                        pretty_exceptions_enable=False)

PathArg = Annotated[Path, typer.Argument(help="Trace file (or CASTILLO folder).")]
Format = Annotated[str | None, typer.Option(
    "--format", "-f", help=f"Format instead of sniffing it: {', '.join(FORMATS)}.")]
ModelOpt = Annotated[str | None, typer.Option(help="CASTILLO: keep this model's lengths.")]
SplitOpt = Annotated[str | None, typer.Option(help="CASTILLO: train, validate or test.")]


def _load(path: Path, fmt: str | None, model: str | None, split: str | None) -> Workload:
    options = {k: v for k, v in (("model", model), ("split", split)) if v is not None}
    return load_trace(path, fmt, **options)


@trace_app.command()
@user_errors
def info(path: PathArg, format: Format = None, model: ModelOpt = None,
         split: SplitOpt = None) -> None:
    """Rows, duration, mean rate and prompt/output length statistics of a trace."""
    from .stats import summarize

    w = _load(path, format, model, split)
    s = summarize(w)
    console = Console()
    console.print(f"[bold]{w.source}[/]")
    head = Table(show_header=False, box=None)
    head.add_row("rows", f"{s.rows:,}")
    if s.has_arrivals:
        head.add_row("duration", f"{s.duration_s:,.1f} s")
        head.add_row("mean rate", "-" if s.mean_rate_rps is None
                     else f"{s.mean_rate_rps:.3f} req/s")
    else:
        head.add_row("arrivals", "none in the file (all at 0)")
    console.print(head)
    table = Table(title="lengths (tokens)")
    for col in ("", "mean", "median", "P90", "P99", "max"):
        table.add_column(col, justify="right" if col else "left")
    for name, st in (("prompt", s.prompt), ("output", s.output)):
        table.add_row(name, f"{st.mean:,.1f}", f"{st.median:,.0f}", f"{st.p90:,.0f}",
                      f"{st.p99:,.0f}", f"{st.max:,}")
    console.print(table)


@trace_app.command()
@user_errors
def plot(path: PathArg, out: Annotated[Path, typer.Option(help="Folder for the PNGs.")],
         format: Format = None, model: ModelOpt = None, split: SplitOpt = None) -> None:
    """PNG histograms of prompt and output lengths and the arrival rate over time."""
    try:
        import matplotlib  # noqa: F401

        from .plots import plot_workload
    except ImportError:
        raise ImportError("plot needs matplotlib: pip install matplotlib") from None
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder")
    check_writable(out / "x.png")
    w = _load(path, format, model, split)
    written = plot_workload(w, out)
    for p in written:
        typer.echo(str(p))


@trace_app.command()
@user_errors
def convert(path: PathArg,
            out: Annotated[Path, typer.Argument(help="Parquet file to write.")],
            format: Format = None, model: ModelOpt = None, split: SplitOpt = None,
            force: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False
            ) -> None:
    """Write a trace as llmsim Parquet (typed, compressed; fast to load at any size)."""
    from .native import write_parquet

    if out.suffix.lower() not in (".parquet", ".pq"):
        raise ValueError(f"{out}: the output must end in .parquet")
    check_file(out, force)
    w = _load(path, format, model, split)
    write_parquet(w, out)
    typer.echo(f"wrote {out}: {len(w):,} requests")


@trace_app.command()
@user_errors
def sessions(out: Annotated[Path, typer.Argument(help="Parquet file to write.")],
             sessions: Annotated[int, typer.Option(help="Chat sessions.", min=1)] = 1000,
             session_rate: Annotated[float, typer.Option(help="Sessions started per second.")]
             = 1.0,
             mean_turns: Annotated[float, typer.Option(help="Mean turns per session.")] = 4.0,
             system_prompts: Annotated[int, typer.Option(help="Distinct shared system prompts.",
                                                         min=1)] = 4,
             system_tokens: Annotated[int, typer.Option(help="Tokens per system prompt.",
                                                        min=0)] = 1024,
             user_tokens: Annotated[float, typer.Option(help="Mean user-message tokens.")] = 200,
             output_tokens: Annotated[float, typer.Option(help="Mean answer tokens.")] = 250,
             think_s: Annotated[float, typer.Option(help="Mean think time between turns, s.")]
             = 20.0,
             block_tokens: Annotated[int, typer.Option(
                 help="Tokens per block id (the engine's block size is best).", min=1)] = 16,
             seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0) -> None:
    """Synthesise multi-turn chat sessions with shared system prompts, with the block ids
    prefix caching needs (`llmsim run --trace OUT`: caching is on by default)."""
    import numpy as np

    from .native import write_parquet
    from .sessions import SessionSpec, synthesize_sessions

    if out.suffix.lower() not in (".parquet", ".pq"):
        raise ValueError(f"{out}: the output must end in .parquet")
    spec = SessionSpec(sessions, session_rate, mean_turns, system_prompts, system_tokens,
                       user_tokens, output_tokens, think_s, block_tokens=block_tokens)
    w = synthesize_sessions(spec, np.random.default_rng(seed))
    write_parquet(w, out)
    typer.echo(f"wrote {out}: {len(w):,} requests ({w.source})")
