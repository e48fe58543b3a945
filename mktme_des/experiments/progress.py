"""Progress of a run: a bar on a terminal, plain lines otherwise.

On a terminal (``stream.isatty()``) one line is redrawn in place, at most ten times a second::

    e1-aes-latency [##########..........] 36/72  50%  0:41 elapsed, ETA 0:40

Elsewhere (a log file, CI) each finished run prints one line with the same counts. Failed runs
always get their own line. The ETA is the mean time per run finished so far in this run times
the runs left.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Counts ``total`` runs as they finish; ``update`` after each, ``close`` at the end."""

    WIDTH = 24

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None,
                 tty: bool | None = None) -> None:
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.done = 0
        self.start = time.monotonic()
        self._drawn = 0.0
        self._bar = False

    def _counts(self) -> str:
        elapsed = time.monotonic() - self.start
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = (elapsed / self.done * (self.total - self.done)) if self.done else None
        tail = f"ETA {clock(eta)}" if eta is not None else "ETA -"
        return f"{self.done}/{self.total} {pct:4.0f}%  {clock(elapsed)} elapsed, {tail}"

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < 0.1 and self.done < self.total:
            return
        self._drawn = now
        fill = self.WIDTH * self.done // self.total if self.total else self.WIDTH
        bar = "#" * fill + "." * (self.WIDTH - fill)
        self.stream.write(f"\r{self.label} [{bar}] {self._counts()}\x1b[K")
        self.stream.flush()
        self._bar = True

    def message(self, text: str) -> None:
        """Print a line (above the bar on a terminal)."""
        if self.tty and self._bar:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        if self.tty and self._bar:
            self._draw(force=True)

    def update(self, ok: bool, what: str = "") -> None:
        """One more run finished; ``what`` describes it in plain-line mode and on failure."""
        self.done += 1
        if self.tty:
            if not ok:
                self.message(f"{self.label}: FAILED {what}")
            self._draw()
        else:
            status = "ok" if ok else "FAILED"
            self.message(f"{self.label} {self._counts()}  {status} {what}".rstrip())

    def advance_to(self, done: int) -> None:
        """``done`` of ``total`` are finished (a count that only grows); redraws the bar."""
        if done != self.done:
            self.done = done
            self._draw()

    def close(self) -> None:
        if self.tty and self._bar:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
