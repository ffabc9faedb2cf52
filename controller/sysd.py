"""systemd integration without a dependency: sd_notify over $NOTIFY_SOCKET.

The protocol is one datagram per message on a unix socket named by the environment (see
sd_notify(3)); writing the dozen lines here avoids pulling in libsystemd bindings that need
a C build on the device. Outside systemd (no NOTIFY_SOCKET) every call is a no-op.
"""

import os
import socket


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET", "")
        if addr.startswith("@"):  # abstract namespace
            addr = "\0" + addr[1:]
        self._addr = addr or None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_s: float | None = int(usec) / 1e6 if usec.isdigit() and mine else None

    @property
    def enabled(self) -> bool:
        return self._addr is not None

    def notify(self, message: str) -> bool:
        """Send one notification (e.g. "READY=1", "WATCHDOG=1", "STATUS=..."), never raising:
        a lost notification must not take the controller down."""
        if self._addr is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._addr)
                sock.sendall(message.encode())
        except OSError:
            return False
        return True
