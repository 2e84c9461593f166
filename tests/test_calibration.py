"""Calibration on CPU tensors: timing, fitting, the profile file and fidelity, no GPU needed."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from llmsim.calibration.calibrate import KernelGrid, calibrate, decode_shape, prefill_shape  # noqa: E402
from llmsim.calibration.profile import Profile, ProfileCostModel, ProfileError  # noqa: E402
from llmsim.calibration.shapes import get_model  # noqa: E402
from llmsim.calibration.timing import Timer  # noqa: E402
from llmsim.cli import app  # noqa: E402
from llmsim.simulate import Deployment  # noqa: E402

runner = CliRunner(env={"COLUMNS": "160"})


@pytest.fixture(scope="module")
def tiny_profile():
    return calibrate(get_model("tiny"), device="cpu", grid=KernelGrid.quick(), warmup=1, repeats=3,
                     fidelity_points=6)


def test_timer_takes_the_median():
    calls = []
    timer = Timer(torch.device("cpu"), warmup=2, repeats=5)
    assert timer.median(lambda: calls.append(1)) >= 0
    assert len(calls) == 7
    with pytest.raises(ValueError):
        Timer(torch.device("cpu"), repeats=0)
    # CUDA graphs are a CUDA matter: on CPU the callable itself is timed, never captured
    assert not Timer(torch.device("cpu"), cuda_graphs=True).graphs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_timer_replays_a_cuda_graph_of_the_callable():
    x = torch.randn(256, 256, device="cuda")
    out = torch.empty_like(x)
    timer = Timer(torch.device("cuda"), warmup=1, repeats=3)
    assert timer.median(lambda: torch.matmul(x, x, out=out)) > 0
    assert timer.eager_fallbacks == 0
    torch.testing.assert_close(out, x @ x)  # the replays computed what the callable does


def test_profile_tables_and_fidelity(tiny_profile):
    p = tiny_profile
    grid = KernelGrid.quick()
    assert p.tables["tokens"] == list(map(float, grid.tokens))
    assert len(p.tables["prefill_s"]) == len(grid.prefill_chunks)
    assert all(s > 0 for s in p.tables["dense_s"])
    assert len(p.fidelity["points"]) == 6
    mape = sum(abs(pt["error"]) for pt in p.fidelity["points"]) / 6
    assert p.fidelity["mape"] == pytest.approx(mape)
    assert p.meta["device"] == "cpu" and p.meta["torch"] == torch.__version__
    assert p.meta["timing"] == "wall clock" and p.meta["eager_fallbacks"] == 0


def test_profile_cost_model_is_monotone_and_affine_in_decode_context(tiny_profile):
    cost = ProfileCostModel(tiny_profile)
    t = [cost.iteration_time(decode_shape(4, c)) for c in (50, 100, 150)]
    assert t[2] - t[1] == pytest.approx(t[1] - t[0], rel=1e-9)
    assert "measured profile" in cost.label
    # monotone where its tables are: made increasing here, as this CPU's timings of 4 and 64
    # tokens through the tiny model may tie within noise
    tables = dict(tiny_profile.tables)
    for name in ("dense_s", "head_s"):
        tables[name] = np.linspace(1e-3, 2e-3, len(tables[name])).tolist()
    tables["prefill_s"] = [[1e-3 * (i + 1) + 1e-6 * j for j in range(len(row))]
                           for i, row in enumerate(tables["prefill_s"])]
    cost = ProfileCostModel(replace(tiny_profile, tables=tables))
    assert cost.iteration_time(prefill_shape(64, 0)) > cost.iteration_time(prefill_shape(4, 0))
    # beyond the grid the tables extend linearly instead of clamping
    assert cost.iteration_time(prefill_shape(512, 0)) > cost.iteration_time(prefill_shape(64, 0))


def test_profile_prices_decode_runs_exactly_as_one_iteration_at_a_time(tiny_profile):

    from llmsim.engine.cost import IterationShape

    cost = ProfileCostModel(tiny_profile, allreduce_s_per_token=1e-7, allreduce_fixed_s=2e-5,
                            engine_overhead_s=1e-4)
    contexts = np.arange(1, 50_000, 313, dtype=np.int64)
    for n in (1, 3, 9, 40):  # contexts are summed over the batch
        one = [cost.iteration_time(IterationShape(n, n, (), n, int(c), n)) for c in contexts]
        a, b, floor = cost.decode_affine(n)
        assert [max(a + b * int(c), floor) for c in contexts] == one


def test_profile_round_trips_and_refuses_other_models(tiny_profile, tmp_path):
    path = tmp_path / "p.json"
    tiny_profile.save(path)
    loaded = Profile.load(path)
    assert loaded.tables == json.loads(json.dumps(tiny_profile.tables))
    assert loaded.model == tiny_profile.model
    with pytest.raises(ProfileError, match="not llama-3-8b"):
        loaded.check_for(get_model("llama-3-8b"), 1)
    with pytest.raises(ProfileError, match="at tp=2"):
        loaded.check_for(get_model("tiny"), 2)
    with pytest.raises(ProfileError, match="profile measured for tiny"):
        Deployment(model="llama-3-8b", profile=str(path)).cost_model()
    assert Deployment(model="tiny", profile=str(path)).cost_model().profile.tp == 1
    path.write_text('{"format": "something else"}')
    with pytest.raises(ProfileError, match="not an llmsim profile"):
        Profile.load(path)


def test_calibrate_command_on_cpu_writes_a_profile_and_run_uses_it(tmp_path):
    out = tmp_path / "tiny.json"
    res = runner.invoke(app, ["calibrate", "--model", "tiny", "--device", "cpu", "--quick",
                              "--dtype", "fp32", "--repeats", "2", "--warmup", "1",
                              "--fidelity-points", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "MAPE" in res.output
    assert Profile.load(out).fidelity["points"]
    res = runner.invoke(app, ["run", "--model", "tiny", "--profile", str(out), "--requests", "50",
                              "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["cost_model"].startswith("measured profile")
    res = runner.invoke(app, ["run", "--profile", str(out), "--out", str(tmp_path / "r2")])
    assert res.exit_code == 2 and "profile measured for tiny" in res.output
    assert not (tmp_path / "r2").exists()


def test_calibrate_without_cuda_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    res = runner.invoke(app, ["calibrate", "--model", "tiny", "--out", str(tmp_path / "p.json")])
    assert res.exit_code == 2 and "no CUDA device" in res.output


def test_bundled_profile_is_the_default_for_its_model(tiny_profile, tmp_path, monkeypatch):
    from llmsim.calibration import fitted as fitted_module
    from llmsim.calibration import profile as profile_module

    path = tmp_path / "h100-tiny-tp1.json"
    tiny_profile.save(path)
    monkeypatch.setattr(profile_module, "bundled_profiles", lambda: {path.stem: path})
    # where a GPU has a fitted profile, that is its default (tests/test_fit.py); without one
    monkeypatch.setattr(fitted_module, "bundled_fitted", lambda: {})
    assert Deployment(model="tiny", gpu="h100").cost_model().label.startswith("measured")
    assert "roofline" in Deployment(model="llama-3-8b", gpu="h100").cost_model().label
    assert "roofline" in Deployment(model="tiny", gpu="a100").cost_model().label
