"""A measured profile: the cost model's tables from timed kernels, in one JSON file.

The file carries where it was measured (GPU, driver, CUDA, torch, dtype), the model shape
and TP, the raw measurements, the fitted tables and the fidelity check. JSON only: loading
a profile someone sent runs no code.

Iteration time = overhead + dense(num_tokens) + head(num_sampled)
               + sum over prefill chunks of prefill(chunk, cached)
               + decode_base(num_decodes) + decode_per_token(num_decodes) * decode_context
               + all-reduce(num_tokens)   [analytic, TP > 1 only]
Tables are interpolated piecewise-linearly and extended linearly past their last point;
the decode term is affine in the summed context at a fixed batch, as the engine requires.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import numpy as np

from ..engine.cost import IterationShape
from ..files import read_json_object, write_atomic
from .shapes import ModelShape

FORMAT = "llmsim-profile"
VERSION = 1
TABLES = ("tokens", "dense_s", "head_rows", "head_s", "prefill_chunks", "prefill_contexts",
          "prefill_s", "decode_batches", "decode_base_s", "decode_per_token_s")


class ProfileError(ValueError):
    pass


@dataclass
class Profile:
    meta: dict
    model: ModelShape
    tp: int
    measurements: dict
    tables: dict
    fidelity: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "meta": self.meta,
                "model": self.model.to_dict(), "tp": self.tp, "measurements": self.measurements,
                "tables": self.tables, "fidelity": self.fidelity}

    def save(self, path: str | Path) -> None:
        """Written to a temporary file and renamed: never half a profile."""
        text = json.dumps(self.to_json(), indent=1)
        write_atomic(path, lambda tmp: tmp.write_text(text))

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        path = Path(path)
        d = read_json_object(path, ProfileError, "profile")
        if d.get("format") != FORMAT:
            raise ProfileError(f"{path}: not an llmsim profile")
        if d.get("version") != VERSION:
            raise ProfileError(f"{path}: profile version {d.get('version')}, this llmsim reads "
                               f"version {VERSION}")
        missing = [t for t in TABLES if t not in d.get("tables", {})]
        if missing:
            raise ProfileError(f"{path}: profile lacks tables {missing}")
        return cls(d["meta"], ModelShape(**d["model"]), int(d["tp"]), d["measurements"],
                   d["tables"], d.get("fidelity", {}))

    def check_for(self, model: ModelShape, tp: int) -> None:
        """Refuse to price another model shape or TP than the one measured."""
        mine = {k: v for k, v in self.model.to_dict().items() if k != "name"}
        theirs = {k: v for k, v in model.to_dict().items() if k != "name"}
        if mine != theirs or self.tp != tp:
            raise ProfileError(
                f"profile measured for {self.model.name} at tp={self.tp}, not {model.name} at "
                f"tp={tp}: its times do not apply (calibrate that model with llmsim calibrate)")


def bundled_profiles() -> dict[str, Path]:
    """Profiles shipped with llmsim, by file stem (e.g. 'h100-llama-3.1-8b-tp1')."""
    folder = files("llmsim") / "calibration" / "profiles"
    if not folder.is_dir():
        return {}
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".json")}


def find_profile(name_or_path: str) -> Profile:
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        return Profile.load(path)
    bundled = bundled_profiles()
    if name_or_path in bundled:
        return Profile.load(bundled[name_or_path])
    known = ", ".join(sorted(bundled)) or "none bundled"
    raise ProfileError(f"no profile {name_or_path!r}: not a file, and not a bundled profile "
                       f"({known})")


def default_profile(model: str, gpu: str, tp: int) -> Profile | None:
    """The bundled measured profile for this model, GPU and TP, if one exists."""
    path = bundled_profiles().get(f"{gpu}-{model}-tp{tp}")
    return Profile.load(path) if path else None


def _extend(x: float, xs: np.ndarray, ys: np.ndarray) -> float:
    """Piecewise-linear interpolation, extended linearly beyond both ends."""
    if len(xs) == 1:
        return float(ys[0])
    if x > xs[-1]:
        return float(ys[-1] + (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) * (x - xs[-1]))
    if x < xs[0]:
        return float(ys[0] + (ys[1] - ys[0]) / (xs[1] - xs[0]) * (x - xs[0]))
    return float(np.interp(x, xs, ys))


class ProfileCostModel:
    def __init__(self, profile: Profile, allreduce_s_per_token: float = 0.0,
                 allreduce_fixed_s: float = 0.0, engine_overhead_s: float = 0.0) -> None:
        t = profile.tables
        self.profile = profile
        self._tokens = np.asarray(t["tokens"], float)
        self._dense = np.asarray(t["dense_s"], float)
        self._rows = np.asarray(t["head_rows"], float)
        self._head = np.asarray(t["head_s"], float)
        self._chunks = np.asarray(t["prefill_chunks"], float)
        self._contexts = np.asarray(t["prefill_contexts"], float)
        self._prefill = np.asarray(t["prefill_s"], float)
        self._batches = np.asarray(t["decode_batches"], float)
        self._dec_base = np.asarray(t["decode_base_s"], float)
        self._dec_slope = np.asarray(t["decode_per_token_s"], float)
        self.overhead_s = float(t.get("overhead_s", 0.0)) + engine_overhead_s
        self.engine_overhead_s = engine_overhead_s
        self._ar_token, self._ar_fixed = allreduce_s_per_token, allreduce_fixed_s
        self._affine: dict[int, tuple[float, float, float]] = {}  # by batch size
        m = profile.meta
        self.label = (f"measured profile ({m.get('gpu', '?')}, {profile.model.name}, "
                      f"tp={profile.tp}, fidelity MAPE "
                      f"{_pct(profile.fidelity.get('mape'))})")

    def describe(self) -> dict:
        return {"kind": "profile", "meta": self.profile.meta, "model": self.profile.model.name,
                "tp": self.profile.tp, "fidelity_mape": self.profile.fidelity.get("mape"),
                "engine_overhead_s": self.engine_overhead_s,
                "allreduce_s_per_token": self._ar_token}

    def prefill(self, chunk: int, cached: int) -> float:
        rows = [_extend(cached, self._contexts, row) for row in self._prefill]
        return _extend(chunk, self._chunks, np.asarray(rows))

    def iteration_time(self, shape: IterationShape) -> float:
        assert shape.num_tokens > 0, f"empty iteration {shape}"
        t = self.overhead_s + _extend(shape.num_tokens, self._tokens, self._dense)
        if shape.num_sampled:
            t += _extend(shape.num_sampled, self._rows, self._head)
        for chunk, cached in shape.prefill_chunks:
            t += self.prefill(chunk, cached)
        if shape.num_decodes:
            t += _extend(shape.num_decodes, self._batches, self._dec_base)
        if self._ar_token:
            t += self._ar_fixed + self._ar_token * shape.num_tokens
        if shape.num_decodes:  # last: see `decode_affine`
            t += _extend(shape.num_decodes, self._batches, self._dec_slope) * shape.decode_context
        return max(t, 1e-9)

    def decode_affine(self, num_decodes: int) -> tuple[float, float, float]:
        """(a, b, floor): a decode-only iteration of `num_decodes` sequences with summed
        context C takes exactly max(a + b * C, floor), the same operations as
        `iteration_time` (engine/cost.py); the floor is its 1e-9 s."""
        affine = self._affine.get(num_decodes)
        if affine is None:
            b = num_decodes
            t = self.overhead_s + _extend(b, self._tokens, self._dense)
            t += _extend(b, self._rows, self._head)
            t += _extend(b, self._batches, self._dec_base)
            if self._ar_token:
                t += self._ar_fixed + self._ar_token * b
            affine = self._affine[num_decodes] = (t, _extend(b, self._batches,
                                                             self._dec_slope), 1e-9)
        return affine

def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"
