"""Every registered probe kind is complete: the checklist of :mod:`exporter.probes`, enforced.

A kind without a config section, a finding in the catalogue, its metrics in README, alert rules
with unit tests, a dashboard row or a test module fails here, naming what is missing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from exporter.config import Config, parse_config
from exporter.findings import CATALOGUE
from exporter.metrics import METRICS, PREFIX
from exporter.probes import KINDS as KINDS_TABLE
from exporter.probes import PROBES

REPO = Path(__file__).resolve().parents[1]
KINDS = sorted(PROBES)


def overview_rows() -> dict[str, list[dict[str, Any]]]:
    """Row title -> the panels under it in the overview dashboard."""
    dashboard = json.loads((REPO / "grafana/dashboards/deliverability-overview.json").read_text())
    rows: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] | None = None
    for panel in sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])):
        if panel["type"] == "row":
            current = rows.setdefault(panel["title"], [])
        elif current is not None:
            current.append(panel)
    return rows


def test_registry_names_match_entries() -> None:
    assert KINDS, "no probe kinds registered"
    for name, kind in PROBES.items():
        assert kind.name == name
        assert kind.title and kind.config_key, name


def test_registry_table_names_each_kinds_module_and_section() -> None:
    for name, (module, key) in KINDS_TABLE.items():
        kind = PROBES[name]
        assert type(kind).__module__.startswith(module), name
        assert kind.config_key == key, name
    assert "dns" in PROBES and "nonesuch" not in PROBES
    with pytest.raises(KeyError):
        PROBES["nonesuch"]


def test_configured_kinds_are_those_with_targets() -> None:
    config = parse_config(
        {"domains": [{"domain": "example.com"}], "tls": [{"target": "mx.example.com:25"}]}
    )
    assert [k.name for k in PROBES.configured(config)] == ["dns", "tls"]
    with_targets = [name for name, kind in PROBES.items() if kind.targets(config)]
    assert with_targets == ["dns", "tls"]


@pytest.mark.parametrize("name", KINDS)
def test_kind_has_a_config_section(name: str) -> None:
    key = PROBES[name].config_key
    keys = {field.alias or field_name for field_name, field in Config.model_fields.items()}
    assert key in keys, f"probe {name}: config_key {key!r} is not a section of Config"


@pytest.mark.parametrize("name", KINDS)
def test_kind_has_findings_in_the_catalogue(name: str) -> None:
    codes = [code for code, spec in CATALOGUE.items() if spec.probe == name]
    assert codes, f"probe {name}: no finding in exporter/findings/ names probe={name!r}"


@pytest.mark.parametrize("name", KINDS)
def test_kind_has_alert_rules_with_unit_tests_and_runbook(name: str) -> None:
    rules = REPO / "alerts" / f"{name}.rules.yml"
    tests = REPO / "alerts" / "tests" / f"{name}.test.yml"
    assert rules.is_file(), f"probe {name}: no {rules.relative_to(REPO)}"
    assert tests.is_file(), f"probe {name}: no {tests.relative_to(REPO)}"
    runbook = (REPO / "alerts/RUNBOOK.md").read_text()
    alerts = re.findall(r"^\s*- alert: (\w+)", rules.read_text(), re.M)
    assert alerts, f"probe {name}: {rules.name} defines no alert"
    for alert in alerts:
        assert f"## {alert}" in runbook, f"probe {name}: RUNBOOK.md has no section {alert}"


@pytest.mark.parametrize("name", KINDS)
def test_kind_has_a_dashboard_row_querying_its_metrics(name: str) -> None:
    title = PROBES[name].title
    rows = overview_rows()
    assert title in rows, f"probe {name}: the overview dashboard has no row {title!r}"
    used = {
        m
        for panel in rows[title]
        for target in panel.get("targets", [])
        for m in re.findall(r"\b" + PREFIX + r"([a-z0-9_]+)\b", target["expr"])
    }
    assert used & set(METRICS), f"probe {name}: row {title!r} queries none of its metrics"


@pytest.mark.parametrize("name", KINDS)
def test_kind_has_tests_against_real_servers(name: str) -> None:
    found = sorted((REPO / "tests/probes").glob(f"test_{name}*.py"))
    assert found, f"probe {name}: no tests/probes/test_{name}*.py"
