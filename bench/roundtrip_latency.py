"""The roundtrip probe's own overhead: from delivery into the mailbox to the probe seeing it.

``python -m bench.roundtrip_latency [--runs 30]`` starts a real dovecot (tests/servers/mail.py)
and an in-process aiosmtpd receiver that hands each message to dovecot over LMTP and notes the
moment LMTP answered "saved" (the message is in the Maildir). The probe runs unmodified except
that the time its search first returns the message is recorded (a wrapper around
``_Watcher.matching``). Detection latency = seen - saved. Prints one JSON object with the
median, p90 and max over the runs, for IDLE (127.0.0.1) and for polling (NOIDLE_HOST, 200 ms).
Needs the Debian packages dovecot-imapd and dovecot-lmtpd.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers.mail import HOST, NOIDLE_HOST, Dovecot, MailCerts, _tempdir, free_port

from exporter.config import parse_config
from exporter.net.dnsclient import make_resolver
from exporter.probes import roundtrip
from exporter.runner import Runtime, run_probe

USER = "probe@example.test"


class Receiver:
    def __init__(self, dovecot: Dovecot) -> None:
        self.dovecot = dovecot
        self.saved: list[float] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for rcpt in envelope.rcpt_tos:
            await asyncio.to_thread(self.dovecot.deliver, rcpt, envelope.original_content)
        self.saved.append(time.monotonic())
        return "250 OK"


async def measure(runs: int, imap_host: str, dovecot: Dovecot, certs: MailCerts,
                  smtp_port: int, pwfile: Path) -> dict[str, Any]:  # fmt: skip
    seen: list[float] = []
    original = roundtrip._Watcher.matching

    async def recording(self: Any, name: str, value: str, exact: str | None) -> dict[int, bytes]:
        hits = await original(self, name, value, exact)
        if hits and exact is not None:
            seen.append(time.monotonic())
        return hits

    roundtrip._Watcher.matching = recording  # type: ignore[method-assign]
    config = parse_config({
        "roundtrip": [{
            "name": "bench", "from": "sender@example.test", "to": USER, "timeout": "10s",
            "smtp": {"host": HOST, "port": smtp_port, "security": "none"},
            "imap": {"host": imap_host, "port": dovecot.imaps_port, "security": "tls",
                     "username": USER, "password_file": str(pwfile), "spam_folder": "Junk",
                     "ca_file": str(certs.ca_file), "poll_interval": "200ms"},
        }],
    })  # fmt: skip
    probe = roundtrip.RoundtripProbe()
    (target,) = probe.targets(config)
    deps = Runtime(make_resolver(["127.0.0.1:9"]), config)
    latencies: list[float] = []
    totals: list[float] = []
    try:
        for _ in range(runs):
            seen.clear()
            before = len(RECEIVER.saved)
            rec = await run_probe(probe, target, deps)
            if rec.result.error or len(RECEIVER.saved) != before + 1 or not seen:
                raise RuntimeError(f"run failed: {rec.result}")
            latencies.append(seen[0] - RECEIVER.saved[-1])
            totals.append(rec.duration)
    finally:
        roundtrip._Watcher.matching = original  # type: ignore[method-assign]
    return {
        "runs": runs,
        "delivery_to_detection_ms": _stats(latencies),
        "probe_run_ms": _stats(totals),
    }


def _stats(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    return {
        "median": round(statistics.median(ms), 1),
        "p90": round(ms[int(0.9 * (len(ms) - 1))], 1),
        "max": round(ms[-1], 1),
    }


RECEIVER: Receiver


async def main_async(runs: int) -> dict[str, Any]:
    global RECEIVER
    workdir = _tempdir("rt-bench-")
    certs = MailCerts(workdir)
    pwfile = Path(tempfile.mkdtemp()) / "pw"
    pwfile.write_text("bench-secret")
    dovecot = Dovecot({USER: "bench-secret"}, certs).start()
    RECEIVER = Receiver(dovecot)
    port = free_port()
    controller = Controller(RECEIVER, hostname=HOST, port=port, server_hostname="mx.example.test")
    controller.start()
    try:
        return {
            "idle": await measure(runs, HOST, dovecot, certs, port, pwfile),
            "poll_200ms": await measure(runs, NOIDLE_HOST, dovecot, certs, port, pwfile),
        }
    finally:
        controller.stop()
        dovecot.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(pwfile.parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args.runs)), indent=2))


if __name__ == "__main__":
    main()
