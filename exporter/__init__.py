"""Email deliverability exporter: SPF, DKIM, DMARC, MX, DNS blacklists, mail-server TLS, AWS SES
and a synthetic round trip, as Prometheus metrics."""

__version__ = "0.1.0"
