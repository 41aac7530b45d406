"""Secrets never leave the process: every probe runs with known secrets, and the logs (debug
level, logfmt and JSON), ``/metrics``, the status page and every target page, the reload answer
and the ``check`` output (text and JSON) are searched for them, whole and in the encodings a
protocol would carry them in (base64 of SMTP/IMAP AUTH PLAIN, of the password alone, URL and form
encoding), and for AWS credential material.

Real servers on loopback, hostile where a server can be: a DNS server; an aiosmtpd server with
STARTTLS and AUTH that refuses the credentials with a ``535`` repeating the AUTH PLAIN line, the
user and the password (the tls probe and the round trip send them); an IMAP server that answers
the login with a ``NO`` repeating the command line and the credentials; an SES endpoint that
answers every call ``403`` with a plain-text body echoing the request's headers (Authorization,
X-Amz-Security-Token) and body; and a round trip whose ``password_file`` is not UTF-8 (its error
once showed a byte of the secret and its position). The exporter runs as a separate process, as
in production; redaction is in one place (exporter/redact.py, applied by the runner and the log
formatters), so every path is covered whatever the probe.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from dnsserver import DnsServer
from faults.mailfault import ThreadedFaultServer, refused_port
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
BAD_FILE_SECRET = b"bad-file-SECRET-\xe9\xff-pw"
"""A password_file that is not UTF-8."""


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
    *forms(AWS_SECRET_KEY),
    *forms(AWS_SESSION_TOKEN),
    AWS_ACCESS_KEY,
    "bad-file-SECRET-",
    base64.b64encode(BAD_FILE_SECRET).decode(),
    "0xe9",  # the byte of the bad file's secret an exception used to quote
    "position 16",
    "AWS4-HMAC-SHA256 Credential=AKIA",
]


class _Refuse:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def _refuse_auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    """Refuse, repeating what the client sent (as some servers log-and-echo)."""
    login, password = data.login.decode(), data.password.decode()
    plain = base64.b64encode(f"\0{login}\0{password}".encode()).decode()
    alone = base64.b64encode(password.encode()).decode()
    return AuthResult(
        success=False,
        handled=False,
        message=f"535 5.7.8 AUTH {mechanism} {plain} refused for {login} ({password}, {alone})",
    )


async def imap_echo_login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """IMAP that answers AUTHENTICATE/LOGIN with a NO repeating the command and credentials."""
    writer.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] echo server ready\r\n")
    await writer.drain()
    while line := await reader.readline():
        tag, _, rest = line.strip().partition(b" ")
        command = rest.split(b" ", 1)[0].upper()
        if command == b"CAPABILITY":
            writer.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
        elif command == b"AUTHENTICATE":
            token = rest.split(b" ")[2] if len(rest.split(b" ")) > 2 else b""
            if not token:
                writer.write(b"+ \r\n")
                await writer.drain()
                token = (await reader.readline()).strip()
            decoded = base64.b64decode(token).replace(b"\0", b" ")
            writer.write(tag + b" NO [AUTHENTICATIONFAILED] " + rest + b" " + token + b" ("
                         + decoded + b")\r\n")  # fmt: skip
        elif command == b"LOGOUT":
            writer.write(b"* BYE\r\n" + tag + b" OK done\r\n")
        else:
            writer.write(tag + b" NO [AUTHENTICATIONFAILED] " + rest + b"\r\n")
        await writer.drain()


class _EchoHeaders(BaseHTTPRequestHandler):
    """An "AWS endpoint" that answers 403 in plain text, echoing the request (headers, body)."""

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        text = "".join(f"{k}: {v}\n" for k, v in self.headers.items()).encode() + body
        self.send_response(403)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    do_GET = do_POST = _echo

    def log_message(self, format: str, *args: Any) -> None:
        pass


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
    imap = ThreadedFaultServer(imap_echo_login).start()
    aws = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHeaders)
    threading.Thread(target=aws.serve_forever, daemon=True).start()
    dns = DnsServer()
    dns.add_txt("example.test", "v=spf1 ip4:192.0.2.0/24 -all")
    dns.add("mail.example.test", "A", "127.0.0.1")
    dns.start()
    # A Redis that wants another password: the queue probe sends its own and is refused.
    redis_server = LabRedis(password="the-right-one").start()
    try:
        yield {"smtp": smtp_port, "imap": imap.port, "dns": dns, "ca": ca_file, "tmp": tmp,
               "redis": redis_server.url, "aws": aws.server_address[1]}  # fmt: skip
    finally:
        redis_server.stop()
        aws.shutdown()
        aws.server_close()
        dns.stop()
        imap.stop()
        smtp.stop()


def roundtrip(s: dict[str, Any], name: str, imap_password_file: Path) -> dict[str, Any]:
    return {
        "name": name, "from": SMTP_USER, "to": "inbox@example.test", "timeout": "5s",
        "smtp": {"host": "mail.example.test", "port": s["smtp"], "security": "starttls",
                 "username": SMTP_USER, "password_env": "SMTP_PASSWORD", "ca_file": str(s["ca"])},
        "imap": {"host": "127.0.0.1", "port": s["imap"], "security": "none",
                 "username": "inbox@example.test", "password_file": str(imap_password_file)},
    }  # fmt: skip


def write_config(s: dict[str, Any]) -> Path:
    tmp: Path = s["tmp"]
    (tmp / "imap-password").write_text(IMAP_PASSWORD + "\n")
    (tmp / "bad-password").write_bytes(BAD_FILE_SECRET + b"\n")
    config = {
        "global": {"nameservers": [s["dns"].address], "timeout": "5s", "interval": "1h"},
        "domains": [{"domain": "example.test", "sending_ips": ["192.0.2.10"]}],
        "blacklists": {"ip_zones": ["bl.example.test"], "domain_zones": []},
        "tls": [
            {"target": f"127.0.0.1:{s['smtp']}", "starttls": True, "ca_file": str(s["ca"]),
             "username": SMTP_USER, "password_env": "TLS_PASSWORD"},
        ],
        "ses": [{"region": "us-east-1", "endpoint_url": f"http://127.0.0.1:{s['aws']}",
                 "max_attempts": 1},
                {"region": "eu-west-1", "endpoint_url": f"http://127.0.0.1:{refused_port()}",
                 "max_attempts": 1}],
        "roundtrip": [roundtrip(s, "rt", tmp / "imap-password"),
                      roundtrip(s, "rt-bad-file", tmp / "bad-password")],
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
    assert "AUTH PLAIN [redacted] refused" in out  # the echo did arrive, without the secret
    assert "GetSendQuota: the endpoint's answer is not an AWS API response" in out  # SES echo
    assert "is not UTF-8 text" in out
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
         "--storage.path", str(path.parent / "data"), "--web.enable-lifecycle"],
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
                              ("roundtrip", "rt-bad-file"), ("ses", "us-east-1"),
                              ("ses", "eu-west-1"), ("queue", "app-mail")):  # fmt: skip
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
