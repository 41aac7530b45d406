"""The findings of the probes that read mailboxes: ``roundtrip`` and ``reports``."""

from __future__ import annotations

from exporter.findings.spec import CRITICAL, INFO, WARNING, FindingSpec

F = FindingSpec

SPECS: tuple[FindingSpec, ...] = (
    # --- roundtrip (exporter/probes/roundtrip.py) ---------------------------------------------
    F("roundtrip_connect_failed", "roundtrip", WARNING,
      "The round trip could not reach the SMTP or IMAP server (name not resolved, connection"
      " refused or timed out, connection lost); whether mail arrives is unknown.",
      "Check the host and port in the roundtrip section, that the server is up, and that"
      " firewalls let the exporter reach it; the evidence names the server and the error."),
    F("roundtrip_tls_failed", "roundtrip", WARNING,
      "The TLS handshake with the SMTP or IMAP server failed (certificate untrusted, expired or"
      " for another name; STARTTLS not offered; protocol mismatch).",
      "Fix the server's certificate (see the tls probe), or set security to match the port"
      " (starttls for 587/143, tls for 465/993), or give ca_file for a private CA."),
    F("roundtrip_auth_failed", "roundtrip", WARNING,
      "The SMTP server refused the probe's credentials (or offers no AUTH on this connection).",
      "Check smtp.username and the password behind password_env/password_file; many servers"
      " offer AUTH only after STARTTLS."),
    F("roundtrip_send_rejected", "roundtrip", CRITICAL,
      "The SMTP server rejected the probe's message (the evidence has the SMTP code and reply);"
      " mail through this path is not going out. 4xx (temporary) rejections are warnings.",
      "Read the server's reply: relay denied (authenticate or allow the sender), sender or"
      " recipient refused (check from/to), policy or content rejections (check the server's"
      " logs)."),
    F("roundtrip_not_delivered", "roundtrip", CRITICAL,
      "The probe's message was accepted for delivery but did not appear in the mailbox (nor the"
      " spam folder) before the timeout.",
      "Look for the message's probe id in the sending server's queue and logs (deferred,"
      " bounced?) and in the recipient's quarantine; raise the timeout if delivery is merely"
      " slow. A late arrival is cleaned up by the next run."),
    F("roundtrip_imap_login_failed", "roundtrip", WARNING,
      "The IMAP server refused the probe's login, so the mailbox cannot be watched.",
      "Check imap.username and the password behind password_env/password_file (app passwords"
      " are often required when the account has two-factor authentication)."),
    F("roundtrip_in_spam", "roundtrip", WARNING,
      "The probe's message was delivered to the spam folder.",
      "Check the receiver's verdict in Authentication-Results (spf/dkim/dmarc) and the sending"
      " IP's blacklist status; fix the failing authentication first."),
    F("roundtrip_auth_fail", "roundtrip", WARNING,
      "The receiver's Authentication-Results show a failing spf, dkim or dmarc result for the"
      " probe's message (dmarc fail is critical: receivers may quarantine or reject such mail).",
      "Fix the method named in the subject: publish/extend the SPF record for the sending IP,"
      " sign with a published DKIM key, align the From domain with SPF or DKIM for DMARC."),
    F("roundtrip_spam_folder_missing", "roundtrip", WARNING,
      "The configured spam folder does not exist (SELECT failed), so spam placement is not"
      " watched.",
      "Set imap.spam_folder to the server's junk folder name (Junk, Spam, [Gmail]/Spam...)."),
    # --- reports (exporter/probes/reports.py) -------------------------------------------------
    F("reports_imap_failed", "reports", WARNING,
      "The report mailbox could not be read (name not resolved, connection or TLS failed, login"
      " refused, folder missing); new reports are not counted until it can. The counts already"
      " kept are still served.",
      "Check the host, port, security and credentials of the reports entry, and that the folder"
      " exists; the evidence names the server and the error."),
    F("reports_invalid_messages", "reports", INFO,
      "Messages in the report folder held no parseable DMARC or TLS-RPT report (corrupt or"
      " oversized archive, refused XML, ordinary mail); they were moved to the invalid folder.",
      "Look at the messages in the invalid folder: mail that is not a report does not belong at"
      " the rua= address; a report from a real reporter that was refused is worth an issue."),
    F("dmarc_report_new_failing_source", "reports", WARNING,
      "A source IP that DMARC aggregate reports list for the first time in the last 7 days sends"
      " mail as the domain that fails DMARC: a new service not yet set up, or someone spoofing"
      " the domain.",
      "If the source is yours (PTR name, a new provider), add it to SPF and sign its mail with"
      " DKIM for the domain; if it is not, it is what DMARC p=quarantine/reject stops."),
    F("dmarc_report_failure_share_high", "reports", WARNING,
      "More than 10% of the messages in DMARC aggregate reports of the last 7 days fail DMARC"
      " for the domain.",
      "Look at the failing sources on the status page: legitimate senders need SPF and aligned"
      " DKIM before the policy can be tightened; the rest is spoofing."),
    F("tlsrpt_failure_sessions", "reports", WARNING,
      "TLS-RPT reports of the last 7 days count sessions in which senders could not deliver to"
      " the domain's MX over TLS (the evidence lists the RFC 8460 result types).",
      "certificate-* and validation-failure: fix the MX certificate (see the tls probe);"
      " starttls-not-supported: enable STARTTLS; sts-*: fix the MTA-STS policy or its host."),
)  # fmt: skip
