"""The bundled alert rules: promtool checks and unit tests, conventions, and their bite.

``promtool test rules`` runs the cases in ``alerts/tests/``; the mutation test below removes each
alerting rule in turn from a copy of its file and requires those cases to fail, so every rule
(each severity tier included) has a case that sees it fire.
"""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring_support import ALERTS, RULE_FILES, RULE_TESTS, load_rules, shorten_for, tool

from exporter.findings import CATALOGUE
from exporter.metrics import ALL_METRICS, PREFIX
from exporter.probes import PROBES

RULES = load_rules()
NAME = re.compile(r"^EmailDeliverability[A-Z][A-Za-z0-9]+$")
RUNBOOK = ALERTS / "RUNBOOK.md"
DEFAULT_RUNBOOK = (
    "https://github.com/deliverability-exporter/deliverability-exporter/blob/main/alerts/RUNBOOK.md"
)
RUNBOOK_URL = re.compile(
    r'\{\{ or \$externalLabels\.runbook_base_url "'
    + re.escape(DEFAULT_RUNBOOK)
    + r'" \}\}#([\w-]+)'
)
"""The one convention for runbook links: the base URL is the Prometheus external label
``runbook_base_url`` (one setting in prometheus.yml), the project's runbook when it is unset."""


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


# ----- promtool ---------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    result = run(tool("promtool"), "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    # A rule file per probe kind and the exporter's own (a kind may have more: dnssec).
    names = {p.name for p in RULE_FILES}
    assert {f"{kind}.rules.yml" for kind in PROBES} | {"exporter.rules.yml"} <= names


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_test_rules(test_file: Path) -> None:
    result = run(tool("promtool"), "test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _test_file_for(rule_file: Path) -> Path:
    return ALERTS / "tests" / rule_file.name.replace(".rules.yml", ".test.yml")


def test_every_rule_file_has_unit_tests() -> None:
    for rule_file in RULE_FILES:
        test_file = _test_file_for(rule_file)
        assert test_file.exists(), f"{rule_file.name} has no {test_file.name}"
        assert yaml.safe_load(test_file.read_text())["rule_files"] == [f"../{rule_file.name}"]


def _reduced_cases(tmp_path: Path, drop: bool) -> dict[Path, str]:
    """One (rule file, test file) pair per alerting rule, in one directory each.

    The rule file keeps only the rules of that alert's name and the test file only that name's
    cases (they depend on nothing else), which makes the mutation test cheap. With ``drop`` the
    rule itself is removed (its other severity tier stays). Returns test file -> description.
    """
    out: dict[Path, str] = {}
    n = 0
    for rule_file in RULE_FILES:
        tests = yaml.safe_load(_test_file_for(rule_file).read_text())
        for group in yaml.safe_load(rule_file.read_text())["groups"]:
            for rule in group["rules"]:
                name = rule["alert"]
                same = [r for r in group["rules"] if r["alert"] == name]
                kept = [r for r in same if r is not rule] if drop else same
                n += 1
                where = tmp_path / f"case{n}"
                (where / "tests").mkdir(parents=True)
                rules = {"groups": [{"name": group["name"], "rules": kept}]}
                (where / rule_file.name).write_text(yaml.safe_dump(rules, sort_keys=False))
                cases = [
                    {**case, "alert_rule_test": [
                        c for c in case.get("alert_rule_test", []) if c["alertname"] == name
                    ]}
                    for case in tests["tests"]
                ]  # fmt: skip
                test_file = where / "tests" / "case.test.yml"
                test_file.write_text(yaml.safe_dump({**tests, "tests": cases}, sort_keys=False))
                out[test_file] = f"{rule_file.name}: {name} ({rule['labels']['severity']})"
    return out


def test_reduced_cases_pass_with_every_rule(tmp_path: Path) -> None:
    """Control for the mutation test: the reduction alone breaks nothing."""
    cases = _reduced_cases(tmp_path, drop=False)
    result = run(tool("promtool"), "test", "rules", *map(str, cases))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(cases) == len(RULES)


def test_removing_any_rule_fails_its_unit_tests(tmp_path: Path) -> None:
    """Each alerting rule (every severity tier) is seen firing by some test case."""
    promtool = tool("promtool")
    cases = _reduced_cases(tmp_path, drop=True)
    assert len(cases) == len(RULES)

    # promtool reports failures on stderr without the file name: one process per case.
    def returncode(test_file: Path) -> int:
        return run(promtool, "test", "rules", str(test_file)).returncode

    with ThreadPoolExecutor(max_workers=4) as pool:
        codes = dict(zip(cases, pool.map(returncode, cases), strict=True))
    survived = [cases[f] for f, code in codes.items() if code == 0]
    assert not survived, f"removing these rules fails no test case: {survived}"


def test_unit_tests_cover_every_alert_firing_and_not_firing() -> None:
    fired: dict[str, set[str]] = defaultdict(set)
    quiet: set[str] = set()
    for test_file in RULE_TESTS:
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                exp = check.get("exp_alerts") or []
                if exp:
                    for alert in exp:
                        fired[check["alertname"]].add(alert["exp_labels"]["severity"])
                else:
                    quiet.add(check["alertname"])
    tiers: dict[str, set[str]] = defaultdict(set)
    for _, rule in RULES:
        tiers[rule["alert"]].add(rule["labels"]["severity"])
    for name, severities in tiers.items():
        assert fired[name] == severities, f"{name}: tiers {severities}, seen firing {fired[name]}"
        assert name in quiet, f"{name} has no case where it must not fire"


# ----- conventions ------------------------------------------------------------------------------


def test_names_labels_annotations() -> None:
    assert len({rule["alert"] for _, rule in RULES}) == 67
    for path, rule in RULES:
        name = rule["alert"]
        assert NAME.match(name), name
        assert set(rule["labels"]) == {"severity"}, name
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert "{{" not in annotations["summary"], f"{name}: summary must be static"
        assert "$labels." in annotations["description"], f"{name}: description names no target"
        link = RUNBOOK_URL.fullmatch(annotations["runbook_url"])
        assert link, f"{name}: runbook_url does not follow the runbook_base_url convention"
        assert link.group(1) == name.lower(), name
        assert path.name.endswith(".rules.yml")


def test_runbook_has_one_section_per_alert() -> None:
    text = RUNBOOK.read_text()
    sections = re.findall(r"^## (EmailDeliverability\w+)$", text, re.MULTILINE)
    assert len(sections) == len(set(sections))
    assert set(sections) == {rule["alert"] for _, rule in RULES}
    for body in re.split(r"^## EmailDeliverability\w+$", text, flags=re.MULTILINE)[1:]:
        for part in ("**Meaning.**", "**Confirm.**", "**Fix.**"):
            assert part in body


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading: lower case, punctuation
    but hyphens and underscores dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_runbook_link_lands_on_a_heading() -> None:
    anchors = {
        github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", RUNBOOK.read_text(), re.MULTILINE)
    }
    assert "emaildeliverabilityexporterdown" in anchors
    for _, rule in RULES:
        link = RUNBOOK_URL.fullmatch(rule["annotations"]["runbook_url"])
        assert link and link.group(1) in anchors, (rule["alert"], rule["annotations"])


def test_runbook_base_url_is_documented_and_set_in_one_place() -> None:
    prometheus = yaml.safe_load((ALERTS.parent / "deploy" / "prometheus.yml").read_text())
    assert prometheus["global"]["external_labels"]["runbook_base_url"] == DEFAULT_RUNBOOK
    assert "runbook_base_url" in RUNBOOK.read_text()
    assert "runbook_base_url" in (ALERTS.parent / "docs" / "MONITORING.md").read_text()


def _metric_names(expr: str) -> tuple[set[str], list[str]]:
    """Plain ``deliverability_*`` names, and ``__name__=~`` regexes, used in an expression."""
    regexes = re.findall(r'__name__=~"([^"]+)"', expr)
    plain = set(re.findall(r"\b(deliverability_[a-z0-9_]+)\b", re.sub(r'"[^"]*"', '""', expr)))
    return plain, regexes


def test_rules_use_only_declared_metrics() -> None:
    declared = {PREFIX + name for name in ALL_METRICS}
    for _, rule in RULES:
        plain, regexes = _metric_names(rule["expr"])
        assert plain <= declared, f"{rule['alert']}: {plain - declared}"
        for rx in regexes:
            assert any(re.fullmatch(rx, name) for name in declared), (rule["alert"], rx)


def test_could_not_tell_never_pages() -> None:
    """probe_success 0, a failed blacklist query or an absent series is never critical."""
    for _, rule in RULES:
        if rule["labels"]["severity"] != "critical":
            continue
        expr = " ".join(rule["expr"].split())
        assert not re.search(r"(probe_success|query_success)(\{[^}]*\})? == 0", expr), rule["alert"]
        assert "absent(" not in expr, rule["alert"]


def _excluded_codes(alert: str) -> list[str]:
    (rule,) = [r for _, r in RULES if r["alert"] == alert]
    match = re.search(r'code!~"([^"]+)"', rule["expr"])
    assert match, alert
    return match.group(1).split("|")


def test_generic_finding_alerts_exclude_only_catalogued_codes() -> None:
    critical = _excluded_codes("EmailDeliverabilityCriticalFinding")
    warning = _excluded_codes("EmailDeliverabilityWarningFinding")
    assert critical == warning
    assert len(critical) == len(set(critical))
    unknown = set(critical) - set(CATALOGUE)
    assert not unknown, f"not in exporter/findings/: {unknown}"


def test_generic_finding_alerts_leave_uncovered_codes_alerting() -> None:
    """Every critical or warning finding of the catalogue reaches some alert."""
    excluded = set(_excluded_codes("EmailDeliverabilityCriticalFinding"))
    uncovered = {
        c for c, spec in CATALOGUE.items() if c not in excluded and spec.severity != "info"
    }
    # codes that stay with the generic alerts: each one a real code, e.g. smtp_auth_failed
    assert "smtp_auth_failed" in uncovered
    assert "dmarc_policy_none" in uncovered


def test_shorten_for_rewrites_every_for() -> None:
    seen = set()
    for path in RULE_FILES:
        original = yaml.safe_load(path.read_text())
        doc: dict[str, Any] = yaml.safe_load(shorten_for(path.read_text(), 360))
        for group, group0 in zip(doc["groups"], original["groups"], strict=True):
            for rule, rule0 in zip(group["rules"], group0["rules"], strict=True):
                if "for" in rule0:
                    seen.add((rule0["for"], rule["for"]))
    assert ("30m", "5s") in seen and ("1h", "10s") in seen and ("5m", "2s") in seen
    assert all(new.endswith("s") and new[:-1].isdigit() for _, new in seen)
