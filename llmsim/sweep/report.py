"""A sweep's report: PNG figures and one self-contained HTML page (figures inlined).

Per engine variant of the grid:
- `latency-<engine>.png`: mean, P90 and P99 of E2E and TTFT against load (or rate), one
  line per policy: the mean over seeds, and a band of its 95% Student-t interval (on these
  log axes, a lower end <= 0 is drawn at the lowest seed's value instead);
- `throughput-<engine>.png`: completed requests/s and goodput (requests/s meeting the SLO)
  against load, same lines and bands;
- `cdf-<engine>.png`: CDFs of E2E and TTFT at one load. Each point stores its latency
  quantiles (percentiles 0..99, 99.5, 99.9, 100), not its requests; the line is the
  quantile function averaged over seeds (the "Vincentized" mean distribution), the band
  spans the seeds' own curves.
`index.html` holds all of them and a table of the seed means with their interval
half-widths. The folder is built beside its target and renamed into place: a failed report
leaves nothing half-written.
"""

from __future__ import annotations

import base64
import html
import math
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..files import check_folder, write_folder_atomic
from . import store
from .intervals import t_interval
from .point import QUANTILE_LEVELS

LATENCY_PANELS = (("e2e", "E2E"), ("ttft", "TTFT"))
STATS = (("mean", "mean"), ("p90", "P90"), ("p99", "P99"))
TABLE_COLUMNS = (("e2e_mean", "E2E mean (s)"), ("e2e_p90", "E2E P90 (s)"),
                 ("e2e_p99", "E2E P99 (s)"), ("ttft_mean", "TTFT mean (s)"),
                 ("ttft_p90", "TTFT P90 (s)"), ("tpot_p90", "TPOT P90 (s)"),
                 ("throughput_rps", "throughput (req/s)"), ("goodput_rps", "goodput (req/s)"))


class ReportFiles(NamedTuple):
    html: Path
    figures: list[Path]
    cdf_at: dict[str, float]  # engine -> the load (or rate) of its CDF figure
    complete: bool  # False: the sweep had unfinished points; the report shows those done


def report(results_dir: str | Path, out_dir: str | Path | None = None,
           cdf_at: float | None = None) -> ReportFiles:
    """Render the report of the sweep in `results_dir` into `out_dir` (default
    RESULTS/report), replacing an earlier report there. `cdf_at`: the load (or rate) of the
    CDF figures; default the grid's value nearest 0.9 (load) or its middle rate."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no global figure state or backend
    except ImportError:
        raise ValueError("the report needs matplotlib: pip install 'llmsim[plot]'") from None
    results_dir = Path(results_dir)
    record, rows, complete = store.load_rows(results_dir)
    if not rows:
        raise ValueError(f"{results_dir} has no finished points yet")
    out = Path(out_dir) if out_dir is not None else results_dir / "report"
    axis = record["axis"]
    x_key = "load" if axis == "load" else "rate_rps"
    x_label = "load (fraction of capacity)" if axis == "load" else "request rate (req/s)"
    policies = record["grid"]["policies"]
    colors = {p: f"C{i % 10}" for i, p in enumerate(policies)}
    by_engine = _group(rows, x_key)

    # A report is regenerated from the results: its own folder is replaced without --force
    # (one without the marker, from an older llmsim, by its index.html).
    if not (out / "index.html").is_file():
        check_folder(out, force=True)
    figures, chosen = [], {}

    def fill(tmp: Path) -> None:
        sections = []
        for engine, curves in by_engine.items():
            xs = sorted({x for per_x in curves.values() for x in per_x})
            at = _nearest(xs, cdf_at if cdf_at is not None else
                          (0.9 if axis == "load" else xs[len(xs) // 2]))
            chosen[engine] = at
            names = (f"latency-{engine}.png", f"throughput-{engine}.png", f"cdf-{engine}.png")
            _latency_figure(Figure, curves, colors, x_label, engine).savefig(
                tmp / names[0], dpi=110)
            _throughput_figure(Figure, curves, colors, x_label, engine, record).savefig(
                tmp / names[1], dpi=110)
            _cdf_figure(Figure, curves, colors, at, axis, engine).savefig(tmp / names[2], dpi=110)
            figures.extend(out / n for n in names)
            sections.append(_html_section(engine, names, tmp, curves, axis))
        (tmp / "index.html").write_text(_html_page(record, sections, complete, results_dir))

    write_folder_atomic(out, fill)
    return ReportFiles(out / "index.html", figures, chosen, complete)


def _group(rows: list[dict], x_key: str) -> dict[str, dict[str, dict[float, list[dict]]]]:
    """engine -> policy -> x -> the rows of its seeds, in the rows' (grid) order."""
    out: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows:
        out[r["engine"]][r["policy"]][r[x_key]].append(r)
    return out


