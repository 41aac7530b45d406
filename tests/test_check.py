"""``check``: the text report and JSON for every finding code, exit codes, and the command itself
against a real loopback DNS server (in-process for most cases, as a real process for the
terminal behaviour: colour and progress only on a TTY)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from dnsserver import DnsServer

from exporter import cli
from exporter.findings import CATALOGUE, CRITICAL, INFO, WARNING
from exporter.probes import PROBES
from exporter.report import (
    EVIDENCE_LIMIT,
    JSON_SCHEMA,
    Report,
    render_json,
    render_text,
    to_json,
)
from exporter.results import Finding, ProbeResult, RunRecord, Target

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_EXIT = {CRITICAL: 2, WARNING: 1, INFO: 0}


def record(
    probe: str,
    name: str,
    findings: list[Finding] | None = None,
    error: str | None = None,
    details: dict[str, str] | None = None,
) -> RunRecord:
    target = Target(probe=probe, name=name, settings=None, interval=60.0, timeout=10.0)
    result = ProbeResult(findings=list(findings or []), error=error, details=dict(details or {}))
    return RunRecord(
        target, result, started=1_700_000_000.0, finished=1_700_000_000.5, duration=0.5
    )


def report_of(*records: RunRecord) -> Report:
    return Report.of(list(records), started=1_700_000_000.0, duration=0.7)


def flat(text: str) -> str:
    """Whitespace-normalized text, so wrapped lines compare equal to the catalogue's."""
    return " ".join(text.split())


# ----- every finding code ---------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_text_report_shows_every_code_with_summary_evidence_and_fix(code: str) -> None:
    spec = CATALOGUE[code]
    rec = record(
        spec.probe,
        "target.example",
        [Finding(code, evidence=f"seen-{code}", subject="the-subject")],
        details={"record": "v=spf1 -all"},
    )
    text = render_text(report_of(rec), width=100)
    plain = flat(text)
    assert f"{spec.severity.upper()} {code} [the-subject]" in plain
    assert flat(spec.summary) in plain
    assert f"Evidence: seen-{code}" in plain
    assert "Fix: " + flat(spec.fix) in plain
    # What the probe saw is shown for targets that need attention (info alone needs none).
    assert ("record: v=spf1 -all" in plain) == (spec.severity != INFO)
    word = {CRITICAL: "✗ FAIL", WARNING: "! WARN", INFO: "✓ PASS"}[spec.severity]
    assert f"{word}  target.example" in text
    assert f"== {spec.probe} (1 target) ==" in text
    assert text.rstrip().endswith(f"(exit {EXPECTED_EXIT[spec.severity]})")
    assert "\033[" not in text
    assert all(len(line) <= 100 for line in text.splitlines())


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_json_report_of_every_code_matches_the_schema(code: str) -> None:
    spec = CATALOGUE[code]
    rec = record(
        spec.probe,
        "target.example",
        [Finding(code, evidence="ev", subject="sub")],
        details={"k": "v"},
    )
    doc = json.loads(render_json(report_of(rec)))
    jsonschema.validate(doc, JSON_SCHEMA)
    assert doc["exit_code"] == EXPECTED_EXIT[spec.severity]
    assert doc["status"] == {CRITICAL: "critical", WARNING: "warning", INFO: "ok"}[spec.severity]
    assert doc["summary"][spec.severity] == 1
    (target,) = doc["targets"]
    assert (target["probe"], target["target"], target["success"]) == (
        spec.probe,
        "target.example",
        True,
    )
    assert target["evidence"] == {"k": "v"}
    assert target["findings"] == [
        {
            "code": code,
            "severity": spec.severity,
            "subject": "sub",
            "summary": spec.summary,
            "evidence": "ev",
            "fix": spec.fix,
        }
    ]


def test_the_schema_is_valid_and_committed_in_docs() -> None:
    jsonschema.Draft202012Validator.check_schema(JSON_SCHEMA)
    doc = to_json(report_of(record("dns", "a.example", [Finding("dmarc_missing")])))
    doc["targets"][0]["findings"][0]["code"] = "Not A Code"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, JSON_SCHEMA)
    committed = json.loads((ROOT / "docs" / "check-report.schema.json").read_text())
    assert committed == JSON_SCHEMA, (
        "regenerate: python -m exporter.report > docs/check-report.schema.json"
    )


# ----- statuses and exit codes ----------------------------------------------------------------


def test_worst_target_decides_and_findings_sort_worst_first() -> None:
    ok = record("dns", "ok.example")
    warn = record("dns", "warn.example", [Finding("dmarc_pct_partial"), Finding("dmarc_no_rua")])
    crit = record("dns", "crit.example", [Finding("dmarc_missing")])
    assert report_of(ok).exit_code == 0
    assert report_of(ok, warn).exit_code == 1
    rep = report_of(ok, warn, crit)
    assert (rep.status, rep.exit_code) == ("critical", 2)
    assert [f.code for f in rep.targets[1].findings] == ["dmarc_no_rua", "dmarc_pct_partial"]
    assert rep.counts == {CRITICAL: 1, WARNING: 1, INFO: 1, "errors": 0}


