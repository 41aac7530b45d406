"""Secrets never leave the process: every probe runs with known secrets, and the logs (debug
level, logfmt and JSON), ``/metrics``, the status page and every target page, and the ``check``
output (text and JSON) are searched for them, whole and in the encodings a protocol would carry
them in (base64 of SMTP/IMAP AUTH PLAIN, of the password alone).

Real servers on loopback: a DNS server, an aiosmtpd server with STARTTLS and AUTH that refuses
the credentials (so the tls probe sends them, and its error carries the server's reply), an IMAP
server that refuses the login (the round trip sends the password and fails), and an SES endpoint
that does not exist (boto3 signs with the secret key and fails). The exporter runs as a separate
process, as in production.
"""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from dnsserver import DnsServer
from faults.mailfault import ThreadedFaultServer, imap_reject_login, refused_port
from servers.mail import free_port

from exporter.lab.redis import LabRedis

SMTP_USER = "probe@example.test"
SMTP_PASSWORD = "smtp-Pa55-SECRET-7f3a"
TLS_PASSWORD = "tls-auth-Pa55-SECRET-91c2"
IMAP_PASSWORD = "imap-Pa55-SECRET-c0de"
AWS_ACCESS_KEY = "AKIASECRETSTEST00042"
AWS_SECRET_KEY = "aws/Secret+Key/SECRET-4b1d000000000000000000"
AWS_SESSION_TOKEN = "FwoGZXIvYXdzSECRETSESSIONTOKEN0123456789abcdef"
REDIS_PASSWORD = "redis-Pa55-SECRET-5e7d"
REPORTS_PASSWORD = "reports-Pa55-SECRET-5e7a"


def forms(secret: str, user: str = SMTP_USER) -> list[str]:
    """The secret and the encodings it travels in."""
    plain = base64.b64encode(f"\0{user}\0{secret}".encode()).decode()
    alone = base64.b64encode(secret.encode()).decode()
    return [secret, plain, alone, urllib.parse.quote(secret, safe="")]


SECRETS = [
    *forms(SMTP_PASSWORD),
    *forms(TLS_PASSWORD),
    *forms(IMAP_PASSWORD, "inbox@example.test"),
    *forms(REDIS_PASSWORD, "default"),
    *forms(REPORTS_PASSWORD, "dmarc@example.test"),
    AWS_SECRET_KEY,
    AWS_SESSION_TOKEN,
]


class _Refuse:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def _refuse_auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    return AuthResult(success=False, handled=False)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("secrets")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "mail.example.test")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    smtp_port = free_port()
    smtp = Controller(
        _Refuse(), hostname="127.0.0.1", port=smtp_port, tls_context=ctx, require_starttls=True,
        authenticator=_refuse_auth, auth_require_tls=True, ready_timeout=5,
    )  # fmt: skip
    smtp.start()
    imap = ThreadedFaultServer(imap_reject_login).start()
    dns = DnsServer()
    dns.add_txt("example.test", "v=spf1 ip4:192.0.2.0/24 -all")
    dns.add("mail.example.test", "A", "127.0.0.1")
    dns.start()
    # A Redis that wants another password: the queue probe sends its own and is refused.
    redis_server = LabRedis(password="the-right-one").start()
    try:
        yield {"smtp": smtp_port, "imap": imap.port, "dns": dns, "ca": ca_file, "tmp": tmp,
               "redis": redis_server.url}  # fmt: skip
    finally:
        redis_server.stop()
        dns.stop()
        imap.stop()
        smtp.stop()


