"""The SPF engine: RFC 7208 parsing, macro expansion, check_host() and static analysis.

* :mod:`exporter.spf.parser` — the record grammar (:func:`parse_record`, :class:`SpfSyntaxError`);
* :mod:`exporter.spf.macro` — macro strings (§7);
* :mod:`exporter.spf.evaluate` — async :func:`check_host` on the shared DNS client;
* :mod:`exporter.spf.analysis` — the monitored domain's policy: lookup count, findings, tree;
* :mod:`exporter.spf.command` — the ``spf`` subcommand.
"""

from exporter.spf.errors import SpfSyntaxError

__all__ = ["SpfSyntaxError"]
