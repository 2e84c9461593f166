"""PNG pictures of a trace: prompt and output length histograms and arrival rate over time.

matplotlib is optional (install it to plot) and imported here, lazily, never by the rest
of llmsim. Figures are drawn with the Agg canvas directly, not pyplot, so plotting leaves
no global figure state or backend choice behind. Lengths use log-spaced bins and a log
axis when they span more than two decades (real prompt lengths usually do). Each PNG is
written to a temporary file and renamed, so a failure leaves no half-written picture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import write_atomic
from .stats import arrival_rate
from .workload import Workload


def plot_workload(w: Workload, out_dir: str | Path) -> list[Path]:
    """Write prompt_tokens.png, output_tokens.png and, when the trace has arrival times,
    arrival_rate.png into `out_dir`; returns the paths written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = Path(str(w.meta.get("path", "workload"))).name
    written = []

    def save(fig: Figure, name: str) -> None:
        FigureCanvasAgg(fig)
        written.append(write_atomic(out_dir / name, lambda tmp: fig.savefig(tmp, format="png",
                                                                       dpi=120)))

    for column, label in (("prompt_tokens", "prompt tokens"), ("output_tokens",
                                                               "output tokens")):
        values = getattr(w, column)
        fig = Figure(figsize=(7, 4), layout="constrained")
        ax = fig.add_subplot()
        lo, hi = int(values.min()), int(values.max())
        if hi / lo > 100:
            bins = np.geomspace(lo, hi + 1, 60)
            ax.set_xscale("log")
        else:
            bins = min(60, hi - lo + 1)
        ax.hist(values, bins=bins, color="#4c72b0")
        ax.axvline(np.median(values), color="k", ls="--", lw=1, label="median")
        ax.axvline(np.percentile(values, 99), color="#c44e52", ls=":", lw=1, label="P99")
        ax.set(xlabel=label, ylabel="requests", title=f"{title}: {label} ({len(values):,} "
                                                       f"requests)")
        ax.legend()
        save(fig, f"{column}.png")

    if w.meta.get("has_arrivals", True) and len(w) > 1 and w.duration > 0:
        starts, rate = arrival_rate(w.arrival)
        fig = Figure(figsize=(7, 4), layout="constrained")
        ax = fig.add_subplot()
        width = starts[1] - starts[0] if len(starts) > 1 else 1.0
        ax.step(starts, rate, where="post", color="#4c72b0")
        ax.set_ylim(bottom=0)
        ax.axhline((len(w) - 1) / w.duration, color="k", ls="--", lw=1, label="mean")
        ax.set(xlabel="time (s)", ylabel="requests / s",
               title=f"{title}: arrival rate ({width:.3g} s bins)")
        ax.legend()
        save(fig, "arrival_rate.png")
    return written
