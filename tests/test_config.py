"""Config validation: every problem reported with its key path; --config.check exit codes."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from exporter.config import ConfigError, load_config, parse_config, parse_duration, read_secret
from exporter.net.redisurl import check_redis_url

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
            "global": {"interval": "10m", "timeout": "10s"},
            "domains": [{"domain": "a.example", "interval": "2m"}, {"domain": "b.example"}],
        }
    )
    assert [config.interval_of(d) for d in config.domains] == [120, 600]
    assert [config.timeout_of(d) for d in config.domains] == [10, 10]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=timeout
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


def test_dnssec_keys(tmp_path: Path) -> None:
    config = parse_config(None)
    assert config.global_.dnssec is True and config.global_.dnssec_trust_anchors is None
    anchors = tmp_path / "root.key"
    anchors.write_text(
        ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n"
    )
    config = parse_config({"global": {"dnssec": False, "dnssec_trust_anchors": str(anchors)}})
    assert (config.global_.dnssec, config.global_.dnssec_trust_anchors) == (False, str(anchors))
    anchors.write_text("\n. IN DS 20326 8 2 NOTHEX\n")
    assert problems({"global": {"dnssec_trust_anchors": str(anchors)}}) == [
        f"global.dnssec_trust_anchors: {anchors}:2: Non-hexadecimal digit found"
    ]
    missing = tmp_path / "missing"
    (problem,) = problems({"global": {"dnssec_trust_anchors": str(missing), "dnssec": "maybe"}})[1:]
    assert problem == f"global.dnssec_trust_anchors: {missing}: No such file or directory"


def test_dane_defaults_on_for_mx_of_only() -> None:
    config = parse_config({"tls": [
        {"mx_of": "example.com"}, {"target": "smtp.example.com:587"},
        {"target": "smtp.example.com:465", "dane": True}, {"mx_of": "example.org", "dane": False},
    ]})  # fmt: skip
    assert [t.use_dane for t in config.tls] == [True, False, True, False]


# ----- config ambiguity and start-time failures (issue 22) ------------------------------------


def test_duplicate_yaml_keys_are_errors_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("domains:\n  - domain: a.example\nglobal: {interval: 5m}\ndomains: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        f"{path}: line 4, column 1: invalid YAML: duplicate key 'domains'"
    ]
    path.write_text(
        "domains:\n  - domain: a.example\n    dkim_selectors: [s1]\n    domain: b.example\n"
    )
    with pytest.raises(ConfigError, match="line 4, column 5: invalid YAML: duplicate key 'domain'"):
        load_config(path)
    # A merge key may be overridden: that is what it is for.
    path.write_text("x: &d {interval: 10m}\nglobal:\n  <<: *d\n  interval: 5m\n")
    with pytest.raises(ConfigError, match="x: unknown key"):
        load_config(path)


def test_non_utf8_config_is_one_clear_problem(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"domains:\n  - domain: caf\xe9.example\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        f"{path}: line 2, column 16: not UTF-8 text (byte offset 24); save the file as UTF-8"
    ]


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        ([{"target": "mx.example.com:25"}, {"target": "mx.example.com:25"}],
         "tls[1].target: 'mx.example.com:25' is already probed by tls[0]"),
        ([{"target": "mx.example.com:25"}, {"target": "a.example:465"},
          {"target": "MX.Example.com.:25", "starttls": True}],
         "tls[2].target: 'MX.Example.com.:25' is already probed by tls[0]"),
        ([{"target": "[2001:db8::1]:25"}, {"target": "[2001:DB8:0::1]:25"}],
         "tls[1].target: '[2001:DB8:0::1]:25' is already probed by tls[0]"),
        ([{"mx_of": "example.com"}, {"mx_of": "EXAMPLE.com"}],
         "tls[1].mx_of: 'example.com' is already probed by tls[0]"),
    ],
)  # fmt: skip
def test_two_tls_entries_for_one_server(entries: list[dict[str, object]], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"tls": entries})
    (only,) = info.value.problems
    assert only.startswith(problem)


def test_tls_entries_for_different_servers() -> None:
    entries = [{"target": "mx.example.com:25"}, {"target": "mx.example.com:465"},
               {"mx_of": "example.com"}, {"mx_of": "example.net"}]  # fmt: skip
    config = parse_config({"tls": entries})
    assert len(config.tls) == 4


@pytest.mark.parametrize("ip", ["fe80::1%eth0", "fe80::1%1", "2001:db8::1%lo"])
def test_scoped_ipv6_sending_ip_is_refused(ip: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"domains": [{"domain": "a.example", "sending_ips": ["192.0.2.1", ip]}],
                      "blacklists": {}})  # fmt: skip
    (only,) = info.value.problems
    assert only.startswith(f"domains[0].sending_ips[1]: '{ip}' is a scoped IPv6 address")


def test_minimum_intervals_per_probe_kind() -> None:
    data: dict[str, object] = {
        "global": {"interval": "30s"},
        "domains": [{"domain": "a.example"}, {"domain": "b.example", "interval": "1ms"},
                    {"domain": "c.example", "interval": "1m"}],
        "blacklists": {"interval": "4m"},
        "tls": [{"target": "mx.example.com:25"},
                {"target": "mx2.example.com:25", "interval": "1h"}],
        "ses": [{"region": "eu-west-1", "interval": "59s"}],
    }  # fmt: skip
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    problems = [p.split(" (")[0] for p in info.value.problems]
    assert problems == [
        "domains[1].interval: 1ms is below the dns probe's minimum of 1m",
        "blacklists.interval: 4m is below the dnsbl probe's minimum of 5m",
        "ses[0].interval: 59s is below the ses probe's minimum of 1m",
        "global.interval: 30s is below the dns probe's minimum of 1m, and domains[0] use it",
        "global.interval: 30s is below the tls probe's minimum of 1m, and tls[0] use it",
    ]
    # Every problem says why.
    assert all(p.endswith(")") for p in info.value.problems)
    # The lab switch lifts them.
    data["global"] = {"interval": "30s", "allow_short_intervals": True}
    assert parse_config(data).global_.allow_short_intervals


def test_example_and_default_intervals_respect_the_minimums() -> None:
    config = parse_config({"domains": [{"domain": "a.example"}], "blacklists": {},
                           "tls": [{"mx_of": "a.example"}]})  # fmt: skip
    assert config.global_.interval == 300 and config.blacklists is not None
    assert config.blacklists.interval == 1800


@pytest.mark.parametrize(
    ("contents", "expect"),
    [
        (b"domains:\n  - domain: caf\xe9.example\n", "not UTF-8 text"),
        (b"domains:\n  - domain: a.example\n    sending_ips: ['fe80::1%eth0']\nblacklists: {}\n",
         "scoped IPv6 address"),
        (b"domains: []\ndomains: []\n", "duplicate key 'domains'"),
    ],
)  # fmt: skip
@pytest.mark.parametrize(
    "command", [["--config.check"], [], ["check"]], ids=["config.check", "daemon", "check"]
)
def test_start_failures_are_one_clear_line_exit_1(
    tmp_path: Path, contents: bytes, expect: str, command: list[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(contents)
    result = run_cli("--config.file", str(path), "--web.listen-address", "127.0.0.1:0", *command)
    assert "Traceback" not in result.stderr
    assert expect in result.stderr
    assert result.returncode == (3 if command == ["check"] else 1), result.stderr


# ----- hostile config files: huge numbers, huge files, files that are not files ------------------

DIGITS_400 = "1" + "0" * 400
DIGITS_5000 = "1" + "0" * 5000  # past Python's 4,300-digit limit for int(str)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f"global:\n  interval: {DIGITS_400}\n", "global.interval: duration must be at most 365d"),
        (f"global:\n  interval: {DIGITS_5000}\n",
         "global.interval: line 2, column 13: integer of 5001 digits"),
        (f"queues:\n  - name: mta\n    kind: postfix\n"
         f"    thresholds: {{deferred: {DIGITS_5000}}}\n",
         "queues[0].thresholds.deferred: line 4, column 28: integer of 5001 digits"),
        (f"queues:\n  - {{name: mta, kind: postfix, thresholds: {{deferred: {DIGITS_400},"
         f" deferred_critical: {DIGITS_400}}}}}\n",
         "queues[0].thresholds.deferred: Input should be less than or equal to 1000000000"),
        (f"x: [{DIGITS_5000}]\n", "x[0]: line 1, column 5: integer of 5001 digits"),
    ],
)  # fmt: skip
def test_huge_integers_are_problems_with_their_key_path(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert any(p.startswith(problem) or p.startswith(f"{path}: {problem}")
               for p in info.value.problems), info.value.problems  # fmt: skip


def test_config_file_over_8_mib_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"domains: []\n" + b"# padding\n" * (900 * 1024))  # 9.2 MB of comments
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [f"{path}: cannot read config: larger than 8 MiB"]


def test_hostile_config_files_exit_1_without_a_traceback(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    huge.write_text(f"global:\n  interval: {DIGITS_5000}\n")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# padding\n" * (900 * 1024))
    for path, expect in ((huge, "global.interval: line 2"), (big, "larger than 8 MiB")):
        result = run_cli("--config.file", str(path), "--config.check")
        assert result.returncode == 1, result.stderr
        assert expect in result.stderr and "Traceback" not in result.stderr


def in_thread(fn: Callable[[], object], timeout: float = 5.0) -> object:
    """``fn()`` in a daemon thread: its result or exception; 'blocked' if it has not returned
    within ``timeout`` (the thread is then left blocked: never a hung test run)."""
    out: list[object] = []

    def call() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout)
    return out[0] if out else "blocked"


def unblock(fifo: Path) -> None:
    """Give a reader blocked on opening ``fifo`` a writer that closes at once (EOF)."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_config_or_password_file_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    try:
        loaded = in_thread(lambda: load_config(fifo))
        assert isinstance(loaded, ConfigError), loaded
        assert loaded.problems == [f"{fifo}: cannot read config: not a regular file (a FIFO)"]
        secret = in_thread(lambda: read_secret(None, str(fifo), "queues[mta]"))
        assert isinstance(secret, ValueError), secret
        assert str(secret) == (
            f"queues[mta]: cannot read password_file {fifo}: not a regular file (a FIFO)"
        )
        directory = in_thread(lambda: read_secret(None, str(tmp_path), "queues[mta]"))
        assert isinstance(directory, ValueError) and "not a regular file" in str(directory)
    finally:
        unblock(fifo)
        unblock(fifo)


