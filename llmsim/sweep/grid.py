"""A sweep's grid: policies x loads (or rates) x engine configs x seeds, and what they run on.

Built from arguments (`Grid(...)`) or read from a TOML file (`load_grid`, see
examples/sweep.toml and docs/sweeps.md). Everything is checked when the grid is built, so
that a typo fails before any simulation runs and before any output folder exists.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import NamedTuple

from ..engine.config import EngineConfig
from ..engine.summary import Slo
from ..policies import UnknownPolicyError, get_policy
from ..simulate import SIMULATORS, Deployment
from ..traces.workload import Workload
from ..workload_spec import WorkloadSpec

DEFAULT_POLICIES = ("fcfs", "sjf", "srpt", "mlfq")
DEFAULT_LOADS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2)
DEFAULT_SEEDS = (0, 1, 2)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # safe in file names and plot labels


@dataclass(frozen=True, slots=True)
class EngineVariant:
    """One value of the engine-config axis: a name for tables and plots, and the settings."""

    name: str = "default"
    config: EngineConfig = field(default_factory=EngineConfig)


class Point(NamedTuple):
    """One simulation of the grid. Exactly one of `load` (fraction of the engine variant's
    measured capacity) and `rate` (req/s) is set."""

    policy: str
    engine: str
    load: float | None
    rate: float | None
    seed: int

    @property
    def id(self) -> str:
        """Readable and unique within a grid; also the point's file name."""
        x = f"load{self.load:g}" if self.load is not None else f"rate{self.rate:g}"
        return f"{self.policy}_{self.engine}_{x}_seed{self.seed}"


@dataclass(frozen=True)
class Grid:
    policies: tuple[str, ...] = DEFAULT_POLICIES
    loads: tuple[float, ...] | None = DEFAULT_LOADS  # fractions of measured capacity
    rates: tuple[float, ...] | None = None  # req/s; give loads or rates, not both
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    engines: tuple[EngineVariant, ...] = (EngineVariant(),)
    trace: str | None = None  # None: the bundled workload
    requests: int | None = None  # the first N requests of the trace
    burstiness: float = 1.0  # gamma shape of the arrival gaps; 1 is Poisson
    deployment: Deployment = Deployment()  # its engine field is replaced by each variant
    slo: Slo = Slo()  # per-request objectives (seconds), for goodput
    simulator: str = "fast"  # "fast" or "reference"

    def __post_init__(self) -> None:
        object.__setattr__(self, "policies", tuple(self.policies))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "engines", tuple(self.engines))
        for name in ("loads", "rates"):
            values = getattr(self, name)
            if values is not None:
                object.__setattr__(self, name, tuple(float(v) for v in values))
        _check(self)

    @property
    def axis(self) -> str:
        """The x axis of the sweep's curves: "load" or "rate"."""
        return "load" if self.loads is not None else "rate"

    def points(self) -> list[Point]:
        """Every point, in the order of the results table: policy, engine, load, seed."""
        xs = self.loads if self.loads is not None else self.rates
        return [Point(p, e.name, x if self.axis == "load" else None,
                      x if self.axis == "rate" else None, s)
                for p in self.policies for e in self.engines for x in xs for s in self.seeds]

    def engine(self, name: str) -> EngineVariant:
        return next(e for e in self.engines if e.name == name)

    def deployment_for(self, engine: str) -> Deployment:
        return replace(self.deployment, engine=self.engine(engine).config)

    def workload(self) -> Workload:
        """The requests every point runs (their arrival times are redrawn per point)."""
        return WorkloadSpec(self.trace, requests=self.requests).requests_only()

    def arrivals(self, rate: float, seed: int) -> WorkloadSpec:
        """How a point's arrivals are drawn: gamma gaps at `rate` with the grid's
        burstiness, from the point's seed."""
        return WorkloadSpec(self.trace, requests=self.requests, arrival_process="gamma",
                            rate=rate, burstiness=self.burstiness, seed=seed)

    def to_dict(self) -> dict:
        """Plain JSON-able values, as recorded in a sweep's folder."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["policies"], d["seeds"] = list(self.policies), list(self.seeds)
        d["loads"] = None if self.loads is None else list(self.loads)
        d["rates"] = None if self.rates is None else list(self.rates)
        d["engines"] = [{"name": e.name, **e.config.to_dict()} for e in self.engines]
        deployment = self.deployment.to_dict()
        deployment.pop("engine")
        d["deployment"] = deployment
        d["slo"] = self.slo.to_dict()
        return d


def load_grid(path: str | Path) -> Grid:
    """A grid from a TOML file; a relative trace path is taken from the file's folder."""
    path = Path(path)
    doc = read_toml(path)
    try:
        return grid_from_toml(doc, base=path.parent)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from None


