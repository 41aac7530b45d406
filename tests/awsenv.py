"""An AWS environment that never leaves loopback: dummy credentials, no profile, no metadata.

Tests that talk to moto call :func:`isolate_aws` (usually from an autouse fixture): the standard
credential chain then finds the dummy environment credentials and nothing else (no profile, no
web identity, no container or instance metadata lookup, config files in an empty directory).
"""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REGION = "us-east-1"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKENxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
SECRETS = (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)

_CHAIN = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
          "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
          "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SES", "AWS_ENDPOINT_URL_SESV2",
          "AWS_ENDPOINT_URL_CLOUDWATCH", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_SQS",
          "AWS_ENDPOINT_URL_SNS", "AWS_SECURITY_TOKEN")  # fmt: skip


def isolate_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in _CHAIN:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))


def closed_port_url() -> str:
    """An http URL on loopback where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on 127.0.0.1 (free port) for the block; its URL."""
    from moto.server import ThreadedMotoServer  # moto loads slowly: only where it is needed

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def reset_moto(url: str) -> None:
    """Forget every queue, topic and message moto holds."""
    req = urllib.request.Request(url + "/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
