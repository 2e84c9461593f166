"""Interruptions are harmless: Ctrl-C once or twice, or SIGKILL, at a random moment of
`run`, `compare`, `sweep` and `train`, in a real process.

Per trial: the command exits within `BOUND_S` of the last signal (no hang; its pool
workers too); no partial output is visible (the output is absent, or whole); a rerun of
the same command to completion removes any temporary a kill left and, for a sweep, gives
the same results table as an uninterrupted sweep. Ctrl-C goes to the whole process group,
as a terminal sends it. Also: the same seed gives the same bytes in two processes.

Trials: `LLMSIM_INTERRUPT_TRIALS` (default 10 in CI), drawn from a fixed seed
(`LLMSIM_INTERRUPT_SEED` to vary it). A trial's signal comes at a random fraction of the
command's own uninterrupted run time, measured first on this machine, so that it lands
while the command runs (import and start-up included) and not after it has finished.
Times are generous: this runs on loaded 2-core boxes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from .castillo_synth import write_castillo

REPO = Path(__file__).resolve().parents[1]
BOUND_S = 90  # from the last signal to the exit of every process of the command
TRIALS = int(os.environ.get("LLMSIM_INTERRUPT_TRIALS", 10))
SEED = int(os.environ.get("LLMSIM_INTERRUPT_SEED", 18))
SIGNALS = ("int", "int-int", "kill")
SEEDS_TWICE = 12  # seeds of the two-Ctrl-C sweep: 72 points
OUTCOMES: list[str] = []  # per trial: command, signal, how it ended (pytest's summary)
HUNG = "hung"  # the outcome of a command (or a worker of it) that did not exit in time

COMMANDS = {  # name -> (arguments, output path relative to the trial's folder)
    "run": (["run", "--requests", "400", "--rate", "15", "--out", "out"], "out"),
    "compare": (["compare", "--policies", "fcfs,sjf,srpt", "--requests", "400", "--rate", "15",
                 "--out", "out"], "out"),
    "sweep": (["sweep", "--policies", "fcfs,sjf", "--rates", "5,10,15", "--seeds", "0,1",
               "--requests", "150", "--jobs", "2", "--out", "sw"], "sw"),
    "train": (["train", "--data", "castillo", "--model", "Llama-3.1-8B-Instruct", "--predictor",
               "lgbm", "--out", "pred"], "pred"),
}


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "LLMSIM_PROGRESS_SECONDS": "3600", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "llmsim", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own group: Ctrl-C reaches them all


def finish(proc: subprocess.Popen, bound: float = BOUND_S) -> tuple[int, str]:
    """Wait for the command and every process of its group; fail on a hang."""
    try:
        out, _ = proc.communicate(timeout=bound)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        OUTCOMES.append(HUNG)
        pytest.fail(f"hung: no exit {bound} s after the signal\n{out.decode()[-2000:]}")
    deadline = time.monotonic() + bound
    while _group_alive(proc.pid):
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            OUTCOMES.append(HUNG)
            pytest.fail("a worker of the command outlived it")
        time.sleep(0.2)
    return proc.returncode, out.decode(errors="replace")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def interrupt(proc: subprocess.Popen, how: str, delay: float, gap: float) -> None:
    time.sleep(delay)
    if proc.poll() is not None:
        return
    if how == "kill":
        proc.send_signal(signal.SIGKILL)  # the command alone: its workers must notice
        return
    os.killpg(proc.pid, signal.SIGINT)
    if how == "int-int":
        time.sleep(gap)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)


def check_whole(folder: Path, name: str, out: Path) -> None:
    """The output is absent, or complete; never half-written."""
    if not out.exists():
        return
    if name == "sweep":  # written point by point by design: each point file whole
        json.loads((out / "sweep.json").read_text())
        for p in (out / "points").glob("*.json"):
            json.loads(p.read_text())
        return
    assert (out / ".llmsim-output").is_file(), sorted(p.name for p in out.iterdir())
    if name == "train":
        json.loads((out / "card.json").read_text())
        return
    summary = json.loads((out / "summary.json").read_text())
    for policy, s in summary.items():
        assert pq.read_table(out / policy / "requests.parquet").num_rows == s["requests"]


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and
                  p.name.endswith((".tmp", ".old")))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("interrupts")
    write_castillo(folder / "castillo", prompts_per_split=(400, 60, 120))
    return folder


@pytest.fixture(scope="module")
def clean_runs(workspace) -> dict[str, float]:
    """Each command run once to the end: its wall time here (what a trial's signal moment
    is a fraction of). The sweep's folder is the reference resumed sweeps must match."""
    seconds = {}
    for name, (args, _) in COMMANDS.items():
        folder = workspace / f"clean-{name}"
        folder.mkdir()
        if name == "train":
            (folder / "castillo").symlink_to(workspace / "castillo")
        began = time.monotonic()
        code, log = finish(start(args, folder))
        seconds[name] = time.monotonic() - began
        assert code == 0, log
    return seconds


@pytest.fixture(scope="module")
def sweep_reference(workspace, clean_runs) -> list[dict]:
    """An uninterrupted sweep's table, the one every resumed sweep must reproduce."""
    return _rows(workspace / "clean-sweep" / COMMANDS["sweep"][1])