def _curve(per_x: dict[float, list[dict]], column: str) -> tuple[np.ndarray, ...]:
    xs = sorted(per_x)
    ivs = [t_interval([_num(r[column]) for r in per_x[x]]) for x in xs]
    return (np.array(xs), np.array([i.mean for i in ivs]), np.array([i.low for i in ivs]),
            np.array([i.high for i in ivs]))


def _plot_curves(ax, curves, colors, column: str, log: bool) -> None:
    for policy, per_x in curves.items():
        x, mean, low, high = _curve(per_x, column)
        if log:  # a lower end <= 0 has no place on a log axis: draw it at the lowest seed
            lowest = np.array([np.nanmin([_num(r[column]) for r in per_x[v]]) for v in x])
            low = np.where(low > 0, low, lowest)
        ax.plot(x, mean, marker="o", ms=3, color=colors[policy], label=policy)
        ax.fill_between(x, low, high, color=colors[policy], alpha=0.2, lw=0)
    if log and ax.has_data():
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)


def _latency_figure(Figure, curves, colors, x_label: str, engine: str):
    fig = Figure(figsize=(13, 7), layout="constrained")
    axes = fig.subplots(2, 3, sharex=True)
    for row, (metric, label) in enumerate(LATENCY_PANELS):
        for col, (stat, stat_label) in enumerate(STATS):
            ax = axes[row][col]
            _plot_curves(ax, curves, colors, f"{metric}_{stat}", log=True)
            ax.set_title(f"{label} {stat_label}")
            ax.set_ylabel("seconds (log scale)")
            if row == 1:
                ax.set_xlabel(x_label)
    axes[0][0].legend(title="policy")
    fig.suptitle(f"Latency against load, engine '{engine}': mean over seeds, band: 95% "
                 "t-interval")
    return fig


def _throughput_figure(Figure, curves, colors, x_label: str, engine: str, record: dict):
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    slo = {k: v for k, v in record["grid"]["slo"].items() if v is not None}
    slo_text = (", ".join(f"{k.upper()} <= {v * 1e3:g} ms" for k, v in slo.items()) if slo
                else "no SLO set: goodput = throughput")
    for ax, (column, title) in zip(axes, (("throughput_rps", "throughput"),
                                          ("goodput_rps", f"goodput ({slo_text})")),
                                   strict=True):
        _plot_curves(ax, curves, colors, column, log=False)
        ax.set_title(title)
        ax.set_xlabel(x_label)
        ax.set_ylabel("requests/s")
    axes[0].legend(title="policy")
    fig.suptitle(f"Throughput and goodput, engine '{engine}': mean over seeds, band: 95% "
                 "t-interval")
    return fig


def _cdf_figure(Figure, curves, colors, at: float, axis: str, engine: str):
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    levels = np.array(QUANTILE_LEVELS)
    for ax, (metric, label) in zip(axes, LATENCY_PANELS, strict=True):
        for policy, per_x in curves.items():
            if at not in per_x:
                continue
            q = np.array([[_num(v) for v in r[f"{metric}_quantiles"]] for r in per_x[at]])
            if np.isnan(q).all():
                continue
            ax.plot(np.nanmean(q, axis=0), levels, color=colors[policy], label=policy)
            if len(q) > 1:
                ax.fill_betweenx(levels, np.nanmin(q, axis=0), np.nanmax(q, axis=0),
                                 color=colors[policy], alpha=0.2, lw=0)
        if ax.has_data():
            ax.set_xscale("log")
        ax.set_title(f"{label} CDF")
        ax.set_xlabel("seconds (log scale)")
        ax.set_ylabel("fraction of completed requests")
        ax.grid(True, alpha=0.3)
    axes[0].legend(title="policy")
    where = f"load {at:g}" if axis == "load" else f"{at:g} req/s"
    fig.suptitle(f"Latency distribution at {where}, engine '{engine}': quantiles averaged over "
                 "seeds, band: the seeds' range")
    return fig


