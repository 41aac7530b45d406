"""``deliverability-exporter demo``: the exporter against a self-contained offline lab.

One process, no account, no network: a loopback DNS server (:mod:`exporter.lab.dns`) serves three
sample domains — one healthy, one with the usual weaknesses, one broken — plus a demo blacklist;
two loopback SMTP servers (:mod:`exporter.lab.smtp`) offer STARTTLS with certificates from a
throw-away CA (:mod:`exporter.lab.certs`), one valid, one expiring in 5 days. The exporter runs
against them with a generated config (written to a temporary directory, so ``POST /-/reload``
works) and serves ``/metrics`` and the status page on 127.0.0.1 until Ctrl-C.

Sections appear only for registered probes: the TLS servers start only when the ``tls`` probe is
in :data:`exporter.probes.PROBES`; the blacklist config is always written but is probed only when
a ``dnsbl`` probe is registered.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import signal
import ssl
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from exporter.config import Config, parse_config
from exporter.lab.certs import LabCA
from exporter.lab.dns import LabDnsServer, zone_text
from exporter.lab.smtp import LabSmtpServer
from exporter.net.addr import split_host_port

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9866
INTERVAL = "30s"
TIMEOUT = "10s"
EXPIRING_DAYS = 5

DOMAINS: dict[str, str] = {
    "healthy.example": "everything right: SPF -all, DMARC p=reject with reports, 2048-bit DKIM,"
    " MX with an address, valid STARTTLS certificate",
    "weak.example": "DMARC p=none without reports, 1024-bit DKIM key, MX pointing at a CNAME,"
    f" certificate expiring in {EXPIRING_DAYS} days",
    "broken.example": "SPF +all with 11 DNS lookups, no DMARC record, missing DKIM key,"
    " MX host with no address, sending IP on a blacklist",
}
BLACKLIST_ZONE = "bl.lab.example"
DOMAIN_BLACKLIST_ZONE = "dbl.lab.example"
LISTED_IP = "192.0.2.99"


def _txt(value: str) -> str:
    """A TXT record's zone-file form: quoted strings of at most 255 bytes."""
    raw = value.encode()
    parts = [raw[i : i + 255].decode() for i in range(0, len(raw), 255)] or [""]
    return "TXT " + " ".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts)


