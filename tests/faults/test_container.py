"""The container contract without a container engine: the Dockerfile's final stage runs as a
non-root user and keeps Python from writing bytecode, and the exporter, run as that unprivileged
uid with an unwritable home and working directory, serves, probes and reloads while writing no
file anywhere but its storage volume (what a read-only root filesystem with one volume demands)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from dnsserver import DnsServer
from servers.mail import free_port

ROOT = Path(__file__).resolve().parents[2]
UID = 10001


def final_stage() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile's last stage, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        instr, _, args = line.partition(" ")
        if instr.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instr.upper(), args.strip()))
    return stages[-1]


def test_dockerfile_runs_as_non_root_without_writing_bytecode() -> None:
    stage = final_stage()
    users = [args for instr, args in stage if instr == "USER"]
    assert users, "the final stage sets no USER (it would run as root)"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root") and user.isdigit(), f"USER {user}: use a numeric non-root uid"
    env = " ".join(args for instr, args in stage if instr == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # no __pycache__ writes on a read-only root
    assert any(instr == "HEALTHCHECK" for instr, _ in stage)
    # The one writable place: the store's volume, which the default command points at.
    volumes = [args for instr, args in stage if instr == "VOLUME"]
    assert volumes == ['["/var/lib/deliverability-exporter"]'], volumes
    cmd = " ".join(args for instr, args in stage if instr == "CMD")
    assert '"--storage.path=/var/lib/deliverability-exporter"' in cmd


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root + setpriv")
def test_exporter_as_unprivileged_uid_writes_nothing() -> None:
    probe = subprocess.run(
        ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", sys.executable, "-c", ""],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"uid {UID} cannot run this interpreter here: {probe.stderr.strip()[:200]}")
    with tempfile.TemporaryDirectory(prefix="container-") as tmp:
        _run_unprivileged(Path(tmp))


def _run_unprivileged(tmp_path: Path) -> None:
    dns = DnsServer()
    dns.add_txt("example.test", "v=spf1 -all")
    dns.start()
    config = tmp_path / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {
                    "nameservers": [dns.address],
                    "interval": "1h",
                    "timeout": "3s",
                    "dnssec": False,
                },
                "domains": [{"domain": "example.test"}],
                "blacklists": {"ip_zones": [], "domain_zones": []},
            }
        )
    )
    config.chmod(0o644)
    tmp_path.chmod(0o755)
    storage = tmp_path / "storage"
    storage.mkdir()
    os.chown(storage, UID, UID)
    marker = tmp_path / "marker"
    marker.write_text("")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": "/nonexistent",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", sys.executable,
         "-m", "exporter", f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
         f"--storage.path={storage}", "--web.enable-lifecycle"],
        cwd="/", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        body = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and 'probe="dns"' not in body:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r,
            ):
                body = r.read().decode()
            time.sleep(0.2)
        assert 'deliverability_probe_success{probe="dns",target="example.test"} 1.0' in body
        req = urllib.request.Request(f"http://127.0.0.1:{port}/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
        dns.stop()
    assert "Traceback" not in out, out
    found = subprocess.run(
        ["find", "/", "-xdev", "-path", str(storage), "-prune", "-o", "-uid", str(UID),
         "-newer", str(marker), "-print", "-quit"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert found.stdout.strip() == "", f"the exporter wrote {found.stdout.strip()}"
    assert (storage / "deliverability-exporter.sqlite3").is_file()  # its one place


# A read-only root the way `docker run --read-only` makes it, in a mount namespace of its own
# (the remount is private to it): every temporary directory tempfile would try is read-only.
READ_ONLY_ROOT = 'mount -o remount,bind,ro / && {tmpfs} cd / && exec "$@"'


def _demo_on_read_only_root(*, tmpfs: bool) -> subprocess.Popen[str]:
    script = READ_ONLY_ROOT.format(tmpfs="mount -t tmpfs tmpfs /mnt &&" if tmpfs else "")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": "/nonexistent",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(ROOT),
    }
    if tmpfs:
        env["TMPDIR"] = "/mnt"
    return subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         sys.executable, "-m", "exporter", "demo", "--web.listen-address", "127.0.0.1:0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root")
def test_demo_on_a_read_only_root_says_what_to_do() -> None:
    proc = _demo_on_read_only_root(tmpfs=False)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in err
    assert err.startswith("demo: no writable temporary directory")
    assert "set TMPDIR to a writable directory, or mount a tmpfs on /tmp" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root")
def test_demo_on_a_read_only_root_with_a_tmpfs_as_tmpdir() -> None:
    proc = _demo_on_read_only_root(tmpfs=True)
    try:
        assert proc.stdout is not None
        base = None
        for line in proc.stdout:
            if "Metrics" in line:
                base = line.split()[-1]
                break
        assert base and base.startswith("http://127.0.0.1:"), proc.stderr
        body = ""
        healthy = 'deliverability_probe_success{probe="dns",target="healthy.example"} 1.0'
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and healthy not in body:
            with contextlib.suppress(OSError), urllib.request.urlopen(base, timeout=5) as r:
                body = r.read().decode()
            time.sleep(0.3)
        assert healthy in body
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
