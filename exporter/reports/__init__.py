"""DMARC aggregate (RFC 7489 appendix C, RFC 9990) and TLS-RPT (RFC 8460) reports read from mail.

:func:`~exporter.reports.mime.parse_message` takes one raw message and returns the reports it
carries; :mod:`~exporter.reports.archive` bounds what an attachment may cost,
:mod:`~exporter.reports.dmarc` and :mod:`~exporter.reports.tlsrpt` parse the two formats. All of
them raise :class:`~exporter.reports.archive.ReportError` (or a subclass) and nothing else.
Each module's docstring says which libraries were considered and why it uses what it uses.
"""
