"""The controller under test as a child process: ``python -m controller run --config X``.

The HMI port is ephemeral (``[hmi] port = 0``): the daemon announces it on stderr
(``HMI on http://127.0.0.1:PORT``) and the bench reads it from there; every stderr line goes
to the scenario's ``daemon.log``. ``stop`` (SIGTERM, then SIGKILL after a grace time) and
``kill`` (SIGKILL) always reap the process: the bench never leaves a daemon behind.
"""

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from controller.errors import GridwardenError

ROOT = Path(__file__).resolve().parents[2]
HMI_LINE = re.compile(r"HMI on http://127\.0\.0\.1:(\d+)")


class DaemonError(GridwardenError):
    """The daemon did not start, or exited when it should not have."""


class DaemonProcess:
    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.port: int | None = None
        self.starts = 0
        self._drain: asyncio.Task[None] | None = None
        self._log: IO[str] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, timeout_s: float = 30.0) -> None:
        """Start the daemon and wait until its HMI/status server listens."""
        if self.running:
            return
        self.starts += 1
        self._log = self.log_path.open("a", encoding="utf-8")
        self._log.write(f"--- start {self.starts} ---\n")
        self.proc = proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "controller",
            "run",
            "--config",
            str(self.config_path),
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "JOURNAL_STREAM": "", "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stderr is not None
        self.port = None
        try:
            async with asyncio.timeout(timeout_s):
                while self.port is None:
                    raw = await proc.stderr.readline()
                    if not raw:
                        code = await proc.wait()
                        raise DaemonError(f"the daemon exited with {code}; see {self.log_path}")
                    line = raw.decode(errors="replace")
                    self._log.write(line)
                    found = HMI_LINE.search(line)
                    if found:
                        self.port = int(found.group(1))
        except TimeoutError as exc:
            await self.kill()
            msg = f"the daemon did not announce its HMI within {timeout_s:g} s"
            raise DaemonError(msg) from exc
        except BaseException:
            await self.kill()
            raise
        self._drain = asyncio.create_task(self._drain_stderr(proc), name="daemon stderr")

    async def _drain_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None and self._log is not None
        while raw := await proc.stderr.readline():
            self._log.write(raw.decode(errors="replace"))
        self._log.flush()

    async def status(self) -> dict[str, Any] | None:
        """``GET /api/status``, or None when the daemon does not answer."""
        port = self.port
        if not self.running or port is None:
            return None

        def get() -> dict[str, Any] | None:
            url = f"http://127.0.0.1:{port}/api/status"
            try:
                with urllib.request.urlopen(url, timeout=1.0) as resp:
                    data = json.load(resp)
            except (OSError, urllib.error.URLError, ValueError):
                return None
            return data if isinstance(data, dict) else None

        return await asyncio.to_thread(get)

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs (a crash, a power cut)."""
        await self._end(signal.SIGKILL, 0.0)

    async def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM, SIGKILL after ``grace_s``; returns the exit code."""
        return await self._end(signal.SIGTERM, grace_s)

    async def _end(self, sig: signal.Signals, grace_s: float) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                await asyncio.wait_for(proc.wait(), grace_s or None)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._drain is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._drain, 5.0)
            self._drain = None
        if self._log is not None:
            self._log.write(f"--- exit {proc.returncode} ---\n")
            self._log.close()
            self._log = None
        self.port = None
        return proc.returncode
