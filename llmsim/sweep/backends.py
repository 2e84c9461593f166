"""Where a sweep's points run: in this process, in a local process pool, or on Ray.

Each backend maps `fn(shared, task)` over `tasks` and yields `(index, result)` as results
come in, in whatever order they finish; the caller persists each one. `shared` (the
workload and the grid) is sent once per worker process (pool) or put once into Ray's object
store, which copies it once to each node that runs a task, never once per task.
`fn` must be a module-level function so that workers can import it.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

Fn = Callable[[Any, Any], Any]


def run_tasks(fn: Fn, shared: Any, tasks: Sequence, jobs: int | None = 1,
              ray_address: str | None = None) -> Iterator[tuple[int, Any]]:
    """The backend for these arguments: Ray when `ray_address` is given ("auto", an address,
    or "local" to start a Ray instance on this machine with `jobs` CPUs), else a process
    pool of `jobs` workers (None: one per CPU), else (jobs=1) this process."""
    if ray_address is not None:
        return run_on_ray(fn, shared, tasks, ray_address, jobs)
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if jobs == 1 or len(tasks) <= 1:
        return run_here(fn, shared, tasks)
    return run_in_pool(fn, shared, tasks, jobs)


def run_here(fn: Fn, shared: Any, tasks: Sequence) -> Iterator[tuple[int, Any]]:
    for i, task in enumerate(tasks):
        yield i, fn(shared, task)


# A pool worker's copy of `shared`, set once by the pool's initializer: the one piece of
# module state here, and it lives only in worker processes.
_worker_shared: Any = None


def _keep_shared(shared: Any) -> None:
    global _worker_shared
    _worker_shared = shared


def _call_with_shared(fn: Fn, task: Any) -> Any:
    return fn(_worker_shared, task)


def run_in_pool(fn: Fn, shared: Any, tasks: Sequence, jobs: int) -> Iterator[tuple[int, Any]]:
    # spawn, not fork: the caller runs a progress-bar thread, and forking a process with
    # threads can copy a held lock into the child.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context,
                               initializer=_keep_shared, initargs=(shared,))
    try:
        pending: dict[Future, int] = {pool.submit(_call_with_shared, fn, t): i
                                      for i, t in enumerate(tasks)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
    finally:  # also on an error or an interrupt: drop what has not started
        pool.shutdown(wait=True, cancel_futures=True)


def _call_on_ray(fn: Fn, shared: Any, task: Any) -> Any:
    return fn(shared, task)


def run_on_ray(fn: Fn, shared: Any, tasks: Sequence, address: str,
               num_cpus: int | None = None) -> Iterator[tuple[int, Any]]:
    try:
        import ray
    except ImportError:
        raise ValueError("the Ray backend needs ray: pip install 'ray>=2.9'") from None
    started_here = not ray.is_initialized()
    if started_here:
        if address == "local":  # a fresh instance on this machine, stopped at the end
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        # One copy in the object store; a task given the reference as an argument gets the
        # value, fetched once per node and read there without copying (numpy arrays).
        shared_ref = ray.put(shared)
        remote = ray.remote(_call_on_ray).options(num_cpus=1, max_retries=2)
        pending = {remote.remote(fn, shared_ref, t): i for i, t in enumerate(tasks)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    yield pending.pop(ref), ray.get(ref)
        finally:
            for ref in pending:  # an error or an interrupt: stop what is still queued
                ray.cancel(ref)
    finally:
        if started_here:
            ray.shutdown()
