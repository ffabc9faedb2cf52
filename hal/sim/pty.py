"""A serial "cable" between two named pseudo-terminals, made by socat.

``socat pty,raw,echo=0,link=A pty,raw,echo=0,link=B`` gives two stable paths joined like a
null-modem cable. Killing socat removes both paths (the adapter is unplugged); starting it
again with the same paths plugs it back in. The simulator, the tests, the benchmark and the
HIL bench use this to put real RTU framing on a real tty.

It must never leave a socat process behind: ``stop()`` (or leaving the ``async with``)
terminates it and waits for it.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from types import TracebackType

from hal.errors import HalError

__all__ = ["PtyPair"]


class PtyPair:
    """Two linked pseudo-terminals at ``master_path`` (driver side) and ``slave_path``."""

    def __init__(self, master_path: str | Path, slave_path: str | Path) -> None:
        self.master_path = str(master_path)
        self.slave_path = str(slave_path)
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def plugged(self) -> bool:
        """True while socat runs (both paths exist)."""
        return self._proc is not None and self._proc.returncode is None

    async def start(self, timeout_s: float = 5.0) -> None:
        """Start socat and wait until both paths exist."""
        if self.plugged:
            return
        socat = shutil.which("socat")
        if socat is None:
            raise HalError("socat is not installed (apt-get install socat)")
        self._proc = await asyncio.create_subprocess_exec(
            socat,
            f"pty,raw,echo=0,link={self.master_path}",
            f"pty,raw,echo=0,link={self.slave_path}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self._paths_exist():
            if self._proc.returncode is not None or loop.time() > deadline:
                await self.stop()
                raise HalError(f"socat did not create {self.master_path} and {self.slave_path}")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Kill socat (unplug the cable) and wait until the paths are gone."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for path in (self.master_path, self.slave_path):
            # socat removes its links on SIGTERM; a killed socat may leave them dangling
            Path(path).unlink(missing_ok=True)  # noqa: ASYNC240 (tmpfs unlink, no I/O wait)

    def _paths_exist(self) -> bool:
        return Path(self.master_path).exists() and Path(self.slave_path).exists()

    async def __aenter__(self) -> PtyPair:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
