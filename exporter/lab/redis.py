"""A throw-away ``redis-server`` on 127.0.0.1 (Debian's ``redis-server``), for the demo and tests.

It runs in the foreground from a temporary directory with persistence off (``save ""``,
``appendonly no``), on a free port chosen here (``port 0`` turns Redis's TCP listener off
rather than picking one), optionally with a password and TLS on that port. It is stopped by its
PID. :func:`available` tells whether the binary is there: the demo skips its queue section
without it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"


def available() -> bool:
    return shutil.which("redis-server") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class LabRedis:
    """``tls`` is (certificate file, key file): the port then speaks only TLS (``rediss://``)."""

    def __init__(self, *, password: str | None = None, tls: tuple[Path, Path] | None = None):
        self.password = password
        self.tls = tls
        self.port = 0
        self.dir = Path(tempfile.mkdtemp(prefix="lab-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{HOST}:{self.port}/0"

    def _config(self) -> str:
        lines = [
            f"bind {HOST}",
            f"dir {self.dir}",
            'save ""',
            "appendonly no",
            "protected-mode no",
            f"logfile {self.dir / 'redis.log'}",
        ]
        if self.tls:
            cert, key = self.tls
            lines += ["port 0", f"tls-port {self.port}", f"tls-cert-file {cert}",
                      f"tls-key-file {key}", "tls-auth-clients no"]  # fmt: skip
        else:
            lines.append(f"port {self.port}")
        if self.password:
            lines.append(f"requirepass {self.password}")
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> LabRedis:
        """Start and wait until the port accepts connections; a few tries if a port was taken
        between choosing and binding it."""
        for _ in range(5):
            self.port = _free_port()
            conf = self.dir / "redis.conf"
            conf.write_text(self._config())
            conf.chmod(0o600)  # it may hold the password
            self.proc = subprocess.Popen(
                ["redis-server", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.2):
                    return self
                time.sleep(0.01)
            self._terminate()
        raise RuntimeError(f"redis-server did not start: {self.log()[-500:]}")

    def _terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def stop(self) -> None:
        self._terminate()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.dir / "redis.log").read_text(errors="replace")
        except OSError:
            return ""
