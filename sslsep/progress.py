"""A dependency-free progress line for long loops (stderr, redrawn in place on a TTY)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str, stream=None, every_s: float = 0.5):
        self.total, self.label, self.done = total, label, 0
        self.stream = stream or sys.stderr
        self.start = self.last = time.monotonic()
        self.every_s = every_s
        self.tty = getattr(self.stream, "isatty", lambda: False)()

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every_s or self.done >= self.total:
            self.last = now
            self._draw(note)

    def _draw(self, note: str) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * 24)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        line = (f"{self.label} [{bar:<24}] {self.done}/{self.total} "
                f"{rate:.1f}/s eta {eta:.0f}s {note}").rstrip()
        if self.tty:
            self.stream.write("\r" + line + ("\n" if self.done >= self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.done < self.total:
            self.stream.write("\n")