def test_a_finding_severity_override_counts() -> None:
    assert CATALOGUE["tls_cert_expiring"].severity == WARNING
    rec = record("tls", "mx:25", [Finding("tls_cert_expiring", severity=CRITICAL)])
    rep = report_of(rec)
    assert rep.exit_code == 2
    assert "CRITICAL tls_cert_expiring" in render_text(rep)


def test_could_not_tell_is_a_warning_never_critical() -> None:
    rep = report_of(record("dns", "slow.example", error="SPF: DNS lookup failed: timeout"))
    assert (rep.status, rep.exit_code) == ("warning", 1)
    text = render_text(rep)
    assert "! WARN  slow.example" in text
    assert "Could not tell: SPF: DNS lookup failed: timeout" in text
    assert "1 could not tell" in text
    doc = to_json(rep)
    assert doc["targets"][0]["success"] is False
    assert doc["targets"][0]["error"] == "SPF: DNS lookup failed: timeout"
    assert doc["summary"]["errors"] == 1


def test_colour_and_ascii_marks_only_when_asked() -> None:
    rep = report_of(record("dns", "crit.example", [Finding("dmarc_missing")]))
    coloured = render_text(rep, colour=True)
    assert "\033[31;1m✗ FAIL  crit.example\033[0m" in coloured
    ascii_text = render_text(rep, unicode=False)
    assert "x FAIL  crit.example" in ascii_text
    assert "✗" not in ascii_text


def test_passing_targets_show_their_evidence_only_when_verbose() -> None:
    rep = report_of(record("dns", "ok.example", details={"spf.record": "v=spf1 -all"}))
    assert "spf.record" not in render_text(rep)
    assert "no findings" in render_text(rep)
    assert "spf.record: v=spf1 -all" in render_text(rep, verbose=True)


def test_long_evidence_is_cut_in_text_but_whole_in_json_and_verbose() -> None:
    long = " ".join(f"include:_spf{i}.example.com" for i in range(60))
    tree = "\n".join(f"{'  ' * (i % 3)}include:_spf{i}.example.com [1 lookup]" for i in range(20))
    rec = record(
        "dns",
        "big.example",
        [Finding("spf_missing")],
        details={"spf.record": long, "spf.tree": tree},
    )
    text = render_text(report_of(rec))
    assert "more characters: --verbose or --format json shows all" in text
    assert "(14 more lines: --verbose or --format json shows all)" in text
    assert len(flat(text)) < len(long) + len(tree) + 1500
    assert "    include:_spf2.example.com [1 lookup]" in text  # tree indentation is kept
    verbose = render_text(report_of(rec), verbose=True)
    assert flat(long) in flat(verbose)
    assert "include:_spf19.example.com" in verbose
    assert to_json(report_of(rec))["targets"][0]["evidence"]["spf.record"] == long
    assert len(long) > EVIDENCE_LIMIT


# ----- the command against a real DNS server --------------------------------------------------


def serve_domains(server: DnsServer) -> None:
    """ok.example healthy; weak.example p=none without reports; bad.example without DMARC."""
    for name in ("ok.example", "weak.example", "bad.example"):
        server.add_txt(name, "v=spf1 ip4:192.0.2.1 -all")
        server.add(name, "MX", f"10 mail.{name}.")
        server.add(f"mail.{name}", "A", "192.0.2.1")
    server.add_txt("_dmarc.ok.example", "v=DMARC1; p=reject; rua=mailto:d@ok.example")
    server.add_txt("_dmarc.weak.example", "v=DMARC1; p=none")


def write_config(tmp_path: Path, server: DnsServer, domains: list[str], **extra: object) -> Path:
    data: dict[str, object] = {
        "global": {"nameservers": [server.address], "timeout": "5s"},
        "domains": [{"domain": d} for d in domains],
        "blacklists": {"ip_zones": [], "domain_zones": []},  # the dns probe alone
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("domains", "code"),
    [
        (["ok.example"], 0),
        (["ok.example", "weak.example"], 1),
        (["weak.example", "bad.example"], 2),
    ],
)
def test_check_with_a_config_exits_by_the_worst_finding(
    dns_server: DnsServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    domains: list[str],
    code: int,
) -> None:
    serve_domains(dns_server)
    cfg = write_config(tmp_path, dns_server, domains)
    assert cli.main(["--config.file", str(cfg), "check", "--format", "json"]) == code
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, JSON_SCHEMA)
    assert doc["exit_code"] == code
    assert [(t["probe"], t["target"]) for t in doc["targets"]] == [("dns", d) for d in domains]
    by_name = {t["target"]: t for t in doc["targets"]}
    if "bad.example" in by_name:
        assert "dmarc_missing" in [f["code"] for f in by_name["bad.example"]["findings"]]
        assert by_name["bad.example"]["status"] == "critical"
    if "ok.example" in by_name:
        assert by_name["ok.example"]["status"] == "ok"
        assert by_name["ok.example"]["evidence"]["dmarc.record"].startswith("v=DMARC1; p=reject")