def read_toml(path: str | Path) -> dict:
    """The parsed sweep config; a missing file or bad TOML says which file and where."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep config {path} does not exist")
    try:
        import tomllib
    except ImportError:  # Python 3.10: no TOML reader in the standard library
        raise ValueError("reading a sweep config needs Python 3.11 or later (tomllib); "
                         "on 3.10 build the Grid in Python instead") from None
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a text file: {e}") from None


TOML_SECTIONS = {
    "workload": {"trace", "requests", "burstiness"},
    "deployment": {"model", "gpu", "tp", "replicas", "router", "profile"},
    "slo": {"ttft_ms", "tpot_ms", "e2e_ms"},
    "grid": {"policies", "loads", "rates", "seeds", "simulator"},
    "engines": {f.name for f in fields(EngineConfig)} | {"name"},
    "capacity": {"ttft_p90_ms", "tpot_p90_ms", "tolerance", "bracket", "seeds"},
}


def grid_from_toml(doc: dict, base: Path = Path(".")) -> Grid:
    """A grid from a parsed TOML document (sections as in examples/sweep.toml)."""
    for section, value in doc.items():
        if section not in TOML_SECTIONS:
            raise ValueError(f"unknown section [{section}]; known sections: "
                             f"{', '.join(TOML_SECTIONS)}")
        tables = value if section == "engines" else [value]
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise ValueError(f"[{section}] must be a table" + (
                " array ([[engines]])" if section == "engines" else ""))
        for table in tables:
            unknown = set(table) - TOML_SECTIONS[section]
            if unknown:
                raise ValueError(f"unknown key {sorted(unknown)[0]!r} in [{section}]; known keys: "
                                 f"{', '.join(sorted(TOML_SECTIONS[section]))}")
    w, d, s, g = (doc.get(k, {}) for k in ("workload", "deployment", "slo", "grid"))
    trace = w.get("trace")
    if trace is not None:
        trace = str(base / _typed(trace, str, "workload.trace"))
    engines = tuple(
        EngineVariant(_typed(t.get("name", f"engine{i}"), str, "engines.name"),
                      EngineConfig(**{k: v for k, v in t.items() if k != "name"}))
        for i, t in enumerate(doc.get("engines", [])))
    if len(engines) == 1 and "name" not in doc["engines"][0]:
        engines = (replace(engines[0], name="default"),)
    has_loads, has_rates = "loads" in g, "rates" in g
    return Grid(
        policies=_typed_list(g.get("policies", list(DEFAULT_POLICIES)), str, "grid.policies"),
        loads=(_typed_list(g["loads"], float, "grid.loads") if has_loads
               else None if has_rates else DEFAULT_LOADS),
        rates=_typed_list(g["rates"], float, "grid.rates") if has_rates else None,
        seeds=_typed_list(g.get("seeds", list(DEFAULT_SEEDS)), int, "grid.seeds"),
        engines=engines or (EngineVariant(),),
        trace=trace,
        requests=_typed(w.get("requests"), int, "workload.requests"),
        burstiness=_typed(w.get("burstiness", 1.0), float, "workload.burstiness"),
        deployment=Deployment(
            model=_typed(d.get("model", "llama-3-8b"), str, "deployment.model"),
            gpu=_typed(d.get("gpu", "h100"), str, "deployment.gpu"),
            tp=_typed(d.get("tp", 1), int, "deployment.tp"),
            num_replicas=_typed(d.get("replicas", 1), int, "deployment.replicas"),
            router=_typed(d.get("router", "round-robin"), str, "deployment.router"),
            profile=_typed(d.get("profile"), str, "deployment.profile")),
        slo=Slo(*(None if s.get(k) is None else _typed(s[k], float, f"slo.{k}") / 1e3
                  for k in ("ttft_ms", "tpot_ms", "e2e_ms"))),
        simulator=_typed(g.get("simulator", "fast"), str, "grid.simulator"),
    )


class CapacitySettings(NamedTuple):
    """The [capacity] section: the SLO of `llmsim capacity-search` and its search."""

    ttft_p90_ms: float | None = None
    tpot_p90_ms: float | None = None
    tolerance: float = 0.02
    bracket: tuple[float, float] | None = None  # req/s; None: around measured capacity
    seeds: tuple[int, ...] | None = None  # None: the grid's seeds


def capacity_settings_from_toml(doc: dict) -> CapacitySettings:
    c = doc.get("capacity", {})
    if not isinstance(c, dict):
        raise ValueError("[capacity] must be a table")
    unknown = set(c) - TOML_SECTIONS["capacity"]
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r} in [capacity]; known keys: "
                         f"{', '.join(sorted(TOML_SECTIONS['capacity']))}")
    bracket = c.get("bracket")
    if bracket is not None:
        bracket = _typed_list(bracket, float, "capacity.bracket")
        if len(bracket) != 2:
            raise ValueError(f"capacity.bracket must be [low, high] in req/s, got {list(bracket)}")
    seeds = c.get("seeds")
    return CapacitySettings(
        _typed(c.get("ttft_p90_ms"), float, "capacity.ttft_p90_ms"),
        _typed(c.get("tpot_p90_ms"), float, "capacity.tpot_p90_ms"),
        _typed(c.get("tolerance", 0.02), float, "capacity.tolerance"),
        bracket, None if seeds is None else _typed_list(seeds, int, "capacity.seeds"))


def parse_list(text: str, kind: type, what: str) -> tuple:
    """'0.5,0.6' or '0.5:1.2:0.1' (start:stop:step, stop included) from a command line."""
    text = text.strip()
    try:
        if ":" in text and kind is float:
            start, stop, step = (float(v) for v in text.split(":"))
            if not step > 0 or stop < start:
                raise ValueError
            n = int(math.floor((stop - start) / step + 1e-9)) + 1
            return tuple(round(start + i * step, 10) for i in range(n))
        return tuple(kind(v.strip()) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--{what}: cannot read {text!r} as a comma-separated list of "
                         f"{kind.__name__}" + (" or START:STOP:STEP" if kind is float else "")
                         ) from None


def _check(g: Grid) -> None:
    if not g.policies:
        raise ValueError("the grid has no policies")
    for name in g.policies:
        try:
            get_policy(name)
        except UnknownPolicyError as e:
            raise ValueError(str(e)) from None
    if (g.loads is None) == (g.rates is None):
        raise ValueError("give loads or rates, not both" if g.loads is not None
                         else "the grid needs loads or rates")
    xs = g.loads if g.loads is not None else g.rates
    if not xs:
        raise ValueError(f"the grid has no {g.axis}s")
    for x in xs:
        if not (x > 0 and math.isfinite(x)):
            raise ValueError(f"{g.axis}s must be finite and > 0, got {x}")
    if not g.seeds:
        raise ValueError("the grid has no seeds")
    if any(s < 0 for s in g.seeds):
        raise ValueError(f"seeds must be >= 0, got {list(g.seeds)}")
    if not g.engines:
        raise ValueError("the grid has no engine configs")
    for e in g.engines:
        if not isinstance(e, EngineVariant):
            raise ValueError(f"engine configs must be EngineVariant(name, EngineConfig), got {e!r}")
        if not NAME.match(e.name):
            raise ValueError(f"engine name {e.name!r}: use letters, digits and . _ + -")
    for what, values in (("policies", g.policies), ("seeds", g.seeds), ("loads", g.loads),
                         ("rates", g.rates), ("engine names", [e.name for e in g.engines])):
        if values is not None and len(set(values)) != len(values):
            raise ValueError(f"{what} repeat a value: {list(values)}")
    if g.requests is not None and g.requests < 1:
        raise ValueError(f"requests must be >= 1, got {g.requests}")
    if not (g.burstiness > 0 and math.isfinite(g.burstiness)):
        raise ValueError(f"burstiness must be finite and > 0, got {g.burstiness}")
    if g.simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, got {g.simulator!r}")
    if g.deployment.tp < 1 or g.deployment.num_replicas < 1:
        raise ValueError("tp and replicas must be >= 1")
    if g.trace is not None and not Path(g.trace).exists():
        raise FileNotFoundError(f"trace {g.trace} does not exist")


def _typed(value, kind: type, key: str):
    """`value` as `kind`, or None; a wrong TOML type names its key."""
    if value is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{key} must be a {kind.__name__}, got {value!r}")
    return value


def _typed_list(values, kind: type, key: str) -> tuple:
    if not isinstance(values, list):
        raise ValueError(f"{key} must be a list, got {values!r}")
    return tuple(_typed(v, kind, key) for v in values)


__all__ = ["CapacitySettings", "EngineVariant", "Grid", "Point", "capacity_settings_from_toml",
           "grid_from_toml", "load_grid", "parse_list", "read_toml"]
