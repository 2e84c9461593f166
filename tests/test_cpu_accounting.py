"""benchmarks/cpu_accounting.py: per-thread CPU of a process group while a command runs."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time

import pytest

from .benchmark_script import BENCHMARKS, load_benchmark

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc")


def test_threads_of_a_group_count_their_cpu_time():
    accounting = load_benchmark("cpu_accounting")
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                             start_new_session=True)  # its own process group
    try:
        time.sleep(0.5)
        seen = accounting.threads(child.pid)
    finally:
        child.kill()
        child.wait()
    assert {key[0] for key in seen} == {child.pid}
    (row,) = seen.values()
    assert row["process"].startswith(sys.executable) and 0.2 < row["cpu_s"] < 5


def test_the_command_is_the_client_and_the_group_is_measured_while_it_runs(tmp_path):
    server = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                              start_new_session=True)
    out = tmp_path / "cpu.json"
    try:
        subprocess.run([sys.executable, str(BENCHMARKS / "cpu_accounting.py"), str(server.pid),
                        str(out), "--", sys.executable, "-c",
                        "import time\nt = time.process_time()\n"
                        "while time.process_time() - t < 0.3: pass"],
                       check=True, capture_output=True, text=True)
    finally:
        server.kill()
        server.wait()
    d = json.loads(out.read_text())
    assert 0.25 < d["client_cpu_s"] < 2 and d["wall_s"] >= 0.25
    busy = sum(r["cpu_s"] for r in d["threads"] if r["pid"] == server.pid)
    assert 0.1 < busy <= d["wall_s"] + 0.05  # the spinning "server", over the command only


def test_no_such_group_is_an_error(tmp_path):
    r = subprocess.run([sys.executable, str(BENCHMARKS / "cpu_accounting.py"), "999999999",
                        str(tmp_path / "x.json"), "--", "true"], capture_output=True, text=True)
    assert r.returncode != 0 and "no process in group" in r.stderr
    assert not (tmp_path / "x.json").exists()


def test_py_spy_stacks_go_to_the_first_category_they_match(tmp_path):
    spy = load_benchmark("spy_summary")
    raw = tmp_path / "engine-4.txt"
    raw.write_text(  # the engine core waits for the worker inside its step: a wait
        "run (core.py:1);step (core.py:2);MessageQueue.dequeue (shm.py:3) 7\n"
        "run (core.py:1);Scheduler.schedule (scheduler.py:9) 2\n"
        "run (core.py:1);mystery (x.py:1) 1\n")
    assert spy.summarize(raw, "engine") == {"waiting for the worker": 7, "scheduling": 2,
                                            "other": 1}
    (tmp_path / "engine-4.txt.gz").write_bytes(gzip.compress(raw.read_bytes()))
    raw.unlink()
    assert spy.summarize(raw, "engine")["waiting for the worker"] == 7  # read from the .gz
