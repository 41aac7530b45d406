"""The ``spf`` subcommand against a loopback DNS server (in-process and as a real process)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
from dnsserver import DnsServer

from exporter.spf import command


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv))


@pytest.fixture
def served(dns_server: DnsServer) -> DnsServer:
    dns_server.add_txt("example.test", "v=spf1 include:_spf.esp.test -all exp=why.example.test")
    dns_server.add_txt("_spf.esp.test", "v=spf1 ip4:192.0.2.0/24 ~all")
    dns_server.add_txt("why.example.test", "%{i} is not a sender of %{d}")
    return dns_server


def test_json_pass(served: DnsServer, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["192.0.2.8", "a@example.test", "--nameserver", served.address, "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["result"] == "pass" and data["lookups"] == 1
    assert any("_spf.esp.test" in line for line in data["trail"])


def test_text_fail_with_explanation(served: DnsServer, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(
        ["198.51.100.1", "a@example.test", "--helo", "mx.test", "--nameserver", served.address]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "result: fail" in out
    assert "explanation: 198.51.100.1 is not a sender of example.test" in out
    assert "DNS lookups (RFC 7208 §4.6.4): 1 of 10" in out


def test_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["not-an-ip", "a@example.test"]) == 2
    assert run(["192.0.2.1", "a@example.test", "--nameserver", "dns.example"]) == 2
    assert "not an IP" in capsys.readouterr().err


def test_console_script(served: DnsServer) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "spf", "192.0.2.8", "example.test",
         "--nameserver", served.address, "--format", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["result"] == "pass"
