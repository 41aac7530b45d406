"""Small loopback servers for the offline demo (``deliverability-exporter demo``).

Everything here binds 127.0.0.1 only and runs on the caller's event loop: an authoritative DNS
server (:mod:`exporter.lab.dns`), a private CA and certificates (:mod:`exporter.lab.certs`), and an
SMTP server that speaks just enough of the protocol to offer STARTTLS (:mod:`exporter.lab.smtp`).
They are not for production use.
"""
