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
import contextlib
import os
import shutil
import tty
from pathlib import Path
from types import TracebackType

from hal.errors import HalError

__all__ = ["PtyPair", "PythonPtyPair", "open_pty_pair"]


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


class PythonPtyPair:
    """The same cable without socat: two pseudo-terminals whose master sides this process
    joins with an event-loop relay. For machines that have only Python (``gridwarden
    demo`` on a fresh laptop); the tests use socat, which also survives this process.
    The relay lives on the running event loop: start and stop it from that loop."""

    def __init__(self, master_path: str | Path, slave_path: str | Path) -> None:
        self.master_path = str(master_path)
        self.slave_path = str(slave_path)
        self._fds: list[int] = []

    @property
    def plugged(self) -> bool:
        return bool(self._fds)

    async def start(self, timeout_s: float = 5.0) -> None:
        if self.plugged:
            return
        loop = asyncio.get_running_loop()
        a_master, a_slave = os.openpty()
        b_master, b_slave = os.openpty()
        self._fds = [a_master, a_slave, b_master, b_slave]
        for fd in (a_slave, b_slave):
            tty.setraw(fd)  # no echo, no line discipline: bytes pass as they are
        for fd in (a_master, b_master):
            os.set_blocking(fd, False)
        for link, slave in ((self.master_path, a_slave), (self.slave_path, b_slave)):
            Path(link).unlink(missing_ok=True)  # noqa: ASYNC240 (tmpfs, no I/O wait)
            Path(link).symlink_to(os.ttyname(slave))  # noqa: ASYNC240
        loop.add_reader(a_master, self._relay, a_master, b_master)
        loop.add_reader(b_master, self._relay, b_master, a_master)

    @staticmethod
    def _relay(src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except (BlockingIOError, OSError):
            return  # nobody has the tty open yet (EIO) or nothing to read
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(dst, data)

    async def stop(self) -> None:
        fds, self._fds = self._fds, []
        if not fds:
            return
        loop = asyncio.get_running_loop()
        for fd in (fds[0], fds[2]):
            loop.remove_reader(fd)
        for path in (self.master_path, self.slave_path):
            Path(path).unlink(missing_ok=True)  # noqa: ASYNC240
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    async def __aenter__(self) -> PythonPtyPair:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def open_pty_pair(master_path: str | Path, slave_path: str | Path) -> PtyPair | PythonPtyPair:
    """A serial cable between two named ttys: socat when installed, else a Python relay."""
    if shutil.which("socat"):
        return PtyPair(master_path, slave_path)
    return PythonPtyPair(master_path, slave_path)
