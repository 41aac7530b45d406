"""The RFC 7208 conformance suite (openspf.org, 2014.04) against a real loopback DNS server.

Each scenario's ``zonedata`` is served by :class:`dnsserver.DnsServer` over UDP/TCP; each test
runs :func:`exporter.spf.evaluate.check_host` through the real resolver path
(:class:`~exporter.net.dnsclient.DnsClient`). Zone-data conventions of the suite:

* ``SPF`` entries are served as TXT too, unless the name has ``TXT`` entries of its own;
* ``TXT: NONE`` only suppresses that duplication;
* ``TIMEOUT`` makes the name never answer the types it holds no records of;
* ``result`` may be a list of acceptable results; ``explanation`` is compared exactly, with the
  default explanation set to ``DEFAULT`` as the suite expects.

The suite file lives in ``../shared/conformance`` beside the repository and is not copied here.
A missing file fails the tests (never a silent skip).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dns.name
import pytest
import yaml
from dnsserver import DnsServer

from exporter.net.dnsclient import DnsClient, make_resolver
from exporter.spf.evaluate import check_host

SUITE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "rfc7208-tests.yml"
LIFETIME = 0.4  # seconds a TIMEOUT name is waited for


def _load() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    if not SUITE.exists():
        return []  # test_suite_is_complete fails with the path
    cases = []
    with SUITE.open("rb") as fh:
        for scenario in yaml.safe_load_all(fh):
            for name, test in scenario["tests"].items():
                cases.append((name, test, scenario["zonedata"]))
    return cases


CASES = _load()


def _name(text: str) -> str:
    return dns.name.from_text(text).to_text()


def _txt(value: Any) -> str:
    strings = value if isinstance(value, list) else [value]
    if not strings:
        strings = [""]
    out = []
    for s in strings:
        raw = s.encode("latin-1") if all(ord(c) < 256 for c in s) else s.encode()
        chars = []
        for b in raw:
            if b in (0x22, 0x5C):
                chars.append("\\" + chr(b))
            elif 0x20 <= b < 0x7F:
                chars.append(chr(b))
            else:
                chars.append(f"\\{b:03d}")
        out.append('"' + "".join(chars) + '"')
    return " ".join(out)


def _absolute(host: str) -> str:
    return "." if not host else host if host.endswith(".") else host + "."


def serve(server: DnsServer, zonedata: dict[str, list[Any]]) -> None:
    for owner, entries in zonedata.items():
        name = _name(owner)
        records: list[tuple[str, str]] = []
        has_txt = any(isinstance(e, dict) and "TXT" in e for e in entries)
        for entry in entries:
            if entry == "TIMEOUT":
                server.timeout_other_types.add(name.rstrip(".").lower())
                continue
            ((rtype, value),) = entry.items()
            if value == "NONE":
                continue
            if rtype in ("SPF", "TXT"):
                records.append((rtype, _txt(value)))
                if rtype == "SPF" and not has_txt:
                    records.append(("TXT", _txt(value)))
            elif rtype == "MX":
                records.append(("MX", f"{value[0]} {_absolute(value[1])}"))
            elif rtype in ("PTR", "CNAME"):
                records.append((rtype, _absolute(value)))
            else:
                records.append((rtype, str(value)))
        server.set_records(name, records)


@pytest.mark.parametrize(("name", "test", "zonedata"), CASES, ids=[c[0] for c in CASES])
async def test_rfc7208(name: str, test: dict[str, Any], zonedata: dict[str, Any]) -> None:
    with DnsServer(shuffle=False) as server:  # PTR order matters to ptr-limit's preference
        serve(server, zonedata)
        resolver = make_resolver([server.address], attempt_timeout=LIFETIME, lifetime=LIFETIME)
        result = await check_host(
            DnsClient(resolver),
            test["host"],
            test["mailfrom"],
            test["helo"],
            default_explanation="DEFAULT",
        )
    expected = test["result"] if isinstance(test["result"], list) else [test["result"]]
    trail = "\n".join(result.trail)
    assert result.result in expected, f"{name} ({test.get('spec')}): got {result.result}\n{trail}"
    if "explanation" in test:
        assert result.explanation == test["explanation"], trail


def test_suite_is_complete() -> None:
    """The suite in use is the full 203-test file (a missing or truncated copy would otherwise
    pass silently)."""
    assert SUITE.exists(), f"RFC 7208 suite not found at {SUITE}"
    assert len(CASES) == 203
