"""Fuzzing the config loaders with hypothesis: the exporter config (as data and as YAML text)
and the ``--web.config.file``. Whatever the input, loading returns a config or raises the
loader's own error (``ConfigError``, ``WebConfigError``) whose messages are plain text lines."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from apscheduler.triggers.interval import IntervalTrigger
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.config import MAX_DURATION, ConfigError, load_config, parse_config, parse_duration
from exporter.daemon import _jitter, all_targets
from exporter.net.addr import parse_nameserver
from exporter.webconfig import WebConfigError, load_web_config

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-(10**400), 10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "30s", "5m", "1h30m", "0s", "-1s", "500ms", "1d", "1x", "", " ", "example.com",
            "192.0.2.10", "2001:db8::1", "127.0.0.1:5353", "[::1]:53", "host:99999", "smtp:587",
            "starttls", "tls", "none", "INBOX", "Junk", "a@b.test", "us-east-1", "zen.spamhaus.org",
            "127.0.0.2", "http://127.0.0.1:1", "x" * 300, "ü.test", "-.test", "a..b",
            "postfix", "rq", "celery", "redis://127.0.0.1:6379/0", "rediss://:pw@h:1/x",
            "unix:///run/redis.sock", "mail", "default",
        ]
    ),
    st.text(max_size=20),
)  # fmt: skip

_KEYS = st.sampled_from(
    [
        "global", "interval", "timeout", "nameservers", "domains", "domain", "dkim_selectors",
        "sending_ips", "blacklists", "ip_zones", "domain_zones", "zones", "zone", "codes",
        "error_codes", "max_in_flight", "self_test", "tls", "target", "mx_of", "starttls",
        "server_name", "ca_file", "username", "password_env", "password_file", "ses", "region",
        "identities", "endpoint_url", "name", "max_attempts", "roundtrip", "from", "to", "smtp",
        "imap", "host", "port", "security", "mailbox", "spam_folder", "poll_interval", "unknown",
        "queues", "kind", "redis_url", "postfix_config_dir", "postqueue_path", "key_prefix",
        "thresholds", "oldest_age", "oldest_age_critical", "deferred", "deferred_critical",
        "failed_increase", "growing_runs",
    ]
)  # fmt: skip

_VALUES: st.SearchStrategy[Any] = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(_KEYS | st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=12,
)

_SECTIONS = st.fixed_dictionaries(
    {},
    optional={
        "global": _VALUES,
        "domains": st.lists(st.dictionaries(_KEYS, _VALUES, max_size=4), max_size=3) | _VALUES,
        "blacklists": st.dictionaries(_KEYS, _VALUES, max_size=4) | _VALUES,
        "tls": st.lists(st.dictionaries(_KEYS, _VALUES, max_size=4), max_size=3),
        "ses": st.lists(st.dictionaries(_KEYS, _VALUES, max_size=4), max_size=3),
        "roundtrip": st.lists(st.dictionaries(_KEYS, _VALUES, max_size=6), max_size=2),
        "queues": st.lists(st.dictionaries(_KEYS, _VALUES, max_size=5), max_size=2),
    },
)


def _assert_problems(exc: ConfigError) -> None:
    assert exc.problems, "a ConfigError lists at least one problem"
    assert all(isinstance(p, str) and p for p in exc.problems)


@FUZZ
@given(_SECTIONS | _VALUES)
@example({"global": {"interval": float("nan")}})
@example({"global": {"interval": float("inf")}})
@example({"domains": [{"domain": "a" * 300 + ".test"}]})
def test_config_data_raises_only_config_error(data: Any) -> None:
    try:
        config = parse_config(data)
    except ConfigError as exc:
        _assert_problems(exc)
        return
    # Every config that loads can be scheduled: each target's interval makes a trigger whose
    # next fire time can be computed (found by this test: NaN and infinite durations loaded,
    # then crashed the scheduler at start).
    now = datetime.now(UTC)
    for target in all_targets(config):
        assert 0 < target.timeout <= MAX_DURATION
        trigger = IntervalTrigger(seconds=target.interval, jitter=_jitter(target.interval))
        assert trigger.get_next_fire_time(None, now) is not None


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1e400", "366d", "100000000d"])
def test_unschedulable_durations_are_config_errors(value: str) -> None:
    with pytest.raises(ConfigError, match=r"global\.interval: "):
        parse_config(yaml.safe_load(f"global: {{interval: {value}}}"))


@FUZZ
@given(
    st.one_of(
        _SECTIONS.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
        st.text(max_size=200),
        st.sampled_from(["{", "- - -", "a: *x", "!!python/object:os.system {}", "a: [1, 2", "\t"]),
    )
)
def test_config_file_raises_only_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(text)
        try:
            load_config(path)
        except ConfigError as exc:
            _assert_problems(exc)


@FUZZ
@given(
    st.one_of(
        st.dictionaries(
            st.sampled_from(["tls_server_config", "basic_auth_users", "http_server_config"]),
            _VALUES
            | st.dictionaries(
                st.sampled_from(
                    [
                        "cert_file",
                        "key_file",
                        "client_auth_type",
                        "client_ca_file",
                        "min_version",
                        "alice",
                    ]
                ),
                _SCALARS,
                max_size=4,
            ),
            max_size=3,
        ).map(yaml.safe_dump),
        st.text(max_size=100),
    )
)
@example("basic_auth_users: {alice: $2b$notreallyahash}")
@example("basic_auth_users: {alice: 12}")
@example("tls_server_config: {cert_file: /nonexistent, key_file: /nonexistent}")
def test_web_config_raises_only_web_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "web.yaml"
        path.write_text(text)
        try:
            load_web_config(str(path))
        except WebConfigError as exc:
            assert str(exc).startswith(str(path))


_NUMERIC_KEYS = [
    ("global", "interval"), ("global", "timeout"), ("blacklists", "max_in_flight"),
    ("queues", "deferred"), ("queues", "failed_increase"), ("queues", "growing_runs"),
    ("queues", "oldest_age"), ("ses", "max_attempts"), ("ses", "interval"),
]  # fmt: skip


def _numeric_config(where: tuple[str, str], number: str) -> str:
    section, key = where
    if section == "queues":
        return (
            f"queues:\n  - name: mta\n    kind: postfix\n    thresholds:\n      {key}: {number}\n"
        )
    if section == "ses":
        return f"ses:\n  - region: eu-west-1\n    {key}: {number}\n"
    return f"{section}:\n  {key}: {number}\n"


@FUZZ
@given(
    st.sampled_from(_NUMERIC_KEYS),
    st.integers(1, 6000).map(lambda n: "1" + "0" * (n - 1)) | st.sampled_from(["-1" + "0" * 400]),
)
def test_numbers_of_any_length_are_config_errors_with_their_key(
    where: tuple[str, str], number: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(_numeric_config(where, number))
        try:
            load_config(path)
        except ConfigError as exc:
            _assert_problems(exc)
            assert all(where[1] in p for p in exc.problems), exc.problems


@FUZZ
@given(_SCALARS | st.text("0123456789.smhd ", max_size=12))
def test_duration_raises_only_value_error(value: Any) -> None:
    try:
        seconds = parse_duration(value)
    except ValueError:
        return
    assert 0 < seconds <= MAX_DURATION


@FUZZ
@given(st.text(max_size=40) | st.text("0123456789abcdef:.[]", max_size=30))
def test_nameserver_raises_only_value_error(text: str) -> None:
    try:
        host, port = parse_nameserver(text)
    except ValueError:
        return
    assert 0 < port < 65536 and host


@pytest.mark.parametrize("port", ["\u00b2", "\u0663", "1\u00b9"])
def test_nameserver_port_of_non_ascii_digits_is_a_bad_port(port: str) -> None:
    """Superscripts pass str.isdigit() (int() then raised its own message), Arabic-Indic digits
    pass int(): neither is a port."""
    with pytest.raises(ValueError, match="bad port in nameserver"):
        parse_nameserver(f"127.0.0.1:{port}")
