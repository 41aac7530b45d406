"""Build the container image with podman and check what the Dockerfile promises, for real.

    python3 scripts/image_check.py                          # base image from the registry
    python3 scripts/image_check.py --debootstrap            # no registry: a Debian base, made here

Checks, each printed as ``ok`` or ``FAIL`` (exit 1 on any failure):

1. ``podman build --format docker`` keeps the HEALTHCHECK; the default OCI format drops it (why
   the Dockerfile says to build with ``--format docker``);
2. the image runs as uid 10001 in ``/var/lib/deliverability-exporter``, a volume;
3. every Python distribution in the image is the version ``constraints.txt`` pins;
4. the exporter on a read-only root (``--read-only``, no tmpfs): serves ``/metrics``, the
   HEALTHCHECK command passes, a SIGHUP reload works, nothing is written outside the volume;
5. ``demo`` on a read-only root without a tmpfs: serves (its lab files go to the working
   directory, the volume, when no temporary directory is writable).

``--debootstrap`` is for machines that reach Debian's archive but no image registry: it builds a
base with Debian's python3 (3.11 on bookworm) by ``debootstrap`` and imports it. ``--pip-cert``
mounts a CA bundle into the build for a TLS-intercepting proxy. ``--runtime`` picks the OCI
runtime: a sandbox without CAP_SYS_RESOURCE needs one that sets no rlimits,
``--runtime scripts/runc-norlimits`` (Debian's runc; docs/HARDENING.md, "Container"). Here:

    python3 scripts/image_check.py --debootstrap --pip-cert /etc/ssl/certs/ca-certificates.crt \
        --runtime "$PWD/scripts/runc-norlimits"
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "localhost/deliverability-exporter:check"
DEBIAN_BASE = "localhost/deliverability-exporter-base:bookworm"
FAILED: list[str] = []


def report(ok: bool, what: str, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail and not ok else ""))
    if not ok:
        FAILED.append(what)


class Podman:
    def __init__(self, runtime: str | None) -> None:
        self.base = ["podman"] + (["--runtime", runtime] if runtime else [])

    def run(self, *args: str, check: bool = True, timeout: float = 900) -> str:
        res = subprocess.run([*self.base, *args], capture_output=True, text=True,
                             timeout=timeout, check=False)  # fmt: skip
        if check and res.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args[:3])}...: {res.stderr[-2000:]}")
        return res.stdout


def debootstrap_base(podman: Podman) -> str:
    with tempfile.TemporaryDirectory(prefix="image-base-") as tmp:
        root = Path(tmp) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase",
             "--include=python3,python3-venv,python-is-python3,ca-certificates",
             "bookworm", str(root)],
            check=True, capture_output=True, timeout=1800,
        )  # fmt: skip
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in (root / cache).glob("*"):
                if f.is_file():
                    f.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run([*podman.base, "import", "--change", 'CMD ["python3"]', "-", DEBIAN_BASE],
                       stdin=tar.stdout, check=True, capture_output=True, timeout=600)  # fmt: skip
        tar.wait()
    return DEBIAN_BASE


def build(podman: Podman, base: str | None, fmt: str, tag: str, pip_cert: str | None) -> None:
    args = ["build", "--format", fmt, "-t", tag]
    if base:
        args += ["--build-arg", f"PYTHON_IMAGE={base}"]
    if pip_cert:
        args += ["--build-arg", "PIP_CERT=/etc/ssl/certs/build-ca.crt",
                 "-v", f"{pip_cert}:/etc/ssl/certs/build-ca.crt:ro"]  # fmt: skip
    podman.run(*args, str(ROOT), timeout=1800)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def wait_for(url: str, needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            body = get(url)
            if needle in body:
                return body
        time.sleep(0.5)
    return body


@contextlib.contextmanager
def container(podman: Podman, *args: str) -> Iterator[str]:
    cid = podman.run("run", "-d", "--network", "host", *args).strip()
    try:
        yield cid
    finally:
        podman.run("rm", "-f", cid, check=False)


def check_image(podman: Podman, base: str | None, pip_cert: str | None) -> None:
    build(podman, base, "docker", IMAGE, pip_cert)
    info = json.loads(podman.run("image", "inspect", IMAGE))[0]
    health = (info.get("Healthcheck") or {}).get("Test", [])
    report("healthcheck.py" in " ".join(health), "docker format keeps the HEALTHCHECK", str(health))
    build(podman, base, "oci", IMAGE + "-oci", pip_cert)
    oci = json.loads(podman.run("image", "inspect", IMAGE + "-oci"))[0]
    report(not oci.get("Healthcheck"), "OCI format drops the HEALTHCHECK (hence --format docker)")
    podman.run("rmi", IMAGE + "-oci", check=False)
    config = info["Config"]
    report(config.get("User") == "10001:10001", "runs as uid 10001", str(config.get("User")))
    report(config.get("WorkingDir") == "/var/lib/deliverability-exporter"
           and "/var/lib/deliverability-exporter" in (config.get("Volumes") or {}),
           "working directory is the storage volume", json.dumps(config))  # fmt: skip

    listing = podman.run(
        "run", "--rm", "--read-only", "--entrypoint", "python", IMAGE, "-c",
        "import importlib.metadata as m\n"
        "for d in m.distributions(): print(d.metadata['Name'], d.version)",
    )  # fmt: skip
    installed = {}
    for line in listing.splitlines():
        name, version = line.rsplit(" ", 1)
        installed[name.lower().replace("_", "-").replace(".", "-")] = version
    installed.pop("deliverability-exporter", None)
    pins = dict(
        line.split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    report(installed == pins, "image has exactly the versions of constraints.txt",
           f"differ: {set(installed.items()) ^ set(pins.items())}")  # fmt: skip


def check_runs(podman: Podman) -> None:
    with tempfile.TemporaryDirectory(prefix="image-check-") as tmp:
        cfg = Path(tmp) / "config.yml"
        cfg.write_text("{}\n")
        cfg.chmod(0o644)
        Path(tmp).chmod(0o755)
        port = free_port()
        mount = f"{cfg}:/etc/deliverability-exporter/config.yml:ro"
        with container(podman, "--read-only", "--read-only-tmpfs=false", "-v", mount,
                       "-e", f"HEALTHCHECK_PORT={port}", IMAGE,
                       "--config.file=/etc/deliverability-exporter/config.yml",
                       f"--web.listen-address=127.0.0.1:{port}") as cid:  # fmt: skip
            body = wait_for(f"http://127.0.0.1:{port}/metrics", "deliverability_build_info")
            report("deliverability_build_info" in body, "exporter serves on a read-only root")
            health = subprocess.run(
                [*podman.base, "healthcheck", "run", cid],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            report(health.returncode == 0, "HEALTHCHECK passes", health.stdout + health.stderr)
            podman.run("kill", "--signal", "HUP", cid)
            time.sleep(1)
            body = wait_for(f"http://127.0.0.1:{port}/metrics", "reload_successful 1.0")
            report("deliverability_config_last_reload_successful 1.0" in body, "SIGHUP reload")
            # The bind-mounted config file and its parents show as changed: they are mounts.
            mounted = {"/etc", "/etc/deliverability-exporter",
                       "/etc/deliverability-exporter/config.yml"}  # fmt: skip
            changed = [ln.split(maxsplit=1)[1] for ln in podman.run("diff", cid).splitlines()]
            outside = [
                p for p in changed
                if p not in mounted and not p.startswith("/var/lib/deliverability-exporter")
            ]  # fmt: skip
            report(not outside, "writes nothing outside the volume", str(outside))
        port = free_port()
        with container(podman, "--read-only", "--read-only-tmpfs=false", IMAGE, "demo",
                       "--web.listen-address", f"127.0.0.1:{port}") as cid:  # fmt: skip
            needle = 'deliverability_probe_success{probe="dns",target="healthy.example"} 1.0'
            body = wait_for(f"http://127.0.0.1:{port}/metrics", needle, timeout=90)
            logs = podman.run("logs", cid, check=False)
            report(needle in body, "demo runs on a read-only root without a tmpfs", logs[-1500:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="PYTHON_IMAGE build argument (default: the Dockerfile's)")
    parser.add_argument(
        "--debootstrap",
        action="store_true",
        help="make a Debian bookworm base with debootstrap (no registry needed)",
    )
    parser.add_argument("--pip-cert", help="CA bundle to trust while pip downloads in the build")
    parser.add_argument("--runtime", help="OCI runtime for podman (path or name)")
    args = parser.parse_args()  # fmt: skip
    if shutil.which("podman") is None:
        print("podman is not installed", file=sys.stderr)
        return 2
    podman = Podman(args.runtime)
    base = debootstrap_base(podman) if args.debootstrap else args.base
    check_image(podman, base, args.pip_cert)
    check_runs(podman)
    podman.run("rmi", IMAGE, check=False)
    print(f"{'FAILED: ' + ', '.join(FAILED) if FAILED else 'all checks passed'}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
