"""How the command's processes end: SIGTERM is handled like Ctrl-C, and worker processes die
with their parent.

* :func:`terminate_as_interrupt` turns a SIGTERM into a :class:`KeyboardInterrupt` in the main
  process while the command runs, so ``kill PID`` stops it the way Ctrl-C does: finished work
  kept, workers stopped, one line and exit status 130.
* :func:`worker_init` is every worker pool's initializer: a worker ignores SIGINT (the parent
  decides what a Ctrl-C stops) and, on Linux, asks the kernel for a SIGTERM when its parent
  dies (``prctl(PR_SET_PDEATHSIG)``), so a parent killed even by SIGKILL leaves no worker
  running and holding its output open.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While in the block, SIGTERM raises KeyboardInterrupt (main thread only; elsewhere a
    no-op). The previous handler is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def worker_init() -> None:
    """Initializer of a worker process (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        import ctypes

        parent = os.getppid()
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the parent's own cleanup still applies
            return
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)


def stop_pool(pool) -> None:
    """Stop a ProcessPoolExecutor now: queued tasks dropped, workers terminated (for Ctrl-C:
    waiting for the runs in progress could take as long as they do)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(timeout=5)
