"""A signed DNS hierarchy on loopback, its own root included, with three independent views of it.

* **knot** (Debian ``knot``) serves every zone from one process: the root ".", the TLDs
  ``test.``, ``nsec3.`` and ``optout.`` and the zones below them. Zones of kind ``nsec``,
  ``nsec3`` and ``optout`` are signed by knot itself (``dnssec-signing: on``, keys made with
  ``keymgr`` first so that each parent can carry its child's DS from the start); zones of kind
  ``presigned`` are signed by :mod:`dnssec_signer` (correctly or deliberately broken) and served
  with signing off; ``unsigned`` zones are not signed at all.
* **unbound** (Debian ``unbound``) in front of knot, with a stub zone for "." and for every lab
  zone (so that nothing ever leaves the machine): ``iterator`` only, or ``validator iterator``
  with the lab's root DS as trust anchor.
* **delv** (Debian ``bind9-dnsutils``) validating against knot with the same anchor: the
  independent verdict the exporter's validator is compared with.

Every zone holds the same records (:data:`BODY`), so the same questions can be asked of each.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.query
from dnssec_signer import ALGORITHM, LabKey, Nsec3Params, SignSpec, sign, tamper_with

BODY = """\
@ MX 10 mx
@ A 192.0.2.1
@ TXT "v=spf1 -all"
www A 192.0.2.2
mx A 192.0.2.25
mx AAAA 2001:db8::25
*.wild A 192.0.2.3
alias CNAME www
a.b A 192.0.2.4
"""

QUESTIONS = [
    ("", "MX"),
    ("www", "A"),
    ("mx", "AAAA"),
    ("nx", "A"),  # NXDOMAIN
    ("www", "TXT"),  # NODATA
    ("x.wild", "A"),  # wildcard
    ("alias", "A"),  # CNAME
    ("b", "A"),  # empty non-terminal
]
"""Names relative to each zone and the type asked."""


KNOT_KINDS = {
    "nsec": "",
    "nsec3": "    nsec3: on\n    nsec3-iterations: 0\n",
    "optout": "    nsec3: on\n    nsec3-iterations: 0\n    nsec3-opt-out: on\n",
}


@dataclass
class LabZone:
    name: str
    kind: str
    """``nsec``, ``nsec3``, ``optout`` (signed by knot), ``presigned`` or ``unsigned``."""
    extra: str = ""
    """Records beyond SOA, NS and :data:`BODY` (delegations, CNAMEs to other zones)."""
    spec: SignSpec | None = None
    wrong_ds: bool = False
    """The parent carries a DS for a key the zone does not have."""
    body: bool = True
    algorithm: str = "ecdsap256sha256"
    """The key algorithm of a zone knot signs."""
    parent_ds: tuple[str, ...] = ()
    """DS records the parent carries for an unsigned zone (e.g. of an unknown algorithm)."""

    @property
    def policy(self) -> str | None:
        """knot's policy (and template) id for a zone knot signs."""
        return f"{self.kind}-{self.algorithm}" if self.kind in KNOT_KINDS else None

    @property
    def parent(self) -> str | None:
        if self.name == ".":
            return None
        parent = self.name.split(".", 1)[1]
        return parent or "."

    @property
    def signed(self) -> bool:
        return self.kind != "unsigned"


def _presigned(
    name: str,
    tamper: dict[tuple[str, str], str] | None = None,
    *,
    everything: str | None = None,
    nsec3: Nsec3Params | None = None,
    hole: str | None = None,
    wrong_ds: bool = False,
    lifetime_days: float = 14,
    algorithm: int = ALGORITHM,
) -> LabZone:
    spec = SignSpec(
        keys=[LabKey.generate(algorithm=algorithm)],
        nsec3=nsec3,
        tamper=tamper_with(tamper or {}, everything),
        skip_denial={hole} if hole else set(),
        expiration=time.time() + lifetime_days * 86400,
    )
    return LabZone(name, "presigned", spec=spec, wrong_ds=wrong_ds)


