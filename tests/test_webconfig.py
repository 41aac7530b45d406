"""--web.config.file: TLS (with optional client certificates) and bcrypt basic auth on every
endpoint, exercised with real TLS clients against the real process."""

from __future__ import annotations

import base64
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import trustme

from exporter.webconfig import WebConfigError, load_web_config

HASH = bcrypt.hashpw(b"correct horse", bcrypt.gensalt(rounds=4)).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def start(tmp_path: Path, web_config: str) -> tuple[subprocess.Popen[str], int]:
    (tmp_path / "config.yaml").write_text("{}\n")
    (tmp_path / "web.yaml").write_text(web_config)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--config.file", str(tmp_path / "config.yaml"),
         "--web.config.file", str(tmp_path / "web.yaml"),
         "--web.listen-address", f"127.0.0.1:{port}", "--storage.path", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        if proc.poll() is not None:
            raise AssertionError(proc.communicate()[1])
        time.sleep(0.05)
    raise AssertionError("exporter did not listen")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        p.send_signal(signal.SIGTERM)
        p.wait(10)


def get(url: str, *, ctx: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None) -> int:
    req = urllib.request.Request(url)
    if auth:
        req.add_header(
            "Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_tls_and_basic_auth_on_every_endpoint(tmp_path: Path, ca: trustme.CA, procs: list) -> None:  # type: ignore[type-arg]
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    proc, port = start(
        tmp_path,
        f"tls_server_config:\n  cert_file: {tmp_path}/server.pem\n"
        f"  key_file: {tmp_path}/server.pem\n"
        f"basic_auth_users:\n  prometheus: '{HASH}'\n",
    )
    procs.append(proc)
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    base = f"https://127.0.0.1:{port}"
    for path in ("/metrics", "/", "/-/healthy", "/-/ready"):
        assert get(base + path, ctx=ctx) == 401
        assert get(base + path, ctx=ctx, auth=("prometheus", "wrong")) == 401
        assert get(base + path, ctx=ctx, auth=("nobody", "correct horse")) == 401
        assert get(base + path, ctx=ctx, auth=("prometheus", "correct horse")) == 200
    # Plain HTTP on the TLS port is refused.
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
    # A client that does not trust the CA fails the handshake.
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(base + "/metrics", context=ssl.create_default_context(), timeout=5)


def test_client_certificates_required(tmp_path: Path, ca: trustme.CA, procs: list) -> None:  # type: ignore[type-arg]
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    proc, port = start(
        tmp_path,
        f"tls_server_config:\n  cert_file: {tmp_path}/server.pem\n"
        f"  key_file: {tmp_path}/server.pem\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {tmp_path}/ca.pem\n",
    )
    procs.append(proc)
    base = f"https://127.0.0.1:{port}/metrics"
    anonymous = ssl.create_default_context()
    ca.configure_trust(anonymous)
    with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
        urllib.request.urlopen(base, context=anonymous, timeout=5).read()
    client = ssl.create_default_context()
    ca.configure_trust(client)
    ca.issue_cert("client.example").configure_cert(client)
    assert get(base, ctx=client) == 200


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("basic_auth_users:\n  a: plaintext\n", "basic_auth_users.a: not a bcrypt hash"),
        (
            "tls_server_config:\n  cert_file: /nonexistent\n  key_file: /nonexistent\n",
            "tls_server_config",
        ),
        ("tls_server_config:\n  cert_file: x\n", "tls_server_config.key_file: Field required"),
        ("unknown: 1\n", "unknown: unknown key"),
        # Malformed bcrypt hashes: each would lock every client out.
        ("basic_auth_users:\n  a: '$2b$12$short'\n", r"basic_auth_users\.a: not a bcrypt hash"),
        (
            f"basic_auth_users:\n  a: '{HASH[:28]}/{HASH[29:]}'\n",
            r"basic_auth_users\.a: not a bcrypt hash \(its salt does not decode\)",
        ),
        (
            f"basic_auth_users:\n  a: '$2b$99${HASH[7:]}'\n",
            r"basic_auth_users\.a: bcrypt cost 99 is outside 4-16",
        ),
        (
            f"basic_auth_users:\n  a: '$2b$03${HASH[7:]}'\n",
            r"basic_auth_users\.a: bcrypt cost 3 is outside 4-16",
        ),
        # Client certificates without a CA to verify them against.
        *[
            (
                f"tls_server_config:\n  cert_file: x\n  key_file: x\n  client_auth_type: {t}\n",
                rf"tls_server_config\.client_ca_file: required with client_auth_type {t}",
            )
            for t in (
                "RequireAndVerifyClientCert",
                "VerifyClientCertIfGiven",
                "RequireAnyClientCert",
                "RequestClientCert",
            )
        ],
        (
            "basic_auth_users:\n  a: x\nbasic_auth_users:\n  b: y\n",
            "line 3, column 1: invalid YAML: duplicate key 'basic_auth_users'",
        ),
        (
            "basic_auth_users:\n  a: x\n  a: y\n",
            "line 3, column 3: invalid YAML: duplicate key 'a'",
        ),
        ("{}\n# \xe9\n", None),
    ],
)
def test_bad_web_config(tmp_path: Path, text: str, message: str | None) -> None:
    path = tmp_path / "web.yaml"
    if message is None:  # not UTF-8
        path.write_bytes(text.encode("latin-1"))
        message = "line 2, column 3: not UTF-8 text"
    else:
        path.write_text(text)
    with pytest.raises(WebConfigError, match=message):
        load_web_config(str(path))


def test_bad_web_config_exits_1_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("{}\n")
    (tmp_path / "w.yaml").write_text("basic_auth_users:\n  a: secretpassword\n")
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.file", str(tmp_path / "c.yaml"),
         "--web.config.file", str(tmp_path / "w.yaml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "not a bcrypt hash" in result.stderr
    assert "secretpassword" not in result.stderr
    assert "Traceback" not in result.stderr