def write_config(s: dict[str, Any]) -> Path:
    tmp: Path = s["tmp"]
    (tmp / "imap-password").write_text(IMAP_PASSWORD + "\n")
    config = {
        "global": {"nameservers": [s["dns"].address], "timeout": "5s", "interval": "1h"},
        "domains": [{"domain": "example.test", "sending_ips": ["192.0.2.10"]}],
        "blacklists": {"ip_zones": ["bl.example.test"], "domain_zones": []},
        "tls": [
            {"target": f"127.0.0.1:{s['smtp']}", "starttls": True, "ca_file": str(s["ca"]),
             "username": SMTP_USER, "password_env": "TLS_PASSWORD"},
        ],
        "ses": [{"region": "us-east-1", "endpoint_url": f"http://127.0.0.1:{refused_port()}",
                 "cloudwatch_endpoint_url": f"http://127.0.0.1:{refused_port()}",
                 "max_attempts": 1}],
        "roundtrip": [
            {"name": "rt", "from": SMTP_USER, "to": "inbox@example.test", "timeout": "5s",
             "smtp": {"host": "mail.example.test", "port": s["smtp"], "security": "starttls",
                      "username": SMTP_USER, "password_env": "SMTP_PASSWORD",
                      "ca_file": str(s["ca"])},
             "imap": {"host": "127.0.0.1", "port": s["imap"], "security": "none",
                      "username": "inbox@example.test",
                      "password_file": str(tmp / "imap-password")}},
        ],
        "queues": [{"name": "app-mail", "kind": "rq", "redis_url": s["redis"],
                    "password_env": "REDIS_PASSWORD"}],
        "reports": [
            {"name": "rua", "imap": {"host": "127.0.0.1", "port": s["imap"], "security": "none",
                                     "username": "dmarc@example.test",
                                     "password_env": "REPORTS_PASSWORD"}},
        ],
    }  # fmt: skip
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    out.update(
        SMTP_PASSWORD=SMTP_PASSWORD,
        TLS_PASSWORD=TLS_PASSWORD,
        REDIS_PASSWORD=REDIS_PASSWORD,
        REPORTS_PASSWORD=REPORTS_PASSWORD,
        AWS_ACCESS_KEY_ID=AWS_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=AWS_SECRET_KEY,
        AWS_SESSION_TOKEN=AWS_SESSION_TOKEN,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
    )
    return out


def assert_clean(where: str, text: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert leaked == [], f"{where} contains a secret: {leaked}"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_check_output_has_no_secret(servers: dict[str, Any], fmt: str) -> None:
    path = write_config(servers)
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "--log.level", "debug", "check",
         "--config.file", str(path), "--format", fmt, "--verbose"],
        capture_output=True, text=True, timeout=120, env=env(),
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    # Every probe ran and the secret-bearing ones failed in the expected, informative way.
    for needle in ("tls", "roundtrip", "ses", "imap", "app-mail"):
        assert needle in out.lower()
    assert "535" in out and "AUTHENTICATIONFAILED" in out  # both logins were tried and refused
    assert "invalid username-password pair" in out  # and Redis refused the queue probe's
    assert_clean(f"check --format {fmt}", out)


@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_daemon_logs_metrics_and_pages_have_no_secret(
    servers: dict[str, Any], log_format: str
) -> None:
    path = write_config(servers)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--config.file", str(path), "--web.listen-address",
         f"127.0.0.1:{port}", "--log.level", "debug", "--log.format", log_format,
         "--storage.path", str(path.parent / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        metrics = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                metrics = _get(base + "/metrics")
                ran = [p for p in ("tls", "ses", "roundtrip", "dns", "dnsbl", "queue")
                       if f'deliverability_probe_success{{probe="{p}"' in metrics]  # fmt: skip
                if len(ran) == 6:
                    break
            time.sleep(0.2)
        else:
            pytest.fail(f"not every probe ran within 60 s:\n{metrics}")
        pages = {"/": _get(base + "/")}
        for probe, target in (("tls", f"127.0.0.1:{servers['smtp']}"), ("roundtrip", "rt"),
                              ("ses", "us-east-1"), ("queue", "app-mail")):  # fmt: skip
            q = urllib.parse.urlencode({"probe": probe, "name": target})
            pages[f"/target?{q}"] = _get(f"{base}/target?{q}")
        reload = urllib.request.Request(base + "/-/reload", method="POST")
        with urllib.request.urlopen(reload, timeout=10) as resp:
            pages["/-/reload"] = resp.read().decode()
    finally:
        proc.terminate()
        logs, _ = proc.communicate(timeout=20)
    assert 'probe="tls"' in metrics and "probe failed" in logs
    assert_clean("/metrics", metrics)
    for where, page in pages.items():
        assert_clean(where, page)
    assert_clean(f"logs ({log_format})", logs)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())
