"""``deliverability-exporter demo``: the exporter against a self-contained offline lab.

One process, no account, no network: a loopback DNS server (:mod:`exporter.lab.dns`) serves four
sample domains — one healthy, one with the usual weaknesses, one broken, one whose DMARC policy
comes from its platform's record by the RFC 9989 tree walk — plus a demo blacklist, the reverse
zones of the sending IPs and the parent zone ``example`` (so the tree walk gets answers), all
under a DNSSEC hierarchy of its own (a root and the ``example.`` TLD signed at start by
:mod:`exporter.lab.dnssec`, whose root DS the exporter gets as its trust anchor): the healthy
domain is signed and publishes TLSA records for its mail server (DANE), the weak one is unsigned,
the broken one has a stale DS at its "registrar" (bogus);
two loopback SMTP servers (:mod:`exporter.lab.smtp`) offer STARTTLS with certificates from a
throw-away CA (:mod:`exporter.lab.certs`), one valid, one expiring in 5 days; an HTTPS server
(:mod:`exporter.lab.https`) is the three domains' MTA-STS policy hosts on port 443 of a loopback
address; a loopback ``redis-server`` (:mod:`exporter.lab.redis`, when installed: else the demo
says it runs without it) holds RQ and Celery mail queues (:mod:`exporter.lab.queues`); a
loopback IMAP server (:mod:`exporter.lab.imap`) holds a mailbox of DMARC aggregate and TLS-RPT
reports of the last day (:mod:`exporter.lab.reportmail`), counted into the demo's store. The
exporter runs against them with a generated config (written to a temporary directory, so
``POST /-/reload`` works) and serves ``/metrics`` and the status page on 127.0.0.1 until Ctrl-C.

Sections appear only for registered probes: the TLS servers start only when the ``tls`` probe is
in :data:`exporter.probes.PROBES`, the policy hosts only with the ``mta_sts`` probe (and only
where port 443 can be bound: root, ``CAP_NET_BIND_SERVICE`` or a container; otherwise the banner
says so and the demo runs without them); the blacklist config is always written but is probed
only when a ``dnsbl`` probe is registered.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
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
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from exporter.config import Config, parse_config
from exporter.lab import redis as lab_redis
from exporter.lab.certs import LabCA
from exporter.lab.dns import LabDnsServer, zone_text
from exporter.lab.dnssec import sign_hierarchy
from exporter.lab.https import LabPolicyServer, PolicyPage
from exporter.lab.imap import LabImapServer, LabMailbox
from exporter.lab.reportmail import HEALTHY_SENDER, demo_report_mail
from exporter.lab.smtp import LabSmtpServer
from exporter.net import dane
from exporter.net.addr import split_host_port

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9866
INTERVAL = "30s"
TIMEOUT = "10s"
EXPIRING_DAYS = 5

DOMAINS: dict[str, str] = {
    "healthy.example": "everything right: SPF -all, DMARC p=reject with reports, 2048-bit DKIM,"
    " MX with an address, DNSSEC-signed, valid STARTTLS certificate with DANE (TLSA rollover"
    " pair), a forward-confirmed sending IP, a"
    " return path at an ESP's SPF include: ready for Gmail, Yahoo and Microsoft; its baseline"
    " holds; MTA-STS enforce, TLS-RPT",
    "weak.example": "DMARC p=none without reports, 1024-bit DKIM key, MX pointing at a CNAME,"
    f" unsigned (TLSA records senders ignore), certificate expiring in {EXPIRING_DAYS} days;"
    " drifted from its baseline (expects"
    " p=reject or quarantine and 2048-bit keys); MTA-STS testing with a one-hour max_age"
    " that lists the CNAME's target instead of the MX, no TLS-RPT",
    "broken.example": "SPF +all with 11 DNS lookups, no DMARC record, missing DKIM key,"
    " MX host with no address, sending IP on a blacklist whose PTR does not resolve back, a"
    " stale DS (DNSSEC bogus),"
    " two MTA-STS records, policy host redirecting, TLS-RPT with an http: URI",
    "app.platform.example": "no DMARC record of its own: the platform publishes psd=y, so by"
    " the RFC 9989 tree walk app.platform.example is its own organizational domain and gets the"
    " platform's sp=quarantine, in test mode (t=y)",
}
SIGNED = {".", "example.", "healthy.example.", "broken.example."}
STALE_DS = {"broken.example."}
ROOT_ZONE = (
    "$ORIGIN .\n$TTL 300\n"
    "@ IN SOA ns.example. hostmaster.example. 1 3600 600 86400 300\n"
    "@ IN NS ns.example.\n"
)
BLACKLIST_ZONE = "bl.lab.example"
DOMAIN_BLACKLIST_ZONE = "dbl.lab.example"
LISTED_IP = "192.0.2.99"
REPORTS_USER = "dmarc-reports@healthy.example"


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


STS_ID = _txt("v=STSv1; id=20250101T000000")
POLICIES: dict[str, PolicyPage] = {
    "healthy.example": PolicyPage(
        "version: STSv1\nmode: enforce\nmx: mail.healthy.example\nmax_age: 604800\n"
    ),
    # senders match the MX name (mx.weak.example), not the CNAME's target
    "weak.example": PolicyPage(
        "version: STSv1\nmode: testing\nmx: mail.weak.example\nmax_age: 3600\n"
    ),
    "broken.example": PolicyPage(status=301, location="https://www.broken.example/mta-sts.txt"),
}
POLICY_CERT_DAYS = {"healthy.example": 90.0, "weak.example": float(EXPIRING_DAYS),
                    "broken.example": 90.0}  # fmt: skip


def lab_zones(
    policy_address: str | None = None, tlsa: dict[str, list[str]] | None = None
) -> list[str]:
    """The lab's zone files, unsigned (DKIM keys are generated afresh each time);
    ``policy_address``: where the domains' MTA-STS policy hosts (``mta-sts.<domain>``) listen;
    ``tlsa`` adds TLSA records (relative owner -> rdata texts) to the zone the owner is in."""
    spf_includes = " ".join(f"include:_spf{i}.broken.example" for i in range(1, 12))
    hosts = [f"mta-sts A {policy_address}"] if policy_address else []
    extra = tlsa or {}

    def tlsa_of(domain: str) -> list[str]:
        return [
            f"{owner.removesuffix('.' + domain)} TLSA {rdata}"
            for owner, rdatas in extra.items()
            if owner.endswith("." + domain)
            for rdata in rdatas
        ]

    return [
        ROOT_ZONE,
        zone_text("example", []),  # the TLD; the DMARC tree walk asks _dmarc.example
        zone_text("healthy.example", [
            *tlsa_of("healthy.example"),
            "@ " + _txt("v=spf1 ip4:127.0.0.1 -all"),
            "_dmarc " + _txt("v=DMARC1; p=reject; rua=mailto:dmarc-reports@healthy.example"),
            "s1._domainkey " + _dkim_record(2048),
            "@ MX 10 mail.healthy.example.",
            "mail A 127.0.0.1",
            "out A 127.0.0.1",
            "bounce " + _txt("v=spf1 include:amazonses.esp.example -all"),
            "_mta-sts " + STS_ID,
            "_smtp._tls " + _txt("v=TLSRPTv1; rua=mailto:tls-reports@healthy.example"),
            *hosts,
        ]),
        zone_text("esp.example", [
            "amazonses " + _txt("v=spf1 ip4:127.0.0.0/24 -all"),
        ]),
        zone_text("platform.example", [
            "_dmarc " + _txt("v=DMARC1; p=reject; sp=quarantine; np=reject; psd=y; t=y;"
                             " rua=mailto:dmarc@platform.example"),
            "app " + _txt("v=spf1 ip4:127.0.0.1 -all"),
            "app MX 10 mx.platform.example.",
            "mx A 127.0.0.1",
        ]),
        zone_text("0.0.127.in-addr.arpa", ["1 PTR out.healthy.example."]),
        zone_text("2.0.192.in-addr.arpa", [  # the listed IP's PTR points at another address
            LISTED_IP.rsplit(".", 1)[1] + " PTR mail.broken.example.",
        ]),
        zone_text("weak.example", [
            *tlsa_of("weak.example"),
            "@ " + _txt("v=spf1 ip4:127.0.0.1 ~all"),
            "_dmarc " + _txt("v=DMARC1; p=none"),
            "s1._domainkey " + _dkim_record(1024),
            "@ MX 10 mx.weak.example.",
            "mx CNAME mail.weak.example.",
            "mail A 127.0.0.1",
            "_mta-sts " + STS_ID,
            *hosts,
        ]),
        zone_text("broken.example", [
            "@ " + _txt(f"v=spf1 {spf_includes} +all"),
            *(f"_spf{i} " + _txt("v=spf1 -all") for i in range(1, 12)),
            "@ MX 10 mial.broken.example.",  # a typo: that host has no address
            "mail A 127.0.0.1",
            "_mta-sts " + STS_ID,
            "_mta-sts " + _txt("v=STSv1; id=20250301T000000"),  # a second record
            "_smtp._tls " + _txt("v=TLSRPTv1; rua=http://reports.broken.example/tlsrpt"),
            *hosts,
        ]),
        zone_text(BLACKLIST_ZONE, [
            # RFC 5782 §5: the test entry 127.0.0.2 is listed, 127.0.0.1 is not.
            "2.0.0.127 A 127.0.0.2",
            "2.0.0.127 " + _txt("test entry"),
            ".".join(reversed(LISTED_IP.split("."))) + " A 127.0.0.2",
            ".".join(reversed(LISTED_IP.split("."))) + " "
            + _txt(f"{LISTED_IP} sent mail to a demo spam trap"),
        ]),
        zone_text("100.51.198.in-addr.arpa", [  # PTR names of the report sources
            HEALTHY_SENDER.rsplit(".", 1)[1] + " PTR mail.healthy.example.",
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
    policy: LabPolicyServer | None = None
    policy_note: str = ""
    """Why there are no policy hosts ('' when they run, or without the mta_sts probe)."""
    redis: lab_redis.LabRedis | None = None
    notes: list[str] = field(default_factory=list)
    imap: LabImapServer | None = None
    config_data: dict[str, Any] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yaml"

    def config(self) -> Config:
        return parse_config(self.config_data)

    async def stop(self) -> None:
        for server in self.smtp.values():
            await server.stop()
        if self.policy is not None:
            await self.policy.stop()
        if self.redis is not None:
            await asyncio.to_thread(self.redis.stop)
        if self.imap is not None:
            await self.imap.stop()
        await self.dns.stop()


def _server_tls(workdir: Path, ca: LabCA, host: str, days: float) -> tuple[ssl.SSLContext, str]:
    """The server's TLS context and the TLSA rdata (3 1 1) of its key."""
    issued = ca.issue(host, "127.0.0.1", days=days)
    cert, key = workdir / f"{host}.crt", workdir / f"{host}.key"
    cert.write_bytes(issued.cert_pem)
    key.write_bytes(issued.key_pem)
    key.chmod(0o600)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    leaf = x509.load_pem_x509_certificate(issued.cert_pem)
    return ctx, f"3 1 1 {dane.association(leaf, 1, 1).hex()}"


