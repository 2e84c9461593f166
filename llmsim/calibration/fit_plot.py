"""Real against simulated: median ITL and steady-state throughput over max_num_seqs, one
column per model (and TP), for a fit's points."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from .measured import MeasuredPoint, Prediction


def plot_fit(points: Sequence[MeasuredPoint], preds: Sequence[Prediction], title: str,
             path: str | Path, held_out: Sequence[bool] | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    held_out = list(held_out) if held_out is not None else [False] * len(points)
    series: dict[str, list[int]] = {}
    for i, p in enumerate(points):
        series.setdefault(f"{p.group} tp{p.tp}", []).append(i)
    cols = min(len(series), 5)
    bands = -(-len(series) // cols)  # each band: an ITL row over a throughput row
    fig, grid = plt.subplots(2 * bands, cols, figsize=(3.1 * cols + 0.4, 4.6 * bands + 0.5),
                             squeeze=False)
    for k, (name, idx) in enumerate(series.items()):
        band, c = divmod(k, cols)
        axes = grid[2 * band: 2 * band + 2]
        idx.sort(key=lambda i: (points[i].engine.max_num_seqs, points[i].num_requests))
        x = [points[i].engine.max_num_seqs for i in idx]
        kind = "held out" if all(held_out[i] for i in idx) else "fitted"
        for r, (want, got, unit) in enumerate((
                ([points[i].median_itl_s * 1e3 for i in idx],
                 [preds[i].median_itl_s * 1e3 for i in idx], "median ITL (ms)"),
                ([points[i].steady_output_tps for i in idx],
                 [preds[i].steady_output_tps for i in idx], "output tok/s (steady)"))):
            ax = axes[r][c]
            ax.plot(x, want, "o", color="black", label="real (vLLM)")
            ax.plot(x, got, "-", color="tab:blue", label=f"llmsim ({kind})")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("max_num_seqs")
            if c == 0:
                ax.set_ylabel(unit, fontsize=8)
            ax.grid(alpha=0.3)
            if r == 0:
                ax.set_title(name, fontsize=9)
        axes[0][c].legend(fontsize=7, loc="upper left")
    for k in range(len(series), bands * cols):  # empty cells of the last band
        band, c = divmod(k, cols)
        grid[2 * band][c].axis("off")
        grid[2 * band + 1][c].axis("off")
    fig.suptitle(textwrap.fill(title, width=32 * cols), fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
