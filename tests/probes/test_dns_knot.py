"""The dns probe against knot, a real authoritative server (Debian package ``knot``)."""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from exporter.config import parse_config
from exporter.net.dnsclient import make_resolver
from exporter.probes import PROBES
from exporter.runner import Runtime, run_probe

ZONE_TEMPLATE = """\
$ORIGIN knot.test.
$TTL 300
@       SOA ns.knot.test. hostmaster.knot.test. 1 3600 600 86400 300
@       NS  ns
ns      A   127.0.0.1
@       TXT "v=spf1 ip4:192.0.2.0/24 -all"
@       MX  10 mx
@       MX  20 alias
mx      A   192.0.2.25
alias   CNAME mx
_dmarc  TXT "v=DMARC1; p=none"
s1._domainkey TXT ( {dkim} )
"""


def _dkim_record() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    text = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    # Split into several character-strings, as zone files must for anything over 255 bytes.
    return " ".join(f'"{text[i : i + 200]}"' for i in range(0, len(text), 200))


ZONE = ZONE_TEMPLATE.replace("{dkim}", _dkim_record())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def knot(tmp_path: Path) -> Iterator[int]:
    knotd = shutil.which("knotd") or "/usr/sbin/knotd"
    assert Path(knotd).exists(), "knotd (Debian package knot) is required; .ci/run installs it"
    port = free_port()
    for sub in ("run", "db", "zones"):
        (tmp_path / sub).mkdir()
    (tmp_path / "zones" / "knot.test.zone").write_text(ZONE)
    conf = tmp_path / "knot.conf"
    # knot's config is YAML-like but accepts only block style.
    conf.write_text(
        "server:\n"
        f'    rundir: "{tmp_path}/run"\n'
        f"    listen: 127.0.0.1@{port}\n"
        "log:\n  - target: stderr\n    any: info\n"
        f'database:\n    storage: "{tmp_path}/db"\n'
        f'template:\n  - id: default\n    storage: "{tmp_path}/zones"\n    file: "%s.zone"\n'
        "zone:\n  - domain: knot.test\n"
    )
    proc = subprocess.Popen(
        [knotd, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.02)
        else:
            raise AssertionError("knotd did not start")
        time.sleep(0.2)  # zone load
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def test_dns_probe_against_knot(knot: int) -> None:
    ns = f"127.0.0.1:{knot}"
    config = parse_config(
        {"global": {"nameservers": [ns]},
         "domains": [{"domain": "knot.test", "dkim_selectors": ["s1", "s2"]}]}
    )  # fmt: skip
    deps = Runtime(make_resolver(config.global_.nameservers), config)
    (target,) = PROBES["dns"].targets(config)
    rec = await run_probe(PROBES["dns"], target, deps)
    assert rec.success, rec.result.error
    found = {(f.code, f.subject) for f in rec.result.findings}
    assert ("dmarc_policy_none", "") in found
    assert ("dmarc_no_rua", "") in found
    assert ("mx_host_is_cname", "alias.knot.test") in found
    assert ("dkim_key_missing", "s2") in found
    samples = {(s.metric, s.labels): s.value for s in rec.result.samples}
    # The key split over several character-strings is joined before it is decoded.
    assert not [f for f in rec.result.findings if f.subject == "s1"]
    assert samples[("dkim_key_bits", (("domain", "knot.test"), ("selector", "s1")))] == 2048
    assert samples[("mx_records", (("domain", "knot.test"),))] == 2
    assert samples[("spf_records", (("domain", "knot.test"),))] == 1