def _next_key_tlsa() -> str:
    """A TLSA record for the key the healthy server will move to next (published ahead of the
    rollover, as DANE operators must)."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"3 1 1 {dane.digest(spki, 1).hex()}"


async def _policy_hosts(workdir: Path, ca: LabCA) -> LabPolicyServer:
    """The domains' policy hosts on port 443 of a loopback address; OSError when none binds."""
    hosts = {}
    for domain, page in POLICIES.items():
        host = f"mta-sts.{domain}"
        hosts[host] = (_server_tls(workdir, ca, host, POLICY_CERT_DAYS[domain])[0], page)
    server = LabPolicyServer(hosts)
    await server.start()
    return server


async def start_lab(workdir: Path, *, interval: str = INTERVAL) -> Lab:
    """Start the lab servers on 127.0.0.1 and write the exporter's config into ``workdir``."""
    from exporter.probes import PROBES

    ca = LabCA()
    ca_file = workdir / "lab-ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    policy: LabPolicyServer | None = None
    note = ""
    if "mta_sts" in PROBES:
        try:
            policy = await _policy_hosts(workdir, ca)
        except OSError as exc:
            note = f"not served: cannot listen on port 443 ({exc.strerror or exc})"
    lab = Lab(workdir=workdir, dns=LabDnsServer([]), policy=policy, policy_note=note)
    try:
        targets: list[dict[str, Any]] = []
        tlsa: dict[str, list[str]] = {}
        if "tls" in PROBES:
            for host, days in (("mail.healthy.example", 90.0), ("mail.weak.example", 5.0)):
                ctx, record = _server_tls(workdir, ca, host, days)
                server = LabSmtpServer(host, ctx)
                lab.smtp[host] = await server.start()
                targets.append({"target": f"{host}:{server.port}", "ca_file": str(ca_file),
                                "ehlo_name": "probe.lab.example", "dane": True})  # fmt: skip
                tlsa[f"_{server.port}._tcp.{host}"] = [record]
            tlsa[f"_{lab.smtp['mail.healthy.example'].port}._tcp.mail.healthy.example"].append(
                _next_key_tlsa()
            )
        zones = lab_zones(policy.address if policy else None, tlsa)
        signed = sign_hierarchy(zones, SIGNED, STALE_DS)
        lab.dns = await LabDnsServer(signed.zones).start()
        anchors = workdir / "root-anchors.txt"
        anchors.write_text("".join(line + "\n" for line in signed.root_ds))
        data: dict[str, Any] = {
            # Every server is on loopback: the lab may probe faster than real servers allow.
            "global": {"interval": interval, "timeout": TIMEOUT,
                       "nameservers": [lab.dns.address],
                       "dnssec_trust_anchors": str(anchors), "allow_short_intervals": True},
            "domains": [
                {"domain": "healthy.example", "dkim_selectors": ["s1"],
                 "sending_ips": ["127.0.0.1"], "return_path_domain": "bounce.healthy.example",
                 "expect": {"dmarc_policy": ["reject"], "dkim_min_bits": 2048,
                            "spf_includes": ["amazonses.esp.example"],
                            "mx": ["mail.healthy.example"]}},
                {"domain": "weak.example", "dkim_selectors": ["s1"], "sending_ips": ["127.0.0.1"],
                 "expect": {"dmarc_policy": ["reject", "quarantine"], "dkim_min_bits": 2048}},
                {"domain": "broken.example", "dkim_selectors": ["s1"],
                 "sending_ips": [LISTED_IP]},
                {"domain": "app.platform.example"},
            ],
            "blacklists": {"ip_zones": [BLACKLIST_ZONE], "domain_zones": [DOMAIN_BLACKLIST_ZONE],
                           "interval": interval},
        }  # fmt: skip
        if targets:
            data["tls"] = targets
        if policy is not None:
            data["mta_sts"] = {"interval": interval, "ca_file": str(ca_file)}
        if "queue" in PROBES:
            await _start_queues(lab, data)
        if "reports" in PROBES:
            mailbox = LabMailbox()
            for message in demo_report_mail():
                mailbox.append("INBOX", message)
            password = base64.b64encode(os.urandom(12)).decode()
            secret = workdir / "reports-password"
            secret.write_text(password + "\n")
            secret.chmod(0o600)
            lab.imap = await LabImapServer(REPORTS_USER, password, mailbox).start()
            data["reports"] = [{
                "name": "dmarc-reports", "interval": interval,
                "imap": {"host": "127.0.0.1", "port": lab.imap.port, "security": "none",
                         "username": REPORTS_USER, "password_file": str(secret)},
            }]  # fmt: skip
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


