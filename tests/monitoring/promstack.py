"""Real Prometheus and Alertmanager on loopback for the end-to-end monitoring tests.

Both are the Debian binaries, started as subprocesses from a temporary directory on free ports
and stopped by PID. Their configs are the bundled ``deploy/prometheus.yml`` and
``deploy/alertmanager.yml`` with only addresses and timings changed, and the rules are the
bundled ``alerts/*.rules.yml`` with every ``for:`` divided by 360 (30m becomes 5s).
Alertmanager's receivers point at :class:`Webhook`, a small HTTP server (standard library) that
records each notification.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import yaml
from monitoring_support import DEPLOY, RULE_FILES, shorten_for, tool

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, predicate: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            value, last = None, exc
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:g}s (last error: {last!r})")


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bytes(response.read())


class Webhook:
    """Alertmanager webhook receiver: keeps (path, alert) for every alert of every notification."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                payload = json.loads(body)
                with hook._lock:
                    hook.received += [(self.path, a) for a in payload.get("alerts", [])]
                self.send_response(200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Webhook:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def alerts(self, status: str = "firing") -> list[tuple[str, dict[str, str]]]:
        """(receiver path, labels) of every alert notified with that status."""
        with self._lock:
            return [(p, a["labels"]) for p, a in self.received if a["status"] == status]


class Daemon:
    """One subprocess with its log file; stopped by PID (terminate, then kill)."""

    def __init__(self, name: str, args: list[str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


RUNBOOK_BASE_URL = "https://runbooks.example.test/deliverability/RUNBOOK.md"
"""The external label the end-to-end Prometheus runs with: every alert must link under it."""


def alertmanager_config(webhook: Webhook) -> dict[str, Any]:
    """deploy/alertmanager.yml with the receivers at the webhook (same paths) and fast timings."""
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "alertmanager.yml").read_text())
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            path = urllib.parse.urlsplit(hook["url"]).path
            hook["url"] = webhook.url + path
    routes = [config["route"], *config["route"].get("routes", [])]
    for route in routes:
        route.update(group_wait="0s", group_interval="1s", repeat_interval="1h")
    return config


def prometheus_config(exporter: str, alertmanager: str) -> dict[str, Any]:
    """deploy/prometheus.yml scraping ``exporter`` every second, alerting ``alertmanager``."""
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["global"]["external_labels"]["runbook_base_url"] = RUNBOOK_BASE_URL
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    (job,) = [j for j in config["scrape_configs"] if "deliverability" in j["job_name"]]
    job["static_configs"] = [{"targets": [exporter]}]
    config["scrape_configs"] = [job]
    return config


class PromStack:
    """Alertmanager (receivers at a webhook) and Prometheus (bundled rules) on free ports."""

    def __init__(self, workdir: Path, exporter: str, for_scale: float = 360) -> None:
        self.workdir = workdir
        self.webhook = Webhook().start()
        self.am_port = free_port()
        self.prom_port = free_port()
        self.prom_url = f"http://127.0.0.1:{self.prom_port}"
        self.am_url = f"http://127.0.0.1:{self.am_port}"
        am_dir = workdir / "alertmanager"
        am_dir.mkdir()
        (am_dir / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config(self.webhook)))
        prom_dir = workdir / "prometheus"
        (prom_dir / "rules").mkdir(parents=True)
        for rule_file in RULE_FILES:
            text = shorten_for(rule_file.read_text(), for_scale)
            (prom_dir / "rules" / rule_file.name).write_text(text)
        config = prometheus_config(exporter, f"127.0.0.1:{self.am_port}")
        (prom_dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.daemons: list[Daemon] = []
        try:
            self.daemons.append(
                Daemon("alertmanager", [
                    tool("prometheus-alertmanager"),
                    f"--config.file={am_dir / 'alertmanager.yml'}",
                    f"--storage.path={am_dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.am_port}",
                    "--cluster.listen-address=",
                ], am_dir)
            )  # fmt: skip
            self.daemons.append(
                Daemon("prometheus", [
                    tool("prometheus"),
                    f"--config.file={prom_dir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={prom_dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.prom_port}",
                ], prom_dir)
            )  # fmt: skip
            wait_for("alertmanager ready", lambda: get(self.am_url + "/-/ready"))
            wait_for("prometheus ready", lambda: get(self.prom_url + "/-/ready"))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.stop()
        self.webhook.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {d.name}\n{d.log()}" for d in self.daemons)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the result vector (raises on a query error)."""
        url = self.prom_url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            body = json.loads(get(url))
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"query {expr!r}: {exc.read().decode()}") from None
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        if body["data"]["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return result

    def label_values(self, label: str, match: str) -> list[str]:
        url = f"{self.prom_url}/api/v1/label/{label}/values?" + urllib.parse.urlencode(
            {"match[]": match}
        )
        values: list[str] = json.loads(get(url))["data"]
        return values

    def rule_alerts(self) -> list[dict[str, Any]]:
        """Every pending or firing alert as Prometheus sees it."""
        alerts: list[dict[str, Any]] = json.loads(get(self.prom_url + "/api/v1/alerts"))["data"][
            "alerts"
        ]
        return alerts
