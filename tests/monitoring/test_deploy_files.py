"""The container and the compose deployment, checked without a Docker engine (none here):
promtool/amtool on the bundled configs, the compose file's mounts and flags against the real
CLI parser, the Dockerfile's directives, and the Grafana dashboards and provisioning."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from monitoring_support import DASHBOARDS, DEPLOY, REPO, RULE_FILES, tool

from exporter.cli import DEFAULT_LISTEN, build_parser
from exporter.config import load_config
from exporter.metrics import ALL_METRICS, PREFIX
from exporter.webconfig import load_web_config

COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


# ----- Prometheus and Alertmanager configs ------------------------------------------------------


def test_promtool_check_config_with_bundled_rules(tmp_path: Path) -> None:
    """deploy/prometheus.yml as mounted in compose: rules at rules/*.rules.yml beside it."""
    shutil.copy(DEPLOY / "prometheus.yml", tmp_path / "prometheus.yml")
    (tmp_path / "rules").mkdir()
    for rule_file in RULE_FILES:
        shutil.copy(rule_file, tmp_path / "rules" / rule_file.name)
    result = run(tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout + result.stderr


def test_amtool_check_config() -> None:
    result = run(tool("amtool"), "check-config", str(DEPLOY / "alertmanager.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_routes_by_severity(tmp_path: Path) -> None:
    amtool = tool("amtool")
    config = str(DEPLOY / "alertmanager.yml")
    for severity, receiver in (("critical", "page"), ("warning", "tickets"), ("info", "changes")):
        alert = ("alertname=EmailDeliverabilitySPFRecordMissing", f"severity={severity}")
        result = run(amtool, "config", "routes", "test", f"--config.file={config}", *alert)
        assert result.stdout.strip() == receiver, result.stdout + result.stderr


# ----- compose ----------------------------------------------------------------------------------


def test_compose_services_and_mounts() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"exporter", "prometheus", "alertmanager", "grafana"}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
    exporter_mounts = dict(v.split(":")[:2] for v in services["exporter"]["volumes"])
    assert exporter_mounts["exporter-data"] == "/var/lib/deliverability-exporter"
    assert "exporter-data" in COMPOSE["volumes"]
    prom_mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"])
    assert prom_mounts["../alerts"] == "/etc/prometheus/rules"
    assert prom_mounts["./prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    grafana = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    provider = yaml.safe_load(
        (REPO / "grafana/provisioning/dashboards/deliverability.yml").read_text()
    )
    assert grafana["../grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["providers"][0]["options"]["path"] + "/")
    assert (REPO / "grafana/dashboards" / Path(home).name).exists()
    datasource = yaml.safe_load(
        (REPO / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_compose_exporter_command_is_accepted_by_the_cli() -> None:
    exporter = COMPOSE["services"]["exporter"]
    args = build_parser().parse_args(exporter["command"])
    mounts = dict(v.split(":")[:2] for v in exporter["volumes"])
    assert mounts["./config.yml"] == args.config_file
    assert args.listen.endswith(":9866") and DEFAULT_LISTEN.endswith(":9866")
    assert exporter["ports"] == ["9866:9866"]
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = [
        t
        for job in prometheus["scrape_configs"]
        for sc in job["static_configs"]
        for t in sc["targets"]
    ]
    assert "exporter:9866" in targets


def test_bundled_exporter_config_and_web_config_are_valid() -> None:
    config = load_config(DEPLOY / "config.yml")
    assert config.domains
    load_web_config(str(DEPLOY / "web-config.yml"))


# ----- Dockerfile -------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), " ".join(args.split())))
    return out


def test_dockerfile_runs_as_non_root_with_healthcheck() -> None:
    steps = dockerfile()
    final = steps[max(i for i, (ins, _) in enumerate(steps) if ins == "FROM") :]
    users = [args for ins, args in final if ins == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), users
    (health,) = [args for ins, args in final if ins == "HEALTHCHECK"]
    assert "healthcheck.py" in health
    assert "/-/healthy" in (DEPLOY / "healthcheck.py").read_text()
    assert ("EXPOSE", "9866") in final
    (entry,) = [json.loads(args) for ins, args in final if ins == "ENTRYPOINT"]
    assert entry == ["deliverability-exporter"]
    (cmd,) = [json.loads(args) for ins, args in final if ins == "CMD"]
    args = build_parser().parse_args(cmd)
    assert args.config_file == "/etc/deliverability-exporter/config.yml"
    assert args.storage_path == "/var/lib/deliverability-exporter"
    assert ("VOLUME", '["/var/lib/deliverability-exporter"]') in final


def test_dockerfile_copies_only_what_dockerignore_lets_in() -> None:
    ignore = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*"
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    copies = [args.split()[:-1] for ins, args in dockerfile() if ins == "COPY"]
    from_context = [c for c in copies if not any(a.startswith("--from=") for a in c)]
    assert len(from_context) == 3
    for sources in from_context:
        for source in sources:
            assert source in allowed, f"COPY {source} is excluded by .dockerignore"
            assert (REPO / source).exists(), source


def test_image_installs_the_pinned_versions_into_a_volume_backed_workdir() -> None:
    steps = dockerfile()
    installs = [args for ins, args in steps if ins == "RUN" and "pip install" in args]
    assert installs and all("--constraint constraints.txt" in a for a in installs), installs
    final = steps[max(i for i, (ins, _) in enumerate(steps) if ins == "FROM") :]
    (volume,) = [json.loads(args) for ins, args in final if ins == "VOLUME"]
    assert volume == ["/var/lib/deliverability-exporter"]
    assert ("WORKDIR", "/var/lib/deliverability-exporter") in final
    assert any("chown 10001:10001 /var/lib/deliverability-exporter" in a
               for ins, a in final if ins == "RUN")  # fmt: skip
    exporter = COMPOSE["services"]["exporter"]
    assert "exporter-data:/var/lib/deliverability-exporter" in exporter["volumes"]
    assert "exporter-data" in COMPOSE["volumes"]
    # HEALTHCHECK survives only a Docker-format build: said where people build.
    text = (REPO / "Dockerfile").read_text()
    assert "podman build --format docker" in text


def test_constraints_pin_the_tested_runtime_dependencies() -> None:
    """constraints.txt lists exactly the runtime closure, at the versions installed here (the
    environment the suite runs in: scripts/test installs with it)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "lock_deps.py"), "--check"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    pins = [
        line for line in (REPO / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]  # fmt: skip
    assert all(re.fullmatch(r"[a-z0-9-]+==[\w.]+", p) for p in pins), pins
    names = {p.split("==")[0] for p in pins}
    assert {"aiohttp", "bcrypt", "pydantic", "pydantic-core", "botocore"} <= names
    assert not names & {"pytest", "hypothesis", "moto", "ruff", "mypy"}  # test tools stay out
    assert "-c constraints.txt" in (REPO / "scripts" / "test").read_text()


# ----- Grafana ----------------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_dashboards_fixed_uids_and_variables() -> None:
    assert [p.name for p in DASHBOARDS] == [
        "deliverability-domain.json",
        "deliverability-overview.json",
    ]
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert uids == ["deliverability-domain", "deliverability-overview"]
    for path in DASHBOARDS:
        dashboard = load(path)
        names = [v["name"] for v in dashboard["templating"]["list"]]
        assert names[:3] == ["datasource", "job", "instance"], path.name
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert 'job=~"$job"' in target["expr"], (panel["title"], target["expr"])
                assert 'instance=~"$instance"' in target["expr"], panel["title"]


def test_dashboards_use_only_declared_metrics() -> None:
    declared = {PREFIX + name for name in ALL_METRICS}
    for path in DASHBOARDS:
        for panel in load(path)["panels"]:
            for target in panel.get("targets", []):
                used = set(re.findall(r"\b(deliverability_[a-z0-9_]+)\b", target["expr"]))
                assert used <= declared, (panel["title"], used - declared)


def test_overview_has_a_row_per_probe_kind() -> None:
    overview = load(REPO / "grafana/dashboards/deliverability-overview.json")
    rows = [p["title"] for p in overview["panels"] if p["type"] == "row"]
    assert rows == [
        "Overview", "DNS authentication", "Blacklists", "TLS", "AWS SES", "Round trip",
        "Bulk-sender readiness",
        "MTA-STS and TLS-RPT",
        "Mail queues",
        "DNSSEC and DANE",
        "SES events",
        "DMARC and TLS reports",
    ]  # fmt: skip
