"""Reload is all or nothing, every failure reads ``config_last_reload_successful 0`` and one short
log line, and ``POST /-/reload`` needs ``--web.enable-lifecycle`` and a same-origin request."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer

from exporter import cli
from exporter.config import load_config
from exporter.daemon import Exporter
from exporter.probes import PROBES

GOOD = {"global": {"nameservers": ["127.0.0.1:9"], "interval": "1h"},
        "domains": [{"domain": "a.example"}, {"domain": "b.example"}]}  # fmt: skip


def reload_successful(exporter: Exporter) -> float:
    for line in exporter.collector.exposition().decode().splitlines():
        if line.startswith("deliverability_config_last_reload_successful "):
            return float(line.split()[-1])
    raise AssertionError("no reload metric")


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Exporter]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    exporter = Exporter(config_path=path, config=load_config(path))
    exporter.start()
    try:
        yield exporter
    finally:
        exporter.stop()
        await exporter.aclose()


def failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("config reload failed")]


def unchanged(exporter: Exporter, runtime: Any) -> None:
    assert exporter.runtime is runtime, "a failed reload swapped the runtime"
    assert set(exporter.state.targets) == {("dns", "a.example"), ("dns", "b.example")}
    assert exporter.config.global_.nameservers == ["127.0.0.1:9"]
    assert reload_successful(exporter) == 0


BAD_FILES = {
    "not_utf8": b"domains:\n  - domain: caf\xe9.example\n",
    "scoped_ipv6": (b"domains:\n  - domain: c.example\n    sending_ips: ['fe80::1%eth0']\n"
                    b"blacklists: {}\n"),
    "duplicate_key": b"domains: []\ndomains: []\n",
    "too_short_interval": b"global: {interval: 1ms}\ndomains: [{domain: c.example}]\n",
    "not_yaml": b"domains: [\n",
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_FILES))
async def test_a_failed_reload_changes_nothing_and_logs_one_short_line(
    running: Exporter, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    runtime = running.runtime
    running.config_path.write_bytes(BAD_FILES[name])
    caplog.set_level(logging.ERROR)
    ok, message = running.reload()
    assert not ok and message
    unchanged(running, runtime)
    (line,) = failures(caplog)
    assert len(str(line.__dict__.get("problem"))) <= 400


async def test_a_config_that_parses_but_cannot_be_built_is_not_half_applied(
    running: Exporter, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New nameservers and new targets come together or not at all (a reload used to swap the
    resolver and then fail building the targets)."""
    kind = PROBES["dns"]
    real = kind.targets

    def exploding(config: Any) -> Any:
        if any(d.domain == "boom.example" for d in config.domains):
            raise ValueError("x" * 100_000)  # a huge message must not make a huge log line
        return real(config)

    monkeypatch.setattr(kind, "targets", exploding)
    runtime = running.runtime
    running.config_path.write_text(yaml.safe_dump({
        "global": {"nameservers": ["127.0.0.1:53"], "interval": "1h"},
        "domains": [{"domain": "boom.example"}],
    }))  # fmt: skip
    caplog.set_level(logging.ERROR)
    ok, message = running.reload()
    assert not ok and message.startswith("cannot apply the config: ValueError: xxx")
    unchanged(running, runtime)
    (line,) = failures(caplog)
    assert len(str(line.__dict__["problem"])) <= 400
    # ...and --config.check and check report the same (exit 1, and 3: check's "unknown").
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # cli.main sets up logging for a process
    try:
        assert cli.main(["--config.file", str(running.config_path), "--config.check"]) == 1
        assert cli.main(["--config.file", str(running.config_path), "check"]) == 3
    finally:
        root.handlers[:], root.level = handlers, level
    # The next good reload applies all of it.
    running.config_path.write_text(yaml.safe_dump(GOOD))
    assert running.reload()[0] and reload_successful(running) == 1
    assert running.runtime is not runtime


async def test_ten_thousand_problems_are_one_log_line(
    running: Exporter, caplog: pytest.LogCaptureFixture
) -> None:
    running.config_path.write_text(yaml.safe_dump(
        {"domains": [{"domain": f"d{i}.example", "interval": "1s"} for i in range(10_000)]}
    ))  # fmt: skip
    caplog.set_level(logging.ERROR)
    ok, message = running.reload()
    assert not ok
    (line,) = failures(caplog)
    assert str(line.__dict__["problem"]).endswith("(and 9999 more)")
    assert len(str(line.__dict__["problem"])) <= 400
    assert len(message.splitlines()) == 51 and message.endswith("... and 9950 more")


# ----- POST /-/reload -------------------------------------------------------------------------


async def post(base: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(base + "-/reload", headers=headers or {}) as resp,
    ):
        return resp.status, await resp.text()


@pytest.mark.parametrize("lifecycle", [False, True])
async def test_http_reload_needs_the_lifecycle_flag_and_the_same_origin(
    running: Exporter, lifecycle: bool
) -> None:
    running.lifecycle = lifecycle
    server = TestServer(running.make_app(), host="127.0.0.1", port=0)
    await server.start_server()
    base = str(server.make_url("/"))
    try:
        running.config_path.write_text(
            yaml.safe_dump({**GOOD, "domains": [{"domain": "c.example"}]})
        )
        # A form on another site posting text/plain: refused whatever the flag says.
        status, _ = await post(base, {"Origin": "http://evil.example",
                                      "Content-Type": "text/plain"})  # fmt: skip
        assert status == 403
        status, _ = await post(base, {"Origin": "null"})
        assert status == 403
        assert ("dns", "c.example") not in running.state.targets
        own = f"http://127.0.0.1:{server.port}"
        for headers in ({"Origin": own}, {}):
            status, text = await post(base, headers)
            if lifecycle:
                assert (status, text) == (200, "config reloaded\n")
            else:
                assert (status, text) == (403, "Lifecycle API is not enabled.\n")
        assert (("dns", "c.example") in running.state.targets) == lifecycle
    finally:
        await server.close()


def test_the_cli_flag_is_off_by_default() -> None:
    parser = cli.build_parser()
    assert parser.parse_args([]).enable_lifecycle is False
    assert parser.parse_args(["--web.enable-lifecycle"]).enable_lifecycle is True
