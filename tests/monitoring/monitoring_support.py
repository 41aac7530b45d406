"""Helpers of the monitoring tests: where the bundled files are, the Prometheus tools."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "alerts"
RULE_FILES = sorted(ALERTS.glob("*.rules.yml"))
RULE_TESTS = sorted((ALERTS / "tests").glob("*.test.yml"))
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
DEPLOY = REPO / "deploy"

DEBIAN_PACKAGE = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "amtool": "prometheus-alertmanager",
    "prometheus-alertmanager": "prometheus-alertmanager",
}


def tool(name: str) -> str:
    """Path of a Prometheus tool; fails (saying which Debian package) when it is not installed.

    Not a skip: scripts/test installs the packages, and a skipped check must not look green.
    """
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not installed (Debian package {DEBIAN_PACKAGE.get(name, name)})")
    return path


def load_rules() -> list[tuple[Path, dict[str, Any]]]:
    """Every alerting rule with the file it is in."""
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    out.append((path, rule))
    return out


_FOR = re.compile(r"^(\s+for:\s*)(\d+)([smh])\s*$", re.MULTILINE)
_SECONDS = {"s": 1, "m": 60, "h": 3600}


def shorten_for(text: str, scale: float, minimum: int = 2) -> str:
    """A rule file's text with every ``for:`` divided by ``scale`` (at least ``minimum`` seconds),
    for the end-to-end copy: relative durations are kept, so a condition that must outlast a
    transient failure in production still must here."""

    def shorter(m: re.Match[str]) -> str:
        seconds = int(m.group(2)) * _SECONDS[m.group(3)]
        return f"{m.group(1)}{max(minimum, round(seconds / scale))}s"

    return _FOR.sub(shorter, text)