def _sha1_beside_wrong_sha256(name: str) -> LabZone:
    """A zone whose parent has the right SHA-1 DS of its key and a SHA-256 DS of the same key
    tag that matches nothing: RFC 4509 §3 says to ignore the SHA-1 one (a downgrade)."""
    key = LabKey.generate()
    right_sha1 = key.ds(name, "SHA1")
    tag = right_sha1.split()[0]
    spec = SignSpec(keys=[key])
    return LabZone(name, "presigned", spec=spec, parent_ds=(right_sha1, f"{tag} 13 2 " + "00" * 32))


def lab_zones() -> list[LabZone]:
    """The hierarchy: what each zone is for is in its name."""
    return [
        LabZone(".", "nsec", body=False),
        LabZone("test.", "nsec", extra="ns A 127.0.0.1\n"),
        LabZone(
            "secure.test.",
            "nsec",
            extra=(
                "ins CNAME www.unsigned.test.\nbog CNAME www.expired.test.\n"
                "sec3 CNAME www.secure.nsec3.\nloop CNAME loop.unsigned.test.\n"
                # A DNAME whose expansion of a long name exceeds 255 octets (YXDOMAIN).
                f"dn DNAME {'a' * 63}.{'b' * 63}.{'c' * 63}.secure.test.\n"
                # A name below the wildcard's parent: q.e.wild is no expansion of *.wild.
                'e.wild TXT "explicit"\n'
            ),
        ),
        LabZone("unsigned.test.", "unsigned", extra="loop CNAME loop.secure.test.\n"),
        LabZone("p384.test.", "nsec", algorithm="ecdsap384sha384"),
        LabZone("mxbogus.test.", "nsec", extra="@ MX 20 mx.expired.test.\n"),
        _presigned("expiring.test.", lifetime_days=5),
        _presigned("lapsing.test.", lifetime_days=1),
        LabZone("rsa.test.", "nsec3", algorithm="rsasha512"),
        # A DS of a private algorithm only: validators treat the zone as unsigned (RFC 4035 §5.2).
        LabZone("privatealg.test.", "unsigned", parent_ds=("12345 253 2 " + "AB" * 32,)),
        # Prohibited algorithms (RFC 8624 §3.1) are unsupported too: signed with DSA, or only a
        # DS of RSA/MD5 or DSA-NSEC3-SHA1 (beside one of a private algorithm).
        _presigned("dsa.test.", algorithm=dns.dnssec.Algorithm.DSA),
        LabZone("md5.test.", "unsigned", parent_ds=("12345 1 2 " + "AB" * 32,)),
        # A supported algorithm but only GOST digests (not implemented): insecure too.
        LabZone("gostds.test.", "unsigned", parent_ds=("12345 13 3 " + "AB" * 32,)),
        LabZone(
            "dsansec3.test.",
            "unsigned",
            parent_ds=("12345 6 2 " + "AB" * 32, "12346 253 2 " + "CD" * 32),
        ),
        _presigned("expired.test.", everything="expired"),
        _presigned("stale.test.", {("www", "A"): "expired", ("@", "MX"): "expired"}),
        _presigned("future.test.", {("www", "A"): "future"}),
        _presigned("nosig.test.", {("www", "A"): "unsigned", ("@", "MX"): "unsigned"}),
        _presigned("badsig.test.", {("www", "A"): "corrupt"}),
        _presigned("badkeysig.test.", {("@", "DNSKEY"): "corrupt"}),
        _presigned("badds.test.", wrong_ds=True),
        _sha1_beside_wrong_sha256("sha1ds.test."),
        _presigned("pnsec.test.", hole="hole"),
        LabZone("unsigned.pnsec.test.", "unsigned"),
        LabZone("hole.pnsec.test.", "unsigned"),
        _presigned("p3.test.", nsec3=Nsec3Params(iterations=2, salt=b"\xab\xcd")),
        LabZone("unsigned.p3.test.", "unsigned"),
        _presigned("p3oo.test.", nsec3=Nsec3Params(opt_out=True)),
        # Over the 150 NSEC3 iterations validators accept (RFC 9276 §3.2): proofs are insecure.
        _presigned("p3costly.test.", nsec3=Nsec3Params(iterations=151, salt=b"\x01")),
        LabZone("unsigned.p3costly.test.", "unsigned"),
        # NSEC3 records with an unknown flag: to be ignored (RFC 5155 §8.2), so nothing is proven.
        _presigned("p3flags.test.", nsec3=Nsec3Params(flags=0x80)),
        LabZone("unsigned.p3flags.test.", "unsigned"),
        LabZone("unsigned.p3oo.test.", "unsigned"),
        _presigned("p3hole.test.", nsec3=Nsec3Params(), hole="unsigned"),
        LabZone("unsigned.p3hole.test.", "unsigned"),
        LabZone("nsec3.", "nsec3", body=False),
        LabZone("secure.nsec3.", "nsec", algorithm="ed25519"),
        LabZone("unsigned.nsec3.", "unsigned"),
        LabZone("optout.", "optout", body=False),
        LabZone("secure.optout.", "nsec3", algorithm="rsasha256"),
        LabZone("unsigned.optout.", "unsigned"),
    ]


