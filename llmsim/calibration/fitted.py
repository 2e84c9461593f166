"""A fitted GPU profile: `GpuParams` fitted to a real engine's end-to-end measurements, in
one small JSON file, every parameter with its unit and provenance.

Unlike a measured profile (`profile.py`: kernel tables of one model shape), a fitted
profile belongs to a GPU and prices any model shape through the physical cost model. llmsim
bundles one per GPU it has measurements for (`calibration/fitted/<gpu>.json`, written by
`llmsim fit`); `--gpu h100` uses it unless `--profile` names another profile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from ..files import read_json_object, write_atomic
from .physical import PARAM_INFO, PARAM_NAMES, GpuParams, PhysicalCostModel
from .profile import ProfileError
from .shapes import ModelShape

FORMAT = "llmsim-fitted-gpu"
VERSION = 1
PREFIX = "fitted-"  # bundled fitted profiles are named fitted-<gpu>


@dataclass
class FittedProfile:
    gpu: str
    source: str  # what it was fitted to, e.g. "ML.ENERGY Benchmark v3 (vLLM 0.11)"
    params: GpuParams
    provenance: dict[str, str]  # per parameter: "fitted", or where a fixed value comes from
    async_scheduling: bool = True
    fit: dict = field(default_factory=dict)  # points, errors, prompt nuisance, command

    @property
    def label(self) -> str:
        held = self.fit.get("held_out_summary")
        tail = f"; held-out {held}" if held else ""
        return f"fitted profile ({self.gpu}, fitted to {self.source}{tail})"

    def cost_model(self, model: ModelShape, tp: int, async_scheduling: bool | None = None,
                   engine_overhead_s: float = 0.0) -> PhysicalCostModel:
        a = self.async_scheduling if async_scheduling is None else async_scheduling
        return PhysicalCostModel(model, tp, self.params, self.label, a, engine_overhead_s)

    def to_json(self) -> dict:
        params = {n: {"value": getattr(self.params, n), "unit": PARAM_INFO[n][0],
                      "what": PARAM_INFO[n][1], "provenance": self.provenance.get(n, "?")}
                  for n in PARAM_NAMES}
        return {"format": FORMAT, "version": VERSION, "gpu": self.gpu, "source": self.source,
                "async_scheduling": self.async_scheduling, "params": params, "fit": self.fit}

    def save(self, path: str | Path) -> None:
        """Written to a temporary file and renamed: never half a profile."""
        text = _dumps(self.to_json()) + "\n"
        write_atomic(path, lambda tmp: tmp.write_text(text))

    @classmethod
    def from_json(cls, d: dict, where: str = "profile") -> FittedProfile:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ProfileError(f"{where}: not a fitted llmsim GPU profile")
        if d.get("version") != VERSION:
            raise ProfileError(f"{where}: fitted profile version {d.get('version')}, this "
                               f"llmsim reads version {VERSION}")
        try:
            raw = d["params"]
            params = GpuParams.from_dict({n: raw[n]["value"] for n in raw})
            prov = {n: str(raw[n].get("provenance", "?")) for n in raw}
            return cls(str(d["gpu"]), str(d["source"]), params, prov,
                       bool(d.get("async_scheduling", True)), d.get("fit", {}))
        except (KeyError, TypeError, ValueError) as e:
            raise ProfileError(f"{where}: malformed fitted profile ({e})") from None

    @classmethod
    def load(cls, path: str | Path) -> FittedProfile:
        return cls.from_json(read_json_object(path, ProfileError, "profile"), str(path))


def _dumps(d: dict) -> str:
    """Indented JSON with each run of a `points` list on one line (a profile stays a few
    hundred lines)."""
    rows: list[str] = []

    def strip(x):
        if isinstance(x, dict):
            return {k: (_mark(v, rows) if k == "points" else strip(v)) for k, v in x.items()}
        return x

    text = json.dumps(strip(d), indent=1)
    for i, row in enumerate(rows):
        text = text.replace(f'"@points{i}@"', row)
    return text


def _mark(points: list, rows: list[str]) -> str:
    rows.append("[\n  " + ",\n  ".join(json.dumps(p) for p in points) + "\n ]")
    return f"@points{len(rows) - 1}@"


def bundled_fitted() -> dict[str, Path]:
    """Fitted profiles shipped with llmsim, by GPU name."""
    folder = files("llmsim") / "calibration" / "fitted"
    if not folder.is_dir():
        return {}
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".json")}


def is_fitted(name_or_path: str) -> bool:
    """Whether `--profile` names a fitted profile (a bundled `fitted-<gpu>`, or a JSON file in
    the fitted format)."""
    if name_or_path.startswith(PREFIX) and name_or_path[len(PREFIX):] in bundled_fitted():
        return True
    path = Path(name_or_path)
    if path.suffix != ".json" or not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("format") == FORMAT
    except (json.JSONDecodeError, AttributeError, OSError):
        return False


def load_fitted(name_or_path: str) -> FittedProfile:
    bundled = bundled_fitted()
    if name_or_path.startswith(PREFIX) and name_or_path[len(PREFIX):] in bundled:
        return FittedProfile.load(bundled[name_or_path[len(PREFIX):]])
    return FittedProfile.load(name_or_path)


def fitted_cost_model(profile: str | None, model: ModelShape, gpu: str, tp: int,
                      async_scheduling: bool = True, engine_overhead_s: float = 0.0
                      ) -> PhysicalCostModel | None:
    """The deployment's cost model if a fitted profile applies: the one `profile` names, or,
    with no `profile`, the bundled one for this GPU. None otherwise (measured profile or
    roofline). A fitted profile for another GPU is refused."""
    if profile is not None:
        if not is_fitted(profile):
            return None
        fitted = load_fitted(profile)
    else:
        path = bundled_fitted().get(gpu.lower())
        if path is None:
            return None
        fitted = FittedProfile.load(path)
    if fitted.gpu != gpu.lower():
        raise ProfileError(f"fitted profile is for {fitted.gpu}, not {gpu}: its parameters do "
                           f"not apply (use --gpu {fitted.gpu}, or fit {gpu} with llmsim fit)")
    return fitted.cost_model(model, tp, async_scheduling, engine_overhead_s)
