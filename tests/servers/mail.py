"""Real mail servers on loopback for tests: dovecot (IMAP + LMTP) and postfix (SMTP -> LMTP).

Self-contained (only the standard library, trustme and the Debian packages ``dovecot-imapd
dovecot-lmtpd postfix``): each server runs from its own temporary directory on free 127.0.0.1
ports, in the foreground under :class:`subprocess.Popen`, and is stopped by its PID. Certificates
come from a trustme CA whose PEM file tests hand to the exporter as ``ca_file``.

Dovecot: one passwd-file of ``user: password``, Maildir under the temp dir, an ``INBOX`` and a
``Junk`` folder (special-use ``\\Junk``, auto-created), ``lmtp_save_to_detail_mailbox`` so that
mail to ``user+Junk@domain`` lands in Junk, and an auth listener postfix uses for SMTP AUTH.
Postfix: a STARTTLS listener and an implicit-TLS listener, virtual mailboxes for the domain
delivered over LMTP to dovecot, SASL through dovecot, relaying only for authenticated clients.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import trustme

HOST = "127.0.0.1"
POSTFIX_MASTER = "/usr/lib/postfix/sbin/master"
NOIDLE_HOST = "127.0.0.2"
MAIL_NAME = "mail.example.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    out: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            out.append(int(stat.parent.name))
    return out


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class MailCerts:
    """A trustme CA and one server certificate for 127.0.0.1 and the mail host names."""

    directory: Path
    ca: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        cert = self.ca.issue_cert(HOST, NOIDLE_HOST, MAIL_NAME, "imap.example.test")
        self.ca_file = self.directory / "ca.pem"
        self.cert_file = self.directory / "cert.pem"
        self.key_file = self.directory / "key.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        cert.private_key_pem.write_to_path(str(self.key_file))
        with self.cert_file.open("wb") as f:
            for blob in cert.cert_chain_pems:
                f.write(blob.bytes())
        self.server_cert = cert
        for p in (self.cert_file, self.key_file, self.ca_file):
            p.chmod(0o644)

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


def _tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)  # dovecot's mail processes run as nobody and must reach the Maildir
    return path


class Dovecot:
    """A dovecot instance: IMAP (plain/STARTTLS), IMAPS, LMTP and an auth listener."""

    def __init__(self, users: dict[str, str], certs: MailCerts) -> None:
        self.users = dict(users)
        self.certs = certs
        self.dir = _tempdir("dovecot-")
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.lmtp_port = free_port()
        self.auth_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        d = self.dir
        for sub in ("run", "state", "mail"):
            (d / sub).mkdir(exist_ok=True)
        (d / "mail").chmod(0o777)
        (d / "passwd").write_text(
            "".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items())
        )
        # Connections to NOIDLE_HOST see a capability list without IDLE (and without UIDPLUS),
        # so the same server also exercises the polling and guarded-EXPUNGE paths.
        caps = f"""