def _dkim_record(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _txt(f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}")


def lab_zones() -> list[str]:
    """The lab's zone files (DKIM keys are generated afresh each time)."""
    spf_includes = " ".join(f"include:_spf{i}.broken.example" for i in range(1, 12))
    return [
        zone_text("healthy.example", [
            "@ " + _txt("v=spf1 ip4:127.0.0.1 -all"),
            "_dmarc " + _txt("v=DMARC1; p=reject; rua=mailto:dmarc-reports@healthy.example"),
            "s1._domainkey " + _dkim_record(2048),
            "@ MX 10 mail.healthy.example.",
            "mail A 127.0.0.1",
        ]),
        zone_text("weak.example", [
            "@ " + _txt("v=spf1 ip4:127.0.0.1 ~all"),
            "_dmarc " + _txt("v=DMARC1; p=none"),
            "s1._domainkey " + _dkim_record(1024),
            "@ MX 10 mx.weak.example.",
            "mx CNAME mail.weak.example.",
            "mail A 127.0.0.1",
        ]),
        zone_text("broken.example", [
            "@ " + _txt(f"v=spf1 {spf_includes} +all"),
            *(f"_spf{i} " + _txt("v=spf1 -all") for i in range(1, 12)),
            "@ MX 10 mial.broken.example.",  # a typo: that host has no address
            "mail A 127.0.0.1",
        ]),
        zone_text(BLACKLIST_ZONE, [
            # RFC 5782 §5: the test entry 127.0.0.2 is listed, 127.0.0.1 is not.
            "2.0.0.127 A 127.0.0.2",
            "2.0.0.127 " + _txt("test entry"),
            ".".join(reversed(LISTED_IP.split("."))) + " A 127.0.0.2",
            ".".join(reversed(LISTED_IP.split("."))) + " "
            + _txt(f"{LISTED_IP} sent mail to a demo spam trap"),
        ]),
        zone_text(DOMAIN_BLACKLIST_ZONE, [
            "test A 127.0.1.2",
            "broken.example A 127.0.1.2",
            "broken.example " + _txt("broken.example appears in demo spam"),
        ]),
    ]  # fmt: skip


@dataclass
class Lab:
    """The running lab servers and the config that points the exporter at them."""

    workdir: Path
    dns: LabDnsServer
    smtp: dict[str, LabSmtpServer] = field(default_factory=dict)
    config_data: dict[str, Any] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yaml"

    def config(self) -> Config:
        return parse_config(self.config_data)

    async def stop(self) -> None:
        for server in self.smtp.values():
            await server.stop()
        await self.dns.stop()


def _server_tls(workdir: Path, ca: LabCA, host: str, days: float) -> ssl.SSLContext:
    issued = ca.issue(host, "127.0.0.1", days=days)
    cert, key = workdir / f"{host}.crt", workdir / f"{host}.key"
    cert.write_bytes(issued.cert_pem)
    key.write_bytes(issued.key_pem)
    key.chmod(0o600)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def start_lab(workdir: Path, *, interval: str = INTERVAL) -> Lab:
    """Start the lab servers on 127.0.0.1 and write the exporter's config into ``workdir``."""
    from exporter.probes import PROBES

    lab = Lab(workdir=workdir, dns=await LabDnsServer(lab_zones()).start())
    try:
        data: dict[str, Any] = {
            # Every server is on loopback: the lab may probe faster than real servers allow.
            "global": {"interval": interval, "timeout": TIMEOUT,
                       "nameservers": [lab.dns.address], "allow_short_intervals": True},
            "domains": [
                {"domain": "healthy.example", "dkim_selectors": ["s1"],
                 "sending_ips": ["127.0.0.1"]},
                {"domain": "weak.example", "dkim_selectors": ["s1"]},
                {"domain": "broken.example", "dkim_selectors": ["s1"],
                 "sending_ips": [LISTED_IP]},
            ],
            "blacklists": {"ip_zones": [BLACKLIST_ZONE], "domain_zones": [DOMAIN_BLACKLIST_ZONE],
                           "interval": interval},
        }  # fmt: skip
        if "tls" in PROBES:
            ca = LabCA()
            ca_file = workdir / "lab-ca.pem"
            ca_file.write_bytes(ca.cert_pem)
            targets = []
            for host, days in (("mail.healthy.example", 90.0), ("mail.weak.example", 5.0)):
                server = LabSmtpServer(host, _server_tls(workdir, ca, host, days))
                lab.smtp[host] = await server.start()
                targets.append({"target": f"{host}:{server.port}", "ca_file": str(ca_file),
                                "ehlo_name": "probe.lab.example"})  # fmt: skip
            data["tls"] = targets
        lab.config_data = data
        lab.config_path.write_text(
            "# Generated by `deliverability-exporter demo`: the lab's servers on loopback.\n"
            + yaml.safe_dump(data, sort_keys=False)
        )
        lab.config()  # fail here, not in the daemon, if the generated config were invalid
    except BaseException:
        await lab.stop()
        raise
    return lab


def _listen(address: str) -> tuple[str, int]:
    """``HOST:PORT``; an empty host (``:9866``, the global default) means 127.0.0.1 here."""
    text = address.strip()
    if text.startswith(":"):
        text = DEFAULT_HOST + text
    if text.endswith(":0"):  # any free port (split_host_port accepts only 1-65535)
        host, _ = split_host_port(text[:-2] + ":1")
        return host, 0
    return split_host_port(text, default_port=DEFAULT_PORT)


def _banner(lab: Lab, base: str, out: TextIO) -> None:
    domains = " ".join(DOMAINS)
    width = max(len(d) for d in DOMAINS)
    lines = [
        "deliverability-exporter demo: an offline lab on 127.0.0.1 (nothing leaves this machine)",
        "",
        f"  Status page  {base}/",
        f"  Metrics      {base}/metrics",
        f"  Lab DNS      {lab.dns.address}",
        f"  Config       {lab.config_path}",
        "",
        "Sample domains:",
        *(f"  {d:<{width}}  {what}" for d, what in DOMAINS.items()),
    ]
    if lab.smtp:
        lines.append("TLS targets (SMTP with STARTTLS):")
        lines.extend(f"  {h}:{s.port}" for h, s in lab.smtp.items())
    lines += [
        "",
        "Diagnose from another terminal (every probe of the lab's config, or domains alone):",
        f"  deliverability-exporter check --config.file {lab.config_path}",
        f"  deliverability-exporter check --nameserver {lab.dns.address} {domains}",
        "",
        "The first results appear within a few seconds. Ctrl-C stops the lab.",
    ]
    out.write("\n".join(lines) + "\n")
    out.flush()


async def run_demo(
    listen: str,
    *,
    out: TextIO = sys.stdout,
    stop_after: Callable[[], bool] | None = None,
) -> int:
    """Run the lab and the exporter until SIGINT/SIGTERM; returns the exit code."""
    from exporter.daemon import Exporter

    try:
        host, port = _listen(listen)
    except ValueError as exc:
        print(f"--web.listen-address: {exc}", file=sys.stderr)
        return 1
    try:
        # $TMPDIR first, then /tmp, /var/tmp, /usr/tmp and the working directory (tempfile's
        # order). On a read-only root none may be writable: say what to do instead of a traceback.
        workdir = tempfile.TemporaryDirectory(prefix="deliverability-demo-")
    except OSError as exc:
        print(
            f"demo: no writable temporary directory ({exc.strerror or exc}): set TMPDIR to a"
            " writable directory, or mount a tmpfs on /tmp (docker run --read-only --tmpfs /tmp)",
            file=sys.stderr,
        )
        return 1
    with workdir as tmp:
        lab = await start_lab(Path(tmp))
        exporter = Exporter(config_path=lab.config_path, config=lab.config(), lifecycle=True)
        runner = web.AppRunner(exporter.make_app(), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            try:
                await site.start()
            except OSError as exc:
                print(f"cannot serve on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
                return 1
            bound = runner.addresses[0][1]
            shown = f"[{host}]" if ":" in host else host
            _banner(lab, f"http://{shown}:{bound}", out)
            exporter.start()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            loop.add_signal_handler(signal.SIGHUP, exporter.reload)
            while not stop.is_set():
                if stop_after is not None and stop_after():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
        finally:
            exporter.stop()
            await runner.cleanup()
            await lab.stop()
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--web.listen-address",
        dest="demo_listen",
        default=None,
        metavar="HOST:PORT",
        help=f"where to serve (default {DEFAULT_HOST}:{DEFAULT_PORT}; port 0 picks a free one)",
    )


def run(args: argparse.Namespace) -> int:
    """The ``demo`` command: ``--web.listen-address`` is honoured (default 127.0.0.1:9866)."""
    listen = args.demo_listen or getattr(args, "listen", None) or f":{DEFAULT_PORT}"
    # A client that drops a TLS connection without close_notify makes asyncio warn about its own
    # eof_received(); harmless, and only noise in a demo's console.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    try:
        return asyncio.run(run_demo(listen))
    except KeyboardInterrupt:
        return 0