def _rows(out: Path) -> list[dict]:
    rows = pq.read_table(out / "results.parquet").to_pylist()
    return sorted(rows, key=lambda r: r["point_id"])


def trials() -> list[tuple]:
    rng = np.random.default_rng(SEED)
    names = list(COMMANDS)
    return [(i, names[i % len(names)], SIGNALS[int(rng.integers(len(SIGNALS)))],
             float(rng.uniform(0.05, 0.95)), float(rng.uniform(0.05, 1.0)))
            for i in range(TRIALS)]


@pytest.mark.parametrize("trial, name, how, moment, gap", trials())
def test_interrupt_is_harmless(workspace, clean_runs, sweep_reference, trial, name, how,
                               moment, gap):
    delay = moment * clean_runs[name]  # a fraction of its clean run: while it runs
    folder = workspace / f"trial{trial}"
    folder.mkdir()
    if name == "train":
        (folder / "castillo").symlink_to(workspace / "castillo")
    args, out_name = COMMANDS[name]
    out = folder / out_name
    proc = start(args, folder)
    interrupt(proc, how, delay, gap)
    code, log = finish(proc)
    ended = ("finished first" if code == 0 else "killed" if code == -signal.SIGKILL else
             f"stopped (exit {code})")
    OUTCOMES.append(f"{name} {how}: {ended}, {'output whole' if out.exists() else 'no output'}")
    assert "Traceback" not in log or "KeyboardInterrupt" in log, log  # Ctrl-C at import
    assert code in (0, 130, 1, -signal.SIGINT, -signal.SIGKILL), (code, log)
    check_whole(folder, name, out)
    # The same command again, to the end: it resumes (sweep) or replaces what it wrote.
    again = args + (["--force"] if name != "sweep" and out.exists() else [])
    code, log = finish(start(again, folder))
    assert code == 0, log
    check_whole(folder, name, out)
    assert temporaries(folder) == [], "a killed run's temporary was not cleaned"
    if name == "sweep":
        assert _rows(out) == sweep_reference


def test_two_ctrl_c_stop_a_sweep_whose_workers_are_busy(workspace):
    """The hang of issue 18: a second Ctrl-C while the pool's workers run points. The
    sweep has many more points than the trials' (about 12 s of work on 2 idle cores), so
    the workers are busy when it comes; resumed, the sweep has every point once."""
    folder = workspace / "twice"
    folder.mkdir()
    args = ["sweep", "--policies", "fcfs,sjf", "--rates", "5,10,15", "--seeds",
            ",".join(map(str, range(SEEDS_TWICE))), "--requests", "1500", "--jobs", "2",
            "--out", "sw"]
    proc = start(args, folder)
    for line in proc.stdout:  # the pool starts right after this line
        if b"points into" in line:
            break
    time.sleep(3.0)  # workers spawned and busy (on a loaded box, perhaps still starting)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    code, log = finish(proc)
    assert code in (0, 130, -signal.SIGINT), (code, log)
    assert "Traceback" not in log, log
    code, log = finish(start(args, folder))
    assert code == 0, log
    ids = [r["point_id"] for r in _rows(folder / "sw")]
    assert len(ids) == len(set(ids)) == 2 * 3 * SEEDS_TWICE


def test_same_seed_same_bytes_in_two_processes(tmp_path):
    args = ["compare", "--policies", "fcfs,sjf", "--requests", "300", "--arrival-process",
            "gamma", "--burstiness", "0.5", "--load", "0.95", "--seed", "7"]
    for name in ("a", "b"):
        code, log = finish(start([*args, "--out", name], tmp_path))
        assert code == 0, log
    for rel in ("summary.json", "fcfs/requests.parquet", "sjf/requests.parquet"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    a, b = (json.loads((tmp_path / n / "config.json").read_text()) for n in "ab")
    a.pop("command"), b.pop("command")
    assert a == b


def test_ctrl_c_while_the_cli_loads_is_one_line_and_a_library_user_keeps_their_own():
    """`llmsim` and `python -m llmsim` install a Ctrl-C handler before numpy and friends load
    (a Ctrl-C inside numpy's import otherwise prints an ImportError and a page of advice);
    it exits 130 with one line. Importing llmsim from a program changes nothing."""
    code = ("import os, signal, time\nimport llmsim\n"
            "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)\n"
            "signal.signal(signal.SIGINT, llmsim._interrupted_while_loading)\n"
            "os.kill(os.getpid(), signal.SIGINT)\ntime.sleep(30)")
    # each program starts with Python's own Ctrl-C, whatever the runner's: a runner started
    # in the background (`cmd &` in a script) passes SIGINT on ignored, which a program keeps
    default = {"preexec_fn": lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)}
    hit = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, **default)
    assert (hit.returncode, hit.stdout, hit.stderr) == (130, "True\n", "interrupted\n")
    loading = ("import runpy, signal, sys\nsys.orig_argv[1:3] = ['-m', 'llmsim']\n"
               "import llmsim\nfrom llmsim.__main__ import _interrupted_while_loading as h\n"
               "print(signal.getsignal(signal.SIGINT) is h)")
    cli = subprocess.run([sys.executable, "-c", loading], capture_output=True, text=True,
                         timeout=60, **default)
    assert cli.stdout.strip() == "True", cli.stderr