local {NOIDLE_HOST} {{
  protocol imap {{
    imap_capability = IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN
  }}
}}
"""
        conf = f"""
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = imap lmtp
listen = {HOST}, {NOIDLE_HOST}
ssl = yes
ssl_cert = <{self.certs.cert_file}
ssl_key = <{self.certs.key_file}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0 secs
login_trusted_networks = 127.0.0.0/8
mail_location = maildir:~/Maildir
recipient_delimiter = +
lmtp_save_to_detail_mailbox = yes
mailbox_idle_check_interval = 1 secs
{caps}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Junk {{
    special_use = \\Junk
    auto = create
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {d}/passwd
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {HOST} {NOIDLE_HOST}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {HOST} {NOIDLE_HOST}
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {HOST}
    port = {self.lmtp_port}
  }}
}}
service auth {{
  inet_listener {{
    address = {HOST}
    port = {self.auth_port}
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""
        path = d / "dovecot.conf"
        path.write_text(conf)
        return path

    def start(self) -> Dovecot:
        conf = self._write_config()
        self.proc = subprocess.Popen(
            ["dovecot", "-F", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for port in (self.imap_port, self.imaps_port, self.lmtp_port, self.auth_port):
            wait_port(port, self.proc, "dovecot")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            children = _children(self.proc.pid)
            _stop(self.proc)
            # dovecot's log/auth/anvil/stats processes can outlive their master: end them by PID.
            for pid in children:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.dir / "dovecot.log").read_text(errors="replace")
        except OSError:
            return ""

    # ----- helpers for assertions (synchronous; call through asyncio.to_thread) --------------

    def deliver(self, rcpt: str, message: bytes, sender: str = "sender@example.test") -> None:
        """Deliver one message over LMTP (as an MTA would)."""
        with smtplib.LMTP(HOST, self.lmtp_port, timeout=10) as lmtp:
            lmtp.sendmail(sender, [rcpt], message)

    def _imap(self, user: str) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(HOST, self.imap_port, timeout=10)
        conn.login(user, self.users[user])
        return conn

    def append(self, user: str, folder: str, message: bytes, flags: str = "") -> None:
        conn = self._imap(user)
        try:
            typ, data = conn.append(folder, f"({flags})" if flags else None, None, message)
            if typ != "OK":
                raise RuntimeError(f"APPEND failed: {data!r}")
        finally:
            conn.logout()

    def messages(self, user: str, folder: str) -> list[bytes]:
        """Full text of every message in the folder, in UID order (flags untouched)."""
        conn = self._imap(user)
        try:
            conn.select(folder, readonly=True)
            _, data = conn.uid("SEARCH", "ALL")
            uids = data[0].split() if data and data[0] else []
            out: list[bytes] = []
            for uid in uids:
                _, fetched = conn.uid("FETCH", uid, "(BODY.PEEK[])")
                for item in fetched:
                    if isinstance(item, tuple):
                        out.append(item[1])
            return out
        finally:
            conn.logout()

    def flags(self, user: str, folder: str) -> list[str]:
        conn = self._imap(user)
        try:
            conn.select(folder, readonly=True)
            _, data = conn.fetch("1:*", "(FLAGS)")
            return [d.decode() for d in data if isinstance(d, bytes)]
        finally:
            conn.logout()

    def clear(self, user: str) -> None:
        """Empty the user's INBOX and Junk (test isolation on a module-scoped server)."""
        conn = self._imap(user)
        try:
            for folder in ("INBOX", "Junk"):
                _, data = conn.select(folder)
                if data and data[0] and int(data[0]) > 0:
                    conn.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
                    conn.expunge()
        finally:
            conn.logout()


_MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@contextlib.contextmanager
def running_dovecot(users: dict[str, str]) -> Iterator[Dovecot]:
    """A started dovecot with its own certificates, stopped and removed afterwards."""
    assert shutil.which("dovecot"), "needs Debian package dovecot-imapd (scripts/test installs it)"
    directory = _tempdir("certs-")
    server = Dovecot(users, MailCerts(directory)).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


class Postfix:
    """A real postfix (``master -c DIR -s`` in the foreground, stopped by PID) on free loopback
    ports: one plain+STARTTLS and one implicit-TLS smtpd listener.

    With ``dovecot`` it accepts mail for ``domain`` (SASL through dovecot) and delivers it over
    LMTP to dovecot; without, it only speaks TLS (every transport is ``error:``). ``main``
    adds or overrides main.cf settings (a test's transports, limits). Nothing ever leaves the
    machine: mail for other domains bounces locally without a lookup.
    """

    def __init__(
        self,
        certs: MailCerts | tuple[Path, Path],
        dovecot: Dovecot | None = None,
        *,
        domain: str = "example.test",
        myhostname: str = MAIL_NAME,
        main: dict[str, str] | None = None,
    ) -> None:
        self.dovecot = dovecot
        self.cert_file, self.key_file = (
            (certs.cert_file, certs.key_file) if isinstance(certs, MailCerts) else certs
        )
        self.domain = domain
        self.myhostname = myhostname
        self.main = dict(main or {})
        self.dir = _tempdir("postfix-")
        self.smtp_port = free_port()  # plain + STARTTLS (submission-like)
        self.smtps_port = free_port()  # implicit TLS (465-like)
        self.proc: subprocess.Popen[bytes] | None = None

    def _settings(self) -> dict[str, str]:
        d = self.dir
        out = {
            "compatibility_level": "3.6",
            "queue_directory": f"{d}/queue",
            "data_directory": f"{d}/data",
            "maillog_file": f"{d}/maillog",
            "maillog_file_prefixes": str(d),
            "inet_interfaces": HOST,
            "inet_protocols": "ipv4",
            "myhostname": self.myhostname,
            "mydomain": self.domain,
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "relayhost": "",
            "smtputf8_enable": "no",
            "biff": "no",
            "smtpd_tls_cert_file": str(self.cert_file),
            "smtpd_tls_key_file": str(self.key_file),
            "smtpd_tls_security_level": "may",
            "smtp_dns_support_level": "disabled",
            "default_transport": "error:outside delivery disabled in tests",
            "relay_transport": "error:outside delivery disabled in tests",
        }
        if self.dovecot is not None:
            (d / "vmailbox").write_text("".join(f"{u} ok\n" for u in self.dovecot.users))
            out |= {
                "mynetworks": "127.0.0.254/32",
                "virtual_mailbox_domains": self.domain,
                "virtual_mailbox_maps": f"texthash:{d}/vmailbox",
                "virtual_transport": f"lmtp:inet:{HOST}:{self.dovecot.lmtp_port}",
                "recipient_delimiter": "+",
                "smtpd_sasl_auth_enable": "yes",
                "smtpd_sasl_type": "dovecot",
                "smtpd_sasl_path": f"inet:{HOST}:{self.dovecot.auth_port}",
                "smtpd_tls_auth_only": "yes",
                "smtpd_relay_restrictions": (
                    "permit_sasl_authenticated, reject_unauth_destination"
                ),
                "smtpd_recipient_restrictions": (
                    "permit_sasl_authenticated, reject_unauth_destination"
                ),
                "lmtp_host_lookup": "native",
            }
        return out | self.main

    def _write_config(self) -> None:
        d = self.dir
        d.chmod(0o755)  # postfix opens data_directory files as its mail_owner
        (d / "queue").mkdir()
        (d / "data").mkdir()
        shutil.chown(d / "data", "postfix")
        settings = self._settings()
        (d / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        (d / "master.cf").write_text(
            f"{HOST}:{self.smtp_port} inet n - n - - smtpd\n"
            f"{HOST}:{self.smtps_port} inet n - n - - smtpd\n"
            "  -o smtpd_tls_wrappermode=yes\n" + _MASTER_SERVICES
        )

    def start(self) -> Postfix:
        self._write_config()
        check = subprocess.run(
            ["postfix", "-c", str(self.dir), "check"], capture_output=True, timeout=30
        )
        if check.returncode != 0:
            raise RuntimeError(f"postfix check failed: {check.stderr!r}")
        # master itself, not ``postfix start-fg``: that runs master under a shell script, so
        # stopping the script by PID would leave master running.
        self.proc = subprocess.Popen(
            [POSTFIX_MASTER, "-c", str(self.dir), "-s"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.smtp_port, self.proc, "postfix")
        wait_port(self.smtps_port, self.proc, "postfix")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            _stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.dir / "maillog").read_text(errors="replace")
        except OSError:
            return ""
