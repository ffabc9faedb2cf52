"""A real mosquitto for tests: ephemeral loopback port, config and logs in tmp_path, always
stopped (a stray broker would break the next run).

    from tests.mqtt_broker import mosquitto_broker   # a pytest fixture: a plain broker
    broker = Mosquitto(tmp_path, extra=[...]); broker.start(); ...; broker.stop()

``make_pki`` writes a CA, a server certificate for 127.0.0.1/localhost and client
certificates (CN = the given names) with the ``cryptography`` package.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pki import Pki, make_pki  # the MQTT TLS tests import them from here

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    """A free loopback TCP port (bind to port 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """One mosquitto process. ``extra`` lines go into the listener's config (TLS, ACL)."""

    def __init__(
        self, workdir: Path, *, port: int | None = None, extra: list[str] | None = None
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        self.log = workdir / f"mosquitto-{self.port}.log"

    def start(self, timeout_s: float = 5.0) -> "Mosquitto":
        if not Path(MOSQUITTO).exists():
            raise RuntimeError("mosquitto is not installed (scripts/bootstrap --dev installs it)")
        lines = [
            "persistence false",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            f"listener {self.port} 127.0.0.1",
            "max_queued_messages 10000",
        ]
        if os.geteuid() == 0:  # as root it would switch to user mosquitto: no tmp_path access
            lines.insert(0, "user root")
        if not any(line.startswith(("allow_anonymous", "password_file")) for line in self.extra):
            lines.append("allow_anonymous true")
        self.conf.write_text("\n".join([*lines, *self.extra]) + "\n")
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log.read_text() if self.log.exists() else ""
                raise RuntimeError(f"mosquitto exited ({self.proc.returncode}): {log}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("mosquitto did not listen on port %d" % self.port)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(3.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(3.0)

    def kill(self) -> None:
        """Stop the broker abruptly (SIGKILL)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(3.0)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def mosquitto_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A plain (anonymous, no TLS) mosquitto on an ephemeral loopback port."""
    broker = Mosquitto(tmp_path)
    try:
        yield broker.start()
    finally:
        broker.stop()


__all__ = ["Mosquitto", "Pki", "free_port", "make_pki", "mosquitto_broker"]
