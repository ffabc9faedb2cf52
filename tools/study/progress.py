"""A tiny progress bar on stderr, for long study runs (no dependency).

Shown only when stderr is a terminal or the caller forces it; redraws at most every
0.2 s so that it costs nothing next to the core.
"""

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self, total: int, label: str = "", enabled: bool | None = None, stream: TextIO | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = max(1, total)
        self.label = label
        self.done = 0
        self._last = 0.0

    def advance_to(self, done: int) -> None:
        self.done = done
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.2 and done < self.total:
            return
        self._last = now
        frac = min(1.0, done / self.total)
        bar = "#" * int(frac * 30)
        self.stream.write(f"\r{self.label} [{bar:<30}] {frac * 100:5.1f}%")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