async def _start_queues(lab: Lab, data: dict[str, Any]) -> None:
    """RQ and Celery queues on a lab Redis, when ``redis-server`` is installed (a newcomer's
    machine may lack it: the demo then runs without queue targets and says so)."""
    if not lab_redis.available():
        lab.notes.append("redis-server not found: no queue targets (Debian/Ubuntu: apt-get"
                         " install redis-server)")  # fmt: skip
        return
    from exporter.lab import queues as lab_queues  # redis-py: loaded only for the demo's queues

    lab.redis = await asyncio.to_thread(lab_redis.LabRedis().start)
    await asyncio.to_thread(lab_queues.seed, lab.redis.url)
    celery_url = lab.redis.url.rsplit("/", 1)[0] + "/1"
    data["queues"] = [
        {"name": "app-mail", "kind": "rq", "redis_url": lab.redis.url, "interval": INTERVAL},
        {"name": "celery-mail", "kind": "celery", "redis_url": celery_url, "interval": INTERVAL},
    ]


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
    if lab.policy is not None:
        lines.append(f"MTA-STS policy hosts: https://mta-sts.<domain>/ on {lab.policy.address}:443")
    elif lab.policy_note:
        lines.append(f"MTA-STS policy hosts: {lab.policy_note}")
    if lab.redis is not None:
        lines.append(f"Mail queues on the lab Redis {lab.redis.url.rsplit('/', 1)[0]}:")
        lines.append("  app-mail (RQ: a healthy queue, and one with no worker and a 2-hour-old"
                     " job), celery-mail (Celery)")  # fmt: skip
    lines.extend(f"Note: {note}" for note in lab.notes)
    if lab.imap is not None:
        lines.append(f"Report mailbox (IMAP, DMARC and TLS-RPT reports): 127.0.0.1:{lab.imap.port}")
    lines += [
        "",
        "Diagnose from another terminal (every probe of the lab's config, or domains alone):",
        f"  deliverability-exporter check --config.file {lab.config_path}",
        f"  deliverability-exporter check --nameserver {lab.dns.address} --no-dnssec {domains}",
        "  (the lab's DNSSEC root is its own: checking domains alone, without the config and its"
        " trust anchor, skips DNSSEC)",
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
        from exporter.storage import Store

        lab = await start_lab(Path(tmp))
        store = await Store.open(Path(tmp) / "data")  # report counts, for the demo's lifetime
        exporter = Exporter(
            config_path=lab.config_path, config=lab.config(), store=store, lifecycle=True
        )
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
            await exporter.aclose()
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
