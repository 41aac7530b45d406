"""knot (Debian package ``knot``) serving the bench zones on loopback, with query counters.

``mod-stats`` counts every query the server answers, so the bench reports the DNS work of the
exporter and of each peer tool the same way, from the server side. knot's config accepts only
block-style YAML.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (a DNS server needs both)."""
    while True:
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def knotc(control: Path, *args: str) -> str | None:
    """Run ``knotc`` against a control socket; its output, or None when it failed."""
    exe = shutil.which("knotc") or "/usr/sbin/knotc"
    res = subprocess.run(
        [exe, "-s", str(control), *args], capture_output=True, text=True, timeout=30, check=False
    )
    return res.stdout if res.returncode == 0 else None


def queries(control: Path) -> int:
    """Queries the server behind ``control`` answered since it started (UDP and TCP)."""
    out = knotc(control, "stats", "mod-stats.request-protocol") or ""
    return sum(int(n) for n in re.findall(r"= (\d+)", out))


class Knot:
    """``knotd`` in the foreground on 127.0.0.1, stopped by PID on exit."""

    def __init__(self, workdir: Path, zones: dict[str, Path]) -> None:
        self.workdir = workdir
        self.zones = zones
        self.port = free_port()
        self.conf = workdir / "knot.conf"
        self.socket = workdir / "run" / "knot.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def _write_conf(self) -> None:
        for sub in ("run", "db"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        zone_lines = "".join(
            f'  - domain: {name}\n    file: "{path}"\n' for name, path in self.zones.items()
        )
        self.conf.write_text(
            "server:\n"
            f'    rundir: "{self.workdir}/run"\n'
            f"    listen: 127.0.0.1@{self.port}\n"
            "    udp-workers: 1\n"
            "    tcp-workers: 1\n"
            "    background-workers: 1\n"
            "log:\n  - target: stderr\n    any: warning\n"
            f'control:\n    listen: "{self.socket}"\n'
            f'database:\n    storage: "{self.workdir}/db"\n'
            "mod-stats:\n  - id: bench\n    request-protocol: on\n    query-type: on\n"
            "template:\n  - id: default\n    global-module: mod-stats/bench\n"
            "    journal-content: none\n    zonefile-sync: -1\n"
            f"zone:\n{zone_lines}"
        )

    def start(self, timeout: float = 120.0) -> Knot:
        for attempt in range(3):
            try:
                return self._start(timeout)
            except RuntimeError as exc:
                # Another process may take the free port before knot binds it: try another.
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> Knot:
        knotd = shutil.which("knotd") or "/usr/sbin/knotd"
        if not Path(knotd).exists():
            raise RuntimeError("knotd not found: apt-get install -y --no-install-recommends knot")
        self._write_conf()
        self.proc = subprocess.Popen(
            [knotd, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        # Ready when every zone is loaded: ask for each zone's SOA over the control socket.
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"knotd exited: {err}")
            if self.socket.exists() and self._all_loaded():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("knotd did not load the zones in time")

    def _all_loaded(self) -> bool:
        out = self.knotc("zone-status")
        if out is None:
            return False
        loaded = len(re.findall(r"serial: \d+", out))
        return loaded >= len(self.zones)

    def knotc(self, *args: str) -> str | None:
        return knotc(self.socket, *args)

    def queries(self) -> int:
        """Queries answered since start (all zones, UDP and TCP)."""
        return queries(self.socket)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> Knot:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
