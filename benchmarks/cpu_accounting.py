"""Where a live server's CPU time goes while a command runs: per process and thread of a
process group, from /proc, and the command's own CPU (the client).

    python benchmarks/cpu_accounting.py PGID OUT.json -- COMMAND ...

Writes OUT.json: wall seconds, the client's user+system CPU seconds, and for every thread
of every process in group PGID its name, its process's command line and CPU affinity, and
the CPU seconds it used while COMMAND ran. Prints a table by process and core set. Linux
only (reads /proc/<pid>/task/<tid>/stat); used by benchmarks/vllm_cpu_frontend.sh.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def threads(pgid: int) -> dict[tuple[int, int], dict]:
    """(pid, tid) -> {process, thread, cores, cpu_s} for every thread of group `pgid`."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if _fields(entry / "stat")[2] != str(pgid):  # field 5, pgrp
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            cores = sorted(os.sched_getaffinity(pid))
            for task in (entry / "task").iterdir():
                f = _fields(task / "stat")
                out[pid, int(task.name)] = {
                    "process": cmd[:120], "thread": (task / "comm").read_text().strip(),
                    "cores": cores, "cpu_s": (int(f[11]) + int(f[12])) / TICK}
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended while being read
    return out


def _fields(stat: Path) -> list[str]:
    """The fields of a /proc stat file after `pid (comm)` (state first)."""
    text = stat.read_text()
    return text[text.rindex(")") + 2:].split()


def main() -> None:
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        sys.exit(__doc__)
    pgid, out, command = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[4:]
    before = threads(pgid)
    if not before:
        sys.exit(f"error: no process in group {pgid}")
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    subprocess.run(command, check=True)
    wall = time.monotonic() - t0
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = threads(pgid)
    rows = []
    for key, now in after.items():
        then = before.get(key, {"cpu_s": 0.0})
        rows.append({**now, "pid": key[0], "tid": key[1], "cpu_s": now["cpu_s"] - then["cpu_s"]})
    client = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    out.write_text(json.dumps({"wall_s": wall, "client_cpu_s": client, "threads": rows},
                              indent=1))
    by_process: dict[tuple[str, str], float] = {}
    for r in rows:
        key = (r["process"][:70], ",".join(map(str, r["cores"])))
        by_process[key] = by_process.get(key, 0.0) + r["cpu_s"]
    print(f"wall {wall:.1f} s; CPU seconds while the command ran (share of wall):")
    for (proc, cores), cpu in sorted(by_process.items(), key=lambda kv: -kv[1]):
        print(f"  {cpu:8.1f} s ({cpu / wall:5.1%})  cores {cores:5}  {proc}")
    print(f"  {client:8.1f} s ({client / wall:5.1%})  the command (client)")


if __name__ == "__main__":
    main()
