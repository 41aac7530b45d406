"""Config validation: every problem reported with its key path; --config.check exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exporter.config import ConfigError, load_config, parse_config, parse_duration

ROOT = Path(__file__).resolve().parents[1]


def problems(data: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


def test_example_config_validates() -> None:
    config = load_config(ROOT / "config.example.yaml")
    assert config.domains


def test_empty_config_is_valid() -> None:
    config = parse_config(None)
    assert config.global_.interval == 300
    assert config.global_.timeout == 30


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("500ms", 0.5),
        (45, 45),
        ("2d", 172800),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5x", "m5", "-5s", "0s", "5 m", True, [1]])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_every_problem_with_its_key_path() -> None:
    found = problems(
        {
            "global": {"interval": "5x", "nameservers": ["dns.example", "127.0.0.1:99999"]},
            "domains": [
                {"domain": "ok.example"},
                {"domain": "ok2.example", "sending_ips": ["300.1.1.1"]},
                {"domain": "bad domain", "dkim_selectors": ["s 1"], "colour": "red"},
            ],
            "tls": [{"target": "smtp.example.com"}, {"target": "a:25", "mx_of": "b.example"}],
            "ses": [{"region": "mars-1"}],
            "roundtrip": [{"name": "x"}],
            "extra": 1,
        }
    )
    text = "\n".join(found)
    for expected in [
        "global.interval: invalid duration '5x'",
        "global.nameservers[0]: nameserver 'dns.example' is not an IP address",
        "global.nameservers[1]: bad port",
        "domains[1].sending_ips[0]: invalid IP address '300.1.1.1'",
        "domains[2].domain: invalid domain name 'bad domain'",
        "domains[2].dkim_selectors: invalid domain name 's 1'",
        "domains[2].colour: unknown key",
        "tls[0].target: invalid address 'smtp.example.com': expected host:port",
        "tls[1]: give exactly one of target and mx_of",
        "ses[0].region: invalid AWS region 'mars-1'",
        "roundtrip[0].from: Field required",
        "roundtrip[0].smtp: Field required",
        "extra: unknown key",
    ]:
        assert expected in text, f"{expected!r} not in:\n{text}"


def test_duplicates_are_errors() -> None:
    found = problems({"domains": [{"domain": "a.example"}, {"domain": "A.example."}]})
    assert found == ["domains: duplicate domain 'a.example'"]


def test_secret_sources_are_exclusive_and_never_echoed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = {
        "name": "p",
        "from": "a@example.com",
        "to": "b@example.net",
        "smtp": {"host": "smtp.example.com", "password_env": "A", "password_file": "/x"},
        "imap": {"host": "imap.example.net", "username": "b", "password_env": "IMAP_PW"},
    }
    assert problems({"roundtrip": [rt]}) == [
        "roundtrip[0].smtp: give only one of password_env and password_file"
    ]
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cret-value\n")
    rt["smtp"] = {"host": "smtp.example.com", "password_file": str(secret_file)}
    config = parse_config({"roundtrip": [rt]})
    assert config.roundtrip[0].smtp.read_secret("roundtrip[0].smtp") == "s3cret-value"
    rt["smtp"] = {"host": "smtp.example.com", "password_env": "NOT_SET_ANYWHERE"}
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    config = parse_config({"roundtrip": [rt]})
    with pytest.raises(ValueError, match="environment variable NOT_SET_ANYWHERE is not set"):
        config.roundtrip[0].smtp.read_secret("roundtrip[0].smtp")


def test_section_overrides_global() -> None:
    config = parse_config(
        {
            "global": {"interval": "1m", "timeout": "10s"},
            "domains": [{"domain": "a.example", "interval": "30s"}, {"domain": "b.example"}],
        }
    )
    assert [config.interval_of(d) for d in config.domains] == [30, 60]
    assert [config.timeout_of(d) for d in config.domains] == [10, 10]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=60
    )


def test_config_check_cli(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"domains": [{"domain": "example.com"}]}))
    ok = run_cli("--config.file", str(good), "--config.check")
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "domains:\n  - domain: example.com\n    dkim_selector: [s1]\nglobal: {interval: soon}\n"
    )
    result = run_cli("--config.file", str(bad), "--config.check")
    assert result.returncode == 1
    assert "domains[0].dkim_selector: unknown key" in result.stderr
    assert "global.interval: invalid duration 'soon'" in result.stderr
    assert "Traceback" not in result.stderr

    broken = tmp_path / "broken.yaml"
    broken.write_text("domains: [\n")
    result = run_cli("--config.file", str(broken), "--config.check")
    assert result.returncode == 1
    assert "invalid YAML" in result.stderr
    assert "Traceback" not in result.stderr

    missing = run_cli("--config.file", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1
    assert "cannot read config" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_queues_section() -> None:
    config = parse_config({"queues": [
        {"name": "mta", "kind": "postfix"},
        {"name": "app", "kind": "celery", "redis_url": "rediss://redis.internal:6380/2",
         "ca_file": "/etc/ca.pem", "queues": ["emails", "emails", "celery"],
         "thresholds": {"oldest_age": "5m", "oldest_age_critical": "5m"}},
    ]})  # fmt: skip
    mta, app = config.queues
    assert (mta.thresholds.oldest_age, mta.thresholds.deferred) == (900, 100)
    assert app.queues == ["emails", "celery"]  # one series per queue
    assert app.thresholds.oldest_age_critical == 300
    found = problems({"queues": [
        {"name": "a b", "kind": "postfix"},
        {"name": "r", "kind": "rq"},
        {"name": "p", "kind": "postfix", "redis_url": "redis://h/0"},
        {"name": "c", "kind": "celery", "redis_url": "http://h"},
        {"name": "d", "kind": "rq", "redis_url": "redis://h/db"},
        {"name": "e", "kind": "rq", "redis_url": "redis://h/0", "ca_file": "/ca.pem"},
        {"name": "f", "kind": "rq", "redis_url": "redis://h/0", "queues": []},
        {"name": "g", "kind": "rq", "redis_url": "redis://h/0",
         "thresholds": {"deferred": 10, "deferred_critical": 5, "growing_runs": 0}},
        {"name": "h", "kind": "rq", "redis_url": "redis://h/0", "postfix_config_dir": "/etc/x"},
        {"name": "i", "kind": "sidekiq"},
        {"name": "mta", "kind": "postfix"},
        {"name": "mta", "kind": "postfix"},
    ]})  # fmt: skip
    text = "\n".join(found)
    for expected in [
        "queues[0]: name must be 1-64 characters",
        "queues[1]: kind rq needs redis_url",
        "queues[2]: redis_url cannot be used with kind postfix",
        "queues[3].redis_url: redis_url must start with redis://, rediss:// or unix://",
        "queues[4].redis_url: the path of redis_url is the database number",
        "queues[5]: ca_file needs a rediss:// redis_url",
        "queues[6]: queues: list at least one queue",
        "queues[7].thresholds.growing_runs: Input should be greater than or equal to 1",
        "queues[8]: postfix_config_dir cannot be used with kind rq",
        "queues[9].kind: Input should be 'postfix', 'rq' or 'celery'",
    ]:
        assert expected in text, f"{expected!r} not in:\n{text}"
    dupes = problems({"queues": [{"name": "mta", "kind": "postfix"}] * 2})
    assert dupes == ["queues: duplicate name 'mta'"]


@pytest.mark.parametrize(
    "url",
    ["redis://:hunter2-secret@h:6379/0", "redis://user:hunter2-secret@h/0",
     "unix:///run/redis.sock?password=hunter2-secret", "redis://h:99999999/0?x=hunter2-secret"],
)  # fmt: skip
def test_redis_url_password_is_refused_and_never_echoed(url: str) -> None:
    found = problems({"queues": [{"name": "app", "kind": "rq", "redis_url": url}]})
    assert found and all("hunter2" not in p for p in found), found
    assert found[0].startswith("queues[0].redis_url: ")