def test_check_config_file_after_the_subcommand_and_text_output(
    dns_server: DnsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_domains(dns_server)
    cfg = write_config(tmp_path, dns_server, ["weak.example"])
    assert cli.main(["check", "--config.file", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "! WARN  weak.example" in out
    assert "WARNING  dmarc_policy_none" in out
    assert "Fix: " + flat(CATALOGUE["dmarc_policy_none"].fix) in flat(out)
    assert "dmarc.record: v=DMARC1; p=none" in out
    assert out.rstrip().endswith("(exit 1)")


def test_nameserver_flag_replaces_the_configs_resolvers(
    dns_server: DnsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_domains(dns_server)
    cfg = tmp_path / "config.yaml"
    # 192.0.2.53 (TEST-NET) would never answer; --nameserver must take its place.
    cfg.write_text(
        yaml.safe_dump(
            {
                "global": {"nameservers": ["192.0.2.53"], "timeout": "5s"},
                "domains": [{"domain": "ok.example"}],
                "blacklists": {"ip_zones": [], "domain_zones": []},
            }
        )
    )
    argv = ["check", "--config.file", str(cfg), "--nameserver", dns_server.address]
    assert cli.main([*argv, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["targets"][0]["success"] is True


def test_check_domains_without_a_config(
    dns_server: DnsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_domains(dns_server)
    argv = [
        "--config.file",
        "/nonexistent/config.yaml",
        "check",
        "--nameserver",
        dns_server.address,
        "--format",
        "json",
        "ok.example",
        "bad.example",
    ]
    assert cli.main(argv) == 2
    doc = json.loads(capsys.readouterr().out)
    dns_targets = {t["target"]: t for t in doc["targets"] if t["probe"] == "dns"}
    assert set(dns_targets) == {"ok.example", "bad.example"}
    assert dns_targets["ok.example"]["status"] == "ok"
    assert dns_targets["bad.example"]["status"] == "critical"
    probes = {t["probe"] for t in doc["targets"]}
    assert probes <= {"dns", "dnsbl"}  # no config: DNS and the domain blacklists only
    if "dnsbl" in PROBES:
        assert "dnsbl" in probes
        assert not any(t["target"] == "192.0.2.1" for t in doc["targets"])  # no IP lookups
    asked = {name for name, _ in dns_server.queries}
    assert "_dmarc.bad.example" in asked


def test_a_probe_that_could_not_tell_exits_1(
    dns_server: DnsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_domains(dns_server)
    dns_server.servfail.update({"ok.example", "_dmarc.ok.example"})
    cfg = write_config(tmp_path, dns_server, ["ok.example"])
    assert cli.main(["check", "--config.file", str(cfg), "--format", "json"]) == 1
    (target,) = json.loads(capsys.readouterr().out)["targets"]
    assert target["success"] is False
    assert "SERVFAIL" in target["error"]
    assert all(f["severity"] != "critical" for f in target["findings"])


def test_config_and_argument_errors_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("domains:\n  - domain: example.com\n    colour: blue\n")
    assert cli.main(["check", "--config.file", str(bad)]) == 3
    assert "domains[0].colour: unknown key" in capsys.readouterr().err

    assert cli.main(["check", "--nameserver", "not-an-ip", "example.com"]) == 3
    assert "--nameserver" in capsys.readouterr().err

    assert cli.main(["check", "bad..name"]) == 3
    assert "DOMAIN 'bad..name': invalid domain name" in capsys.readouterr().err

    empty = tmp_path / "empty.yaml"
    empty.write_text("global: {interval: 1m}\n")
    assert cli.main(["check", "--config.file", str(empty)]) == 3
    assert "nothing to check" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exc:
        cli.main(["check", "--format", "xml", "example.com"])
    assert exc.value.code == 3


# ----- terminal behaviour, in a real process --------------------------------------------------


def run_check(argv: list[str], *, tty: bool) -> tuple[int, str]:
    """Run ``python -m exporter check ...``; ``tty``: stdout and stderr are a pseudo-terminal."""
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm"
    cmd = [sys.executable, "-m", "exporter", "check", *argv]
    if not tty:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        return proc.returncode, proc.stdout + proc.stderr
    master, slave = pty.openpty()
    proc_ = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc_.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = proc_.wait(timeout=30)
    finally:
        os.close(master)
        if proc_.poll() is None:
            proc_.kill()
            proc_.wait(10)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_colour_and_progress_only_on_a_terminal(dns_server: DnsServer, tmp_path: Path) -> None:
    serve_domains(dns_server)
    cfg = write_config(tmp_path, dns_server, ["ok.example", "bad.example"])
    argv = ["--config.file", str(cfg)]
    code, piped = run_check(argv, tty=False)
    assert code == 2
    assert "\033[" not in piped and "\r" not in piped
    assert "✗ FAIL  bad.example" in piped
    code, term = run_check(argv, tty=True)
    assert code == 2
    assert "\033[31;1m✗ FAIL  bad.example" in term  # red, bold
    assert "\r\033[K[0/2] checking dns " in term  # the progress line, then cleared
    assert "] done" in term