# ----- processes ------------------------------------------------------------------------------
def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1."""
    while True:
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def _exe(name: str) -> str:
    path = shutil.which(name) or f"/usr/sbin/{name}"
    assert Path(path).exists(), (
        f"{name} is required (Debian packages knot, unbound, bind9-dnsutils)"
    )
    return path


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _answers(port: int, name: str, rdtype: str = "SOA") -> dns.message.Message | None:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    with contextlib.suppress(OSError, dns.exception.DNSException):
        return dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
    return None


def _zone_file_name(zone: str) -> str:
    return "root.zone" if zone == "." else f"{zone.rstrip('.')}.zone"


@dataclass
class DnssecLab:
    """The hierarchy served by knot; :meth:`unbound` starts resolvers in front of it."""

    workdir: Path
    zones: list[LabZone] = field(default_factory=lab_zones)
    port: int = 0
    root_ds: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def anchor_file(self) -> Path:
        """The root's DS records as zone-file lines (the exporter's and unbound's format)."""
        return self.workdir / "root-anchors.txt"

    def start(self) -> DnssecLab:
        for sub in ("run", "db", "keys", "zones"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = self.workdir / "knot.conf"
        conf.write_text(self._knot_conf())
        ds = self._keys(conf)
        for zone in self.zones:
            text = self._zone_text(zone, ds)
            if zone.kind == "presigned":
                assert zone.spec is not None
                text = sign(text, zone.name, zone.spec)
            (self.workdir / "zones" / _zone_file_name(zone.name)).write_text(text)
        self.root_ds = [d for d in ds["."] if d.split()[2] == "2"]
        self.anchor_file.write_text("".join(f". IN DS {d}\n" for d in self.root_ds))
        (self.workdir / "delv-anchors.conf").write_text(
            "trust-anchors {\n"
            + "".join(
                f'  . static-ds {" ".join(d.split()[:3])} "{d.split()[3]}";\n' for d in self.root_ds
            )
            + "};\n"
        )
        self.proc = subprocess.Popen(
            [_exe("knotd"), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._wait_loaded()
        return self

    def stop(self) -> None:
        _stop(self.proc)

    def _knot_conf(self) -> str:
        d = self.workdir
        policies = {z.policy: z for z in self.zones if z.policy is not None}
        policy_text = "".join(
            f"  - id: {pid}\n    algorithm: {z.algorithm}\n    manual: on\n{KNOT_KINDS[z.kind]}"
            for pid, z in policies.items()
        )
        templates = "".join(
            f'  - id: {pid}\n    storage: "{d}/zones"\n    dnssec-signing: on\n'
            f"    dnssec-policy: {pid}\n    zonefile-sync: -1\n    journal-content: none\n"
            for pid in policies
        )
        zone_text = "".join(
            f'  - domain: "{z.name}"\n    file: "{_zone_file_name(z.name)}"\n'
            + (f"    template: {z.policy}\n" if z.policy else "")
            for z in self.zones
        )
        return (
            f'server:\n    rundir: "{d}/run"\n    listen: 127.0.0.1@{self.port}\n'
            "    udp-workers: 2\n    tcp-workers: 2\n    background-workers: 2\n"
            "log:\n  - target: stderr\n    any: warning\n"
            f'control:\n    listen: "{d}/run/knot.sock"\n'
            f'database:\n    storage: "{d}/db"\n'
            f'keystore:\n  - id: default\n    backend: pem\n    config: "{d}/keys"\n'
            f"policy:\n{policy_text}"
            f'template:\n  - id: default\n    storage: "{d}/zones"\n'
            "    zonefile-sync: -1\n    journal-content: none\n"
            f"{templates}"
            f"zone:\n{zone_text}"
        )

    def _keys(self, conf: Path) -> dict[str, list[str]]:
        """DS rdata texts per zone (SHA-256 and SHA-384 for the zones knot signs), with the
        keys made before knot starts."""
        keymgr = _exe("keymgr")
        ds: dict[str, list[str]] = {}
        for zone in self.zones:
            if zone.policy is not None:
                args = [keymgr, "-c", str(conf), zone.name]
                size = ["size=2048"] if zone.algorithm.startswith("rsa") else []
                subprocess.run(
                    [*args, "generate", f"algorithm={zone.algorithm}", *size, "ksk=yes", "zsk=yes"],
                    check=True, capture_output=True, timeout=30,
                )  # fmt: skip
                out = subprocess.run(
                    [*args, "ds"], check=True, capture_output=True, text=True, timeout=30
                ).stdout
                ds[zone.name] = [
                    line.split(" DS ", 1)[1].strip()
                    for line in out.splitlines()
                    if re.search(r" DS \d+ \d+ [24] ", line)
                ]
            elif zone.parent_ds:
                ds[zone.name] = list(zone.parent_ds)
            elif zone.kind == "presigned":
                assert zone.spec is not None
                key = LabKey.generate() if zone.wrong_ds else zone.spec.keys[0]
                ds[zone.name] = [key.ds(zone.name)]
        return ds

    def _zone_text(self, zone: LabZone, ds: dict[str, list[str]]) -> str:
        lines = [
            f"$ORIGIN {zone.name}",
            "$TTL 300",
            "@ SOA ns.test. hostmaster.test. 1 3600 600 86400 300",
            "@ NS ns.test.",
        ]
        for child in self.zones:
            if child.parent != zone.name:
                continue
            lines.append(f"{child.name} NS ns.test.")
            lines.extend(f"{child.name} DS {d}" for d in ds.get(child.name, []))
        text = "\n".join(lines) + "\n" + zone.extra
        return text + (BODY if zone.body else "")

    def _wait_loaded(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        pending = {z.name for z in self.zones}
        while pending and time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"knotd exited: {err}")
            for name in sorted(pending):
                zone = next(z for z in self.zones if z.name == name)
                reply = _answers(self.port, name)
                if reply is None or not reply.answer:
                    continue
                if zone.signed and len(reply.answer) < 2:  # SOA and its RRSIG
                    continue
                pending.discard(name)
            time.sleep(0.05)
        if pending:
            self.stop()
            raise RuntimeError(f"knotd did not load {sorted(pending)}")

    # ----- independent verdicts -------------------------------------------------------------
    def delv(self, name: str, rdtype: str, server: str | None = None) -> str:
        """delv's verdict on ``name``/``rdtype``: ``secure``, ``insecure`` or ``bogus``."""
        host, _, port = (server or self.address).partition(":")
        res = subprocess.run(
            [
                _exe("delv"), "-a", str(self.workdir / "delv-anchors.conf"), "+root=.",
                f"@{host}", "-p", port, name, rdtype,
            ],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        return delv_status(res.stdout + res.stderr)

    @contextlib.contextmanager
    def unbound(self, validating: bool) -> Iterator[Unbound]:
        resolver = Unbound(self, validating).start()
        try:
            yield resolver
        finally:
            resolver.stop()


def delv_status(output: str) -> str:
    """Map delv's output to secure / insecure / bogus, the worst over the links of a CNAME
    chain that delv followed itself (one block per link)."""
    # "no valid signature found" alone is not a failure: delv prints it too before proving the
    # zone insecure (a DS of an unsupported algorithm), then "unsigned answer".
    unsigned = "unsigned answer" in output
    problems = [
        line
        for line in output.splitlines()
        if ("resolution failed" in line and "ncache nx" not in line)
        or ("no valid signature" in line and not unsigned)
        or "broken trust chain" in line
        or "insecurity proof failed" in line
    ]
    if problems:
        return "bogus"
    if "unsigned answer" in output:
        return "insecure"
    if "fully validated" in output:  # also "; negative response, fully validated"
        return "secure"
    raise AssertionError(f"unexpected delv output:\n{output}")


@dataclass
class Unbound:
    """unbound in front of the lab's knot (iterator only, or validating with the lab anchor)."""

    lab: DnssecLab
    validating: bool
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Unbound:
        self.port = free_port()
        d = self.lab.workdir / f"unbound-{'val' if self.validating else 'it'}-{self.port}"
        d.mkdir()
        stubs = "".join(
            f'stub-zone:\n    name: "{z.name}"\n    stub-addr: 127.0.0.1@{self.lab.port}\n'
            for z in self.lab.zones
        )
        modules = "validator iterator" if self.validating else "iterator"
        anchor = f'    trust-anchor-file: "{self.lab.anchor_file}"\n' if self.validating else ""
        conf = d / "unbound.conf"
        conf.write_text(
            "server:\n"
            f"    interface: 127.0.0.1\n    port: {self.port}\n"
            '    do-daemonize: no\n    chroot: ""\n    username: ""\n'
            f'    directory: "{d}"\n    pidfile: ""\n    use-syslog: no\n    logfile: ""\n'
            "    verbosity: 0\n    num-threads: 1\n    so-reuseport: no\n"
            "    access-control: 127.0.0.0/8 allow\n    do-not-query-localhost: no\n"
            "    do-ip6: no\n    qname-minimisation: no\n    harden-referral-path: no\n"
            '    target-fetch-policy: "0 0 0 0 0"\n    prefetch: no\n'
            f'    module-config: "{modules}"\n{anchor}'
            '    local-zone: "test." nodefault\n'
            "remote-control:\n    control-enable: no\n"
            f"{stubs}"
        )
        self.proc = subprocess.Popen(
            [_exe("unbound"), "-d", "-p", "-c", str(conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"unbound exited: {err}")
            reply = _answers(self.port, "test.")
            if reply is not None and reply.answer:
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("unbound did not answer in time")

    def stop(self) -> None:
        _stop(self.proc)


def resolver_status(address: str, name: str, rdtype: str) -> str:
    """A validating resolver's own verdict, asked without CD: AD (secure), SERVFAIL (bogus),
    an answer without AD (insecure)."""
    host, _, port = address.partition(":")
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    reply = dns.query.udp(query, host, port=int(port), timeout=5)
    if reply.rcode() == 2:
        return "bogus"
    return "secure" if reply.flags & dns.flags.AD else "insecure"
