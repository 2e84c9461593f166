"""Where a sweep's points run: in this process, in a local process pool, or on Ray.

`with backend(jobs, ray) as run:` gives a runner; `run(fn, shared, tasks)` maps
`fn(shared, task)` over `tasks` and yields `(index, result)` as results come in, in
whatever order they finish; the caller persists each one. `shared` (the
workload and the grid) is sent once per worker process (pool) or put once into Ray's object
store, which copies it once to each node that runs a task, never once per task.
`fn` must be a module-level function so that workers can import it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from functools import partial
from typing import Any

Fn = Callable[[Any, Any], Any]
Runner = Callable[[Fn, Any, Sequence], Iterator[tuple[int, Any]]]


@contextmanager
def backend(jobs: int | None = 1, ray_address: str | None = None) -> Iterator[Runner]:
    """A runner `run(fn, shared, tasks)` for these arguments: Ray when `ray_address` is
    given ("auto", an address, or "local" to start a Ray instance here with `jobs` CPUs,
    stopped on exit), else a process pool of `jobs` workers (None: one per CPU), else
    (jobs=1) this process. Ray is reached on entry, so that a wrong address fails before
    the caller writes anything."""
    if ray_address is not None:
        ray, started_here = connect_ray(ray_address, jobs)
        try:
            yield partial(run_on_ray, ray)
        finally:
            if started_here:
                ray.shutdown()
        return
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    yield run_here if jobs == 1 else partial(run_in_pool, jobs=jobs)


def run_tasks(fn: Fn, shared: Any, tasks: Sequence, jobs: int | None = 1,
              ray_address: str | None = None) -> Iterator[tuple[int, Any]]:
    """`backend(jobs, ray_address)` for one batch of tasks."""
    with backend(jobs, ray_address) as run:
        yield from run(fn, shared, tasks)


def run_here(fn: Fn, shared: Any, tasks: Sequence) -> Iterator[tuple[int, Any]]:
    for i, task in enumerate(tasks):
        yield i, fn(shared, task)


# A pool worker's copy of `shared`, set once by the pool's initializer: the one piece of
# module state here, and it lives only in worker processes.
_worker_shared: Any = None


def _keep_shared(shared: Any, parent: int) -> None:
    global _worker_shared
    _worker_shared = shared
    # Ctrl-C reaches every process of the terminal's group: let the parent alone handle it
    # (it cancels what has not started), not each worker with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A pool worker whose parent is killed (SIGKILL: no chance to stop its pool) would wait
    # for work forever, holding memory and the parent's output pipes: leave with it. The
    # parent names itself: killed while this worker was still starting, it would already
    # have been replaced by init (or a subreaper), and getppid() here would watch that.
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _call_with_shared(fn: Fn, task: Any) -> Any:
    return fn(_worker_shared, task)


def run_in_pool(fn: Fn, shared: Any, tasks: Sequence, jobs: int) -> Iterator[tuple[int, Any]]:
    if len(tasks) <= 1:  # not worth starting processes
        yield from run_here(fn, shared, tasks)
        return
    # spawn, not fork: the caller runs a progress-bar thread, and forking a process with
    # threads can copy a held lock into the child.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context,
                               initializer=_keep_shared, initargs=(shared, os.getpid()))
    try:
        with _ctrl_c_held():  # workers start here: a Ctrl-C must not reach them mid-import
            pending: dict[Future, int] = {pool.submit(_call_with_shared, fn, t): i
                                          for i, t in enumerate(tasks)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
    except BaseException:  # an error, an interrupt, or the caller stopped listening
        stop_pool(pool)
        raise
    pool.shutdown(wait=True)


@contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Hold SIGINT back from this thread, and so from the processes it starts (they inherit
    the mask; their initializer then ignores SIGINT for good). A Ctrl-C in the meantime
    reaches this process when the block ends (or at once through another thread)."""
    held = {signal.SIGINT}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextmanager
def _ctrl_c_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers, and only it gets KeyboardInterrupt
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop at once: drop what has not started and kill the workers, whose points would be
    lost anyway (every finished point is already saved). Waiting for running points instead
    would make Ctrl-C take as long as the longest point, and a second Ctrl-C during that
    wait left the interpreter joining idle workers forever."""
    with _ctrl_c_ignored():  # a second Ctrl-C must not cut the stop short (seconds at most)
        _stop_pool(pool)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    workers = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)  # shutdown forgets it
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        if worker.is_alive():
            worker.kill()
    for worker in workers:
        worker.join(timeout=5)
    # The pool's manager thread sees its workers gone, closes its wakeup pipe and ends;
    # left running, it raced the interpreter's exit hook, which writes to that pipe
    # (OSError: Bad file descriptor, printed as a traceback at exit).
    if manager is not None:
        manager.join(timeout=5)


def _call_on_ray(fn: Fn, shared: Any, task: Any) -> Any:
    return fn(shared, task)


def require_ray():
    """The ray module, or an error a user can act on."""
    try:
        import ray
    except ImportError:
        raise ValueError("the Ray backend needs ray: pip install 'ray>=2.9'") from None
    return ray


def connect_ray(address: str, num_cpus: int | None = None):
    """(ray, whether this call started or joined it); a Ray already initialized in this
    process (a notebook, a test) is used as it is and left running."""
    ray = require_ray()
    if ray.is_initialized():
        return ray, False
    try:
        if address == "local":  # a fresh instance on this machine
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError) as e:
        raise ValueError(f"cannot start or reach Ray at {address!r}: {e} (is the cluster up? "
                         "`ray start --head` starts one; --ray local runs one here)") from None
    return ray, True


def run_on_ray(ray, fn: Fn, shared: Any, tasks: Sequence) -> Iterator[tuple[int, Any]]:
    if not tasks:
        return
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
