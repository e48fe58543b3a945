"""Where runs execute: worker processes on this machine, this process, or a Dask cluster.

Every backend runs the same pure function, :func:`execute_run`, on the same task tuples
``(driver module, driver name, config, seed)`` and hands back its result dicts as they finish;
the parent process alone writes result files. So results are byte-for-byte the same whichever
backend ran them, and a worker on another machine needs the package installed (and any trace
file a configuration names) but no access to the results folder.

* :class:`LocalBackend`: a ``concurrent.futures.ProcessPoolExecutor`` with ``workers``
  processes. Workers ignore SIGINT; on Ctrl-C the parent cancels what has not started and
  terminates the workers.
* :class:`InlineBackend` (``workers=0``): runs in this process, one after the other (for
  debugging; tracebacks point into the driver).
* :class:`DaskBackend`: ``distributed.Client(address)``; tasks are submitted and collected with
  ``distributed.as_completed``. Dask is imported only here, and only then.
"""

from __future__ import annotations

import importlib
import multiprocessing
import re
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from mktme_des.errors import UserError
from mktme_des.experiments import drivers
from mktme_des.limits import check_workers
from mktme_des.signals import stop_pool, worker_init

Task = tuple[str, str, dict[str, Any], int]


class WorkerLost(RuntimeError):
    """A worker process died (killed, out of memory) and the pool cannot go on."""


def execute_run(module: str, name: str, config: dict[str, Any], seed: int) -> dict[str, Any]:
    """Run one task in whatever process this is; never raises for a driver's error.

    Returns ``{"status": "ok", "metrics": ..., "series": ..., "wall_s": ...}`` or
    ``{"status": "failed", "error": "Type: message", "traceback": ..., "wall_s": ...}``."""
    start = time.perf_counter()
    try:
        importlib.import_module(module)
        fn = drivers.get(name).fn
        out = fn(config, seed)
        metrics, series = out if isinstance(out, tuple) else (out, {})
        if not isinstance(metrics, dict):
            raise TypeError(f"driver {name!r} returned {type(metrics).__name__}, not a dict")
        for k, v in metrics.items():
            if v is not None and not isinstance(v, str | int | float) and not hasattr(v, "item"):
                raise TypeError(f"metric {k!r} is {type(v).__name__}; metrics are numbers or "
                                "strings (put other data in the series dict)")
        return {"status": "ok", "metrics": metrics, "series": series or {},
                "wall_s": time.perf_counter() - start}
    except Exception as exc:  # recorded in the run's result file
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(), "wall_s": time.perf_counter() - start}


def _context() -> multiprocessing.context.BaseContext | None:
    """The platform's default start method, except that a process that already runs other
    threads (a Jupyter kernel, a Dask client) starts its workers from a fork server: forking a
    multi-threaded process can copy a lock some thread holds and hang the child. Results do not
    depend on the start method; drivers must live in importable modules for it."""
    if threading.active_count() > 1 and "forkserver" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("forkserver")
    return None


def failure(exc: BaseException) -> dict[str, Any]:
    """A result dict for a task whose execution itself failed (not the driver)."""
    return {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
            "traceback": "".join(traceback.format_exception(exc)), "wall_s": None}


class InlineBackend:
    """Runs tasks one after the other in this process."""

    name = "inline"
    workers = 1
    address = None

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[int, dict[str, Any]]]:
        for i, task in enumerate(tasks):
            yield i, execute_run(*task)

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        pass


class LocalBackend:
    """A pool of ``workers`` processes on this machine."""

    name = "local"
    address = None

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None
        self.cancelled = False

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[int, dict[str, Any]]]:
        self.pool = ProcessPoolExecutor(max_workers=self.workers, initializer=worker_init,
                                        mp_context=_context())
        pending = {self.pool.submit(execute_run, *t): i for i, t in enumerate(tasks)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: pending[f]):
                i = pending.pop(fut)
                try:
                    yield i, fut.result()
                except BrokenProcessPool as exc:
                    raise WorkerLost("a worker process died (killed, or out of memory?)") from exc
                except Exception as exc:  # e.g. a result that cannot be pickled
                    yield i, failure(exc)

    def cancel(self) -> None:
        """Drop queued tasks and stop the workers now (runs in progress are lost)."""
        pool = self.pool
        if pool is None:
            return
        self.cancelled = True
        terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
        if terminate is not None:
            terminate()
            return
        stop_pool(pool)

    def close(self) -> None:
        if self.pool is not None and not self.cancelled:
            self.pool.shutdown(wait=True, cancel_futures=True)


class DaskBackend:
    """Tasks on a Dask distributed cluster, through its scheduler at ``address``."""

    name = "dask"

    def __init__(self, address: str) -> None:
        check_scheduler_address(address)
        try:
            import distributed
        except ImportError:
            raise UserError("--scheduler needs Dask distributed, which is not installed: "
                            "pip install 'mktme-des[dask]'") from None
        self._distributed = distributed
        self.address = address
        try:
            self.client = distributed.Client(address, timeout=15, set_as_default=False)
        except Exception as exc:  # whatever Dask raises for an address it cannot use
            raise UserError(f"--scheduler {address}: cannot reach a Dask scheduler there: "
                            f"{type(exc).__name__}: {exc}") from None
        self.workers = sum(self.client.nthreads().values())
        self.futures: list[Any] = []

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[int, dict[str, Any]]]:
        index = {}
        for i, task in enumerate(tasks):
            fut = self.client.submit(execute_run, *task, pure=False)
            index[fut.key] = i
            self.futures.append(fut)
        for fut in self._distributed.as_completed(self.futures, loop=self.client.loop):
            i = index[fut.key]
            try:
                res = fut.result()
            except Exception as exc:  # a lost worker, a serialisation error
                res = failure(exc)
            fut.release()
            yield i, res

    def cancel(self) -> None:
        if self.futures:
            self.client.cancel(self.futures)

    def close(self) -> None:
        self.client.close()


_ADDRESS = re.compile(r"(?:(tcp|tls|ws|wss)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})")


def check_scheduler_address(address: str) -> None:
    """A UserError unless ``address`` is ``[PROTOCOL://]HOST:PORT`` (tcp, tls, ws or wss; a
    port 1..65535): anything else would make Dask try for its whole timeout, then fail."""
    m = _ADDRESS.fullmatch(address)
    if not m or not 1 <= int(m.group(3)) <= 65535:
        raise UserError(f"--scheduler {address!r}: not a scheduler address; expected "
                        "[tcp|tls|ws|wss://]HOST:PORT with a port 1..65535, e.g. "
                        "tcp://10.0.0.5:8786")


def check_backend(workers: int | None, scheduler: str | None) -> None:
    """A UserError for ``--workers``/``--scheduler`` values no backend can use (checked
    before anything is written or started)."""
    if scheduler:
        if workers is not None:
            raise UserError("--workers is for local runs; a Dask cluster brings its own workers")
        check_scheduler_address(scheduler)
    elif workers is not None:
        check_workers(workers, allow_zero=True)


def make_backend(workers: int | None, scheduler: str | None) -> LocalBackend | InlineBackend | DaskBackend:
    """The backend for ``--workers``/``--scheduler`` (``workers`` None: every core)."""
    import os

    check_backend(workers, scheduler)
    if scheduler:
        return DaskBackend(scheduler)
    if workers is None:
        workers = os.cpu_count() or 1
    return InlineBackend() if workers == 0 else LocalBackend(workers)
