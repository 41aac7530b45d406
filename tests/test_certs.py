"""Chain judging (:mod:`exporter.net.certs`): a kept valid verdict is given again only while the
chain is still valid, and another name or trust store is judged on its own."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from exporter.net.certs import Presented, judge, load_presented, trust_store

HOST = "mail.example.test"


def _chain(cert: trustme.LeafCert) -> list[Presented]:
    return [
        load_presented(x509.load_pem_x509_certificate(blob.bytes()).public_bytes(Encoding.DER))
        for blob in cert.cert_chain_pems
    ]


def test_a_kept_valid_verdict_is_given_only_while_the_chain_is_valid(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    now = dt.datetime.now(dt.UTC)
    expires = now.replace(microsecond=0) + dt.timedelta(seconds=2)
    chain = _chain(ca.issue_cert(HOST, not_before=now - dt.timedelta(days=1), not_after=expires))
    trust = trust_store(str(ca_file), system=False)
    first = judge(chain, HOST, trust, now)
    assert first.valid and first.verified_not_after == expires.timestamp()
    assert judge(chain, HOST, trust, dt.datetime.now(dt.UTC)) is first  # kept
    # Another name or another trust store is another question.
    assert not judge(chain, "other.example.test", trust, now).valid
    other_ca = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    assert not judge(chain, HOST, trust_store(str(other_ca), system=False), now).trusted
    time.sleep(max(0.0, expires.timestamp() + 1.1 - time.time()))
    expired = judge(chain, HOST, trust, dt.datetime.now(dt.UTC))
    assert not expired.valid and expired.trusted  # expired now, from a trusted CA
    assert "expired" in expired.valid_error