def test_password_file_over_64_kib_is_refused_unshown(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_bytes(b"hunter2-" * 9000)  # 72,000 bytes
    with pytest.raises(ValueError) as info:
        read_secret(None, str(path), "queues[mta]")
    assert str(info.value) == f"queues[mta]: cannot read password_file {path}: larger than 64 KiB"
    path.write_bytes(b"p" * 65535 + b"\n")  # 64 KiB with its newline
    assert read_secret(None, str(path), "queues[mta]") == "p" * 65535


def test_config_fifo_from_the_command_line_exits_1(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    try:
        result = run_cli("--config.file", str(fifo), "--config.check", timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("--config.check blocked on a FIFO")
    finally:
        unblock(fifo)
    assert result.returncode == 1 and "not a regular file (a FIFO)" in result.stderr


def test_huge_integer_after_an_alias_bomb_is_found_fast(tmp_path: Path) -> None:
    """The key path of a huge integer is looked up in the YAML node graph: with aliases its
    paths are exponentially many (10^9 here); each node is visited once."""
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(8):
        lines.append(
            f"b{i}: &b{i} [" + ", ".join([f"*{'a' if i == 0 else f'b{i - 1}'}"] * 10) + "]"
        )
    lines.append(f"global:\n  interval: {DIGITS_5000}")
    path = tmp_path / "c.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert time.monotonic() - started < 5
    assert (
        f"{path}: global.interval: line 11, column 13: integer of 5001 digits"
        in (info.value.problems[0])
    )


def test_trust_anchor_file_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    """Validated as the config loads, on reload too: a FIFO blocked --config.check and a
    reload (the daemon's event loop) until a writer came."""
    fifo = tmp_path / "anchors"
    os.mkfifo(fifo)
    try:
        loaded = in_thread(lambda: parse_config({"global": {"dnssec_trust_anchors": str(fifo)}}))
        assert isinstance(loaded, ConfigError), loaded
        assert "not a regular file (a FIFO)" in loaded.problems[0]
        assert loaded.problems[0].startswith("global.dnssec_trust_anchors: ")
    finally:
        unblock(fifo)
        unblock(fifo)


@pytest.mark.parametrize(
    "query",
    ["ssl_cert_reqs=none", "ssl_check_hostname=false", "ssl_ca_certs=/tmp/fifo",
     "max_connections=100000", "socket_timeout=0", "health_check_interval=1", "db=3"],
)  # fmt: skip
def test_redis_url_query_parameters_are_refused(query: str) -> None:
    """redis-py's from_url lets a URL's query override every keyword the probe passes:
    ?ssl_cert_reqs=none turned certificate checks off without a word, ?ssl_ca_certs named a file
    ssl reads on the event loop, ?max_connections and the timeouts undid the probe's bounds."""
    url = f"rediss://redis.example:6380/0?{query}"
    found = problems({"queues": [{"name": "app", "kind": "rq", "redis_url": url}]})
    assert found == [
        "queues[0].redis_url: redis_url takes no query parameters (TLS: ca_file; deadlines:"
        " timeout)"
    ]


def test_unix_redis_url_may_name_its_database() -> None:
    entry = {"name": "app", "kind": "rq", "redis_url": "unix:///run/redis.sock?db=2"}
    assert parse_config({"queues": [entry]}).queues[0].redis_url == entry["redis_url"]
    entry["redis_url"] = "unix:///run/redis.sock?db=2&ssl_cert_reqs=none"
    assert problems({"queues": [entry]})[0].endswith("the database of a unix:// URL is ?db=N")


@given(
    st.sampled_from(["redis://", "rediss://", "unix://", "redis://h:1/0?", "unix:///s?"]).flatmap(
        lambda head: st.text(max_size=40).map(lambda tail: head + tail)
    )
)
def test_check_redis_url_raises_only_value_error_and_passes_no_query(url: str) -> None:
    try:
        check_redis_url(url)
    except ValueError as exc:
        assert url not in str(exc) or len(url) < 10
        return
    query = urlsplit(url).query
    assert not query or (url.startswith("unix:") and re.fullmatch(r"db=\d{1,5}", query))