def _html_section(engine: str, names, folder: Path, curves, axis: str) -> str:
    images = "\n".join(
        f'<img alt="{html.escape(n)}" src="data:image/png;base64,'
        f'{base64.b64encode((folder / n).read_bytes()).decode()}">' for n in names)
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in TABLE_COLUMNS)
    lines = []
    for policy, per_x in curves.items():
        for x in sorted(per_x):
            seeds = per_x[x]
            cells = []
            for column, _ in TABLE_COLUMNS:
                iv = t_interval([_num(r[column]) for r in seeds])
                text = _fmt(iv.mean) + (f" <small>&plusmn; {_fmt(iv.high - iv.mean)}</small>"
                                        if iv.n > 1 and math.isfinite(iv.high) else "")
                cells.append(f"<td>{text}</td>")
            rate = sum(r["rate_rps"] for r in seeds) / len(seeds)
            lines.append(f"<tr><td>{html.escape(policy)}</td><td>{x:g}</td><td>{rate:.3g}</td>"
                         f"<td>{len(seeds)}</td>{''.join(cells)}</tr>")
    x_head = "load" if axis == "load" else "rate (req/s)"
    return (f"<h2>Engine config '{html.escape(engine)}'</h2>\n{images}\n"
            f"<table><tr><th>policy</th><th>{x_head}</th><th>rate (req/s)</th><th>seeds</th>"
            f"{head}</tr>\n" + "\n".join(lines) + "\n</table>")


def _html_page(record: dict, sections: list[str], complete: bool, results_dir: Path) -> str:
    g = record["grid"]
    d = g["deployment"]
    engines = "; ".join(
        f"{e['name']}: " + ", ".join(f"{k}={v}" for k, v in e.items() if k != "name")
        for e in g["engines"])
    caps = ", ".join(f"{k}: {v:.3g} req/s" for k, v in record["capacity_rps"].items())
    facts = [
        ("results", str(results_dir)),
        ("workload", f"{record['workload']['requests']} requests; {record['workload']['source']}"),
        ("arrivals", "Poisson" if g["burstiness"] == 1 else f"gamma, burstiness {g['burstiness']}"),
        ("deployment", f"{d['model']} on {d['gpu']}, tp={d['tp']}, {d['num_replicas']} "
                       f"replica(s), router {d['router']}"
                       + (f", profile {d['profile']}" if d["profile"] else "")),
        ("engine configs", engines),
        ("capacity", caps or "-"),
        ("policies", ", ".join(g["policies"])),
        ("loads" if g["loads"] is not None else "rates (req/s)",
         ", ".join(f"{x:g}" for x in (g["loads"] if g["loads"] is not None else g["rates"]))),
        ("seeds", ", ".join(str(s) for s in g["seeds"])),
        ("simulator", f"{g['simulator']} engine, llmsim {record['llmsim_version']}"),
    ]
    rows = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                     for k, v in facts)
    warning = ("" if complete else "<p class=warn>This sweep is not finished: the report shows "
               "the points done so far.</p>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>llmsim sweep report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1450px; }}
img {{ max-width: 100%; display: block; margin: 1em 0; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }}
th {{ background: #f4f4f4; }} td:first-child, .facts td, .facts th {{ text-align: left; }}
small {{ color: #777; }} .warn {{ color: #b00; font-weight: bold; }}
</style></head><body>
<h1>llmsim sweep report</h1>
{warning}
<table class=facts>
{rows}
</table>
<p>Each figure and table cell is the mean over seeds; &plusmn; and the bands are the half-width
of its 95% Student-t confidence interval (seeds are independent replications).</p>
{chr(10).join(sections)}
</body></html>
"""


def _nearest(xs: list[float], target: float) -> float:
    return min(xs, key=lambda x: (abs(x - target), x))


def _num(v) -> float:
    return math.nan if v is None else float(v)


def _fmt(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v:.3g}"
