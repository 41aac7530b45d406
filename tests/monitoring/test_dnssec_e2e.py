"""End to end for DNSSEC and DANE: the real exporter process against the signed loopback hierarchy
(knot) and real DANE mail servers (aiosmtpd on port 25 of loopback addresses, TLSA records made
from their certificates), scraped by a real Prometheus with the bundled rules (``for:`` divided by
360), paging through a real Alertmanager; and every panel of the overview's "DNSSEC and DANE"
row queried against that Prometheus (the main end-to-end test runs without DNSSEC: its DNS
server is a plain one).

The world is tests/dane_world.py: the DNSSEC lab's zones plus
``dane.test`` (signed, TLSA records), ``daneinsecure.test`` (unsigned) and ``danebogus.test``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from dane_world import World, dane_world
from monitoring_support import REPO
from promstack import Daemon, PromStack, free_port, get, wait_for

pytestmark = pytest.mark.slow

ROW = "DNSSEC and DANE"
DOMAINS = ["secure.test", "expired.test", "mxbogus.test", "lapsing.test", "expiring.test",
           "unsigned.test"]  # fmt: skip
MX_OF = ["ee311.dane.test", "nomatch.dane.test", "twoaddr.dane.test", "daneinsecure.test"]

OURS = {
    rule["alert"]
    for group in yaml.safe_load((REPO / "alerts/dnssec.rules.yml").read_text())["groups"]
    for rule in group["rules"]
}
"""The alerts of alerts/dnssec.rules.yml: the lab's domains have no DMARC or DKIM records, so the
DNS authentication alerts fire too and are left out of the comparisons."""
EXPECTED_PAGES = {
    ("EmailDeliverabilityDNSSECBogus", "expired.test"),
    ("EmailDeliverabilityDNSSECMXBogus", "expired.test"),  # its MX host is in its own zone
    ("EmailDeliverabilityDNSSECMXBogus", "mxbogus.test"),
    ("EmailDeliverabilityDNSSECSignaturesExpiring", "lapsing.test"),
    ("EmailDeliverabilityDANENoMatch", "mx.nomatch.dane.test:25"),
    ("EmailDeliverabilityDANENoMatch", "mx.twoaddr.dane.test:25"),
}
EXPECTED_TICKETS = {
    ("EmailDeliverabilityDNSSECSignaturesExpiring", "expiring.test"),
    ("EmailDeliverabilityDANETLSAIgnored", "mx:daneinsecure.test"),
    ("EmailDeliverabilityMXAddressFailing", "mx.twoaddr.dane.test:25"),
    ("EmailDeliverabilityMXAddressFailing", "mx.nomatch.dane.test:25"),
}


@dataclass
class Stack:
    prom: PromStack
    exporter: Daemon


def subject(labels: dict[str, str]) -> str:
    return labels.get("domain") or labels.get("target") or ""


def seen(prom: PromStack, path: str) -> set[tuple[str, str]]:
    return {
        (labels["alertname"], subject(labels))
        for p, labels in prom.webhook.alerts()
        if p == path and labels["alertname"] in OURS
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with dane_world(tmp_path_factory.mktemp("dane-e2e")) as built:
        yield built


@pytest.fixture(scope="module")
def stack(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("dnssec-e2e")
    config: dict[str, Any] = {
        "global": {
            "interval": "2s", "timeout": "10s", "nameservers": [world.lab.address],
            "dnssec_trust_anchors": str(world.lab.anchor_file), "allow_short_intervals": True,
        },
        "domains": [{"domain": d} for d in DOMAINS],
        "tls": [{"mx_of": d, "ca_file": world.ca_file} for d in MX_OF],
    }  # fmt: skip
    path = workdir / "config.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    exporter = Daemon("exporter", [
        sys.executable, "-m", "exporter", "--config.file", str(path),
        "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn",
    ], workdir)  # fmt: skip
    prom: PromStack | None = None
    try:
        wait_for("exporter healthy", lambda: get(f"http://127.0.0.1:{port}/-/healthy"))
        prom = PromStack(workdir, f"127.0.0.1:{port}")
        wait_for(
            "every expected alert notified",
            lambda: (
                seen(prom, "/page") >= EXPECTED_PAGES and seen(prom, "/tickets") >= EXPECTED_TICKETS
            ),
            timeout=90,
        )
        time.sleep(3)  # a few more evaluations for wrong alerts, if any, to show up
        yield Stack(prom, exporter)
    except BaseException:
        logs = prom.logs() if prom else ""
        print(f"{logs}\n--- exporter\n{exporter.log()}", file=sys.stderr)
        raise
    finally:
        if prom is not None:
            prom.stop()
        exporter.stop()


def test_dnssec_and_dane_alerts_page_and_ticket(stack: Stack) -> None:
    assert seen(stack.prom, "/page") == EXPECTED_PAGES
    assert seen(stack.prom, "/tickets") >= EXPECTED_TICKETS


def test_healthy_and_unsigned_raise_nothing(stack: Stack) -> None:
    quiet = {"secure.test", "unsigned.test", "mx.ee311.dane.test:25", "mx:ee311.dane.test"}
    for _, labels in stack.prom.webhook.alerts():
        assert labels["alertname"] not in OURS or subject(labels) not in quiet, labels
    for alert in stack.prom.rule_alerts():
        labels = alert["labels"]
        assert labels["alertname"] not in OURS or subject(labels) not in quiet, alert
    # every run completed: DNSSEC could tell everywhere
    assert not stack.prom.query("deliverability_probe_success == 0")


def test_every_panel_of_the_row_returns_data(stack: Stack) -> None:
    dashboard = json.loads((REPO / "grafana/dashboards/deliverability-overview.json").read_text())
    panels = dashboard["panels"]
    start = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == ROW)
    after = panels[start + 1 :]
    end = next((i for i, p in enumerate(after) if p["type"] == "row"), len(after))
    row = after[:end]
    assert len(row) == 6
    for panel in row:
        for target in panel["targets"]:
            expr = target["expr"].replace("$job", ".+").replace("$instance", ".+")
            assert stack.prom.query(expr), f"{panel['title']}: {expr}"
