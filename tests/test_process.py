"""The real process: start it with a config, scrape, reload by SIGHUP and HTTP, bad reloads."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dnsserver import DnsServer
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def wait_for(predicate, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (urllib.error.URLError, ConnectionError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")


def success(m: dict, target: str) -> float | None:  # type: ignore[type-arg]
    return m.get(("deliverability_probe_success", (("probe", "dns"), ("target", target))))


@pytest.fixture
def zone() -> Iterator[DnsServer]:
    with DnsServer() as server:
        for d in ("one.test", "two.test"):
            server.add_txt(d, "v=spf1 -all")
            server.add_txt(f"_dmarc.{d}", f"v=DMARC1; p=reject; rua=mailto:d@{d}")
            server.add(d, "MX", f"10 mx.{d}.")
            server.add(f"mx.{d}", "A", "192.0.2.1")
        server.remove("_dmarc.two.test")
        yield server


@pytest.fixture
def process(tmp_path: Path, zone: DnsServer) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {
                    "interval": "1s",
                    "timeout": "5s",
                    "nameservers": [zone.address],
                    "dnssec": False,
                    "allow_short_intervals": True,
                },
                "domains": [{"domain": "one.test"}, {"domain": "two.test"}],
            }
        )
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--config.file", str(config),
         "--web.listen-address", f"127.0.0.1:{port}", "--log.format", "json",
         "--storage.path", str(config.parent / "data"), "--web.enable-lifecycle"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        yield proc, port, config
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_serve_scrape_reload(
    process: tuple[subprocess.Popen[str], int, Path], zone: DnsServer
) -> None:
    proc, port, config = process
    m = wait_for(
        lambda: (
            lambda m: (
                m
                if success(m, "two.test") is not None and success(m, "one.test") is not None
                else None
            )
        )(scrape(port))
    )
    assert m[("deliverability_build_info", (("version", "0.1.0"),))] == 1
    assert m[("deliverability_config_last_reload_successful", ())] == 1
    assert success(m, "one.test") == 1
    assert m[("deliverability_dmarc_valid", (("domain", "one.test"),))] == 1
    assert m[("deliverability_dmarc_valid", (("domain", "two.test"),))] == 0
    assert (
        m[
            (
                "deliverability_finding",
                (
                    ("code", "dmarc_missing"),
                    ("probe", "dns"),
                    ("severity", "critical"),
                    ("target", "two.test"),
                ),
            )
        ]
        == 1
    )
    for path in ("/-/healthy", "/-/ready", "/"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            assert resp.status == 200

    # The probes keep running on their schedule (interval 1s): last-run timestamps advance.
    first = m[
        (
            "deliverability_probe_last_run_timestamp_seconds",
            (("probe", "dns"), ("target", "one.test")),
        )
    ]
    wait_for(
        lambda: (
            scrape(port)[
                (
                    "deliverability_probe_last_run_timestamp_seconds",
                    (("probe", "dns"), ("target", "one.test")),
                )
            ]
            > first
        )
    )

    # SIGHUP with one domain removed: its series disappear.
    config.write_text(
        yaml.safe_dump(
            {
                "global": {
                    "interval": "1s",
                    "nameservers": [zone.address],
                    "dnssec": False,
                    "allow_short_intervals": True,
                },
                "domains": [{"domain": "one.test"}],
            }
        )
    )
    proc.send_signal(signal.SIGHUP)
    m = wait_for(lambda: (lambda m: m if success(m, "two.test") is None else None)(scrape(port)))
    assert not [k for k in m if ("domain", "two.test") in k[1] or ("target", "two.test") in k[1]]
    assert success(m, "one.test") == 1
    assert m[("deliverability_config_last_reload_successful", ())] == 1

    # An invalid config: the old one keeps running, the reload metric drops to 0.
    config.write_text("domains:\n  - domain: three.test\n    selectors: [x]\n")
    proc.send_signal(signal.SIGHUP)
    m = wait_for(
        lambda: (
            lambda m: m if m[("deliverability_config_last_reload_successful", ())] == 0 else None
        )(scrape(port))
    )
    assert success(m, "one.test") == 1
    assert success(m, "three.test") is None

    # POST /-/reload with the invalid config reports the problem.
    req = urllib.request.Request(f"http://127.0.0.1:{port}/-/reload", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert info.value.code == 500
    assert "domains[0].selectors: unknown key" in info.value.read().decode()

    # A fixed config via POST: accepted, the new domain appears.
    config.write_text(
        yaml.safe_dump(
            {
                "global": {
                    "interval": "1s",
                    "nameservers": [zone.address],
                    "dnssec": False,
                    "allow_short_intervals": True,
                },
                "domains": [{"domain": "one.test"}, {"domain": "two.test"}],
            }
        )
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
    m = wait_for(
        lambda: (lambda m: m if success(m, "two.test") is not None else None)(scrape(port))
    )
    assert m[("deliverability_config_last_reload_successful", ())] == 1
    assert proc.poll() is None


def test_promtool_check_metrics(process: tuple[subprocess.Popen[str], int, Path]) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required; .ci/run installs it"
    _, port, _ = process
    wait_for(lambda: success(scrape(port), "two.test") is not None)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).strip() == b""


def test_bad_listen_address_and_bad_config_exit_1(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("global: {timeout: never}\n")
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.file", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "global.timeout: invalid duration 'never'" in result.stderr
    assert "Traceback" not in result.stderr
    config.write_text("{}\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "--config.file",
            str(config),
            "--web.listen-address",
            "nonsense:port",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "--web.listen-address" in result.stderr
    assert "Traceback" not in result.stderr


def test_shards_cover_every_target_exactly_once() -> None:
    from exporter.config import parse_config
    from exporter.daemon import Exporter, Shard, all_targets

    config = parse_config({"domains": [{"domain": f"d{i}.example"} for i in range(200)]})
    every = {t.key for t in all_targets(config)}
    seen: list[tuple[str, str]] = []
    for i in (1, 2, 3):
        exp = Exporter(config_path=Path("x"), config=config, shard=Shard(i, 3))
        mine = [t.key for t in exp.targets(config)]
        assert abs(len(mine) - len(every) / 3) < len(every) * 0.1  # a roughly even split
        seen += mine
    assert sorted(seen) == sorted(every)
    for bad in ("0/3", "4/3", "1", "a/b", "1/0"):
        with pytest.raises(ValueError):
            Shard.parse(bad)
