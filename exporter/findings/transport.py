"""The findings of transport security: the ``tls`` probe (with DANE) and the ``mta_sts`` probe."""

from __future__ import annotations

from exporter.findings.spec import CRITICAL, INFO, WARNING, FindingSpec

F = FindingSpec

SPECS: tuple[FindingSpec, ...] = (
    # --- tls (exporter/probes/tls.py) ---------------------------------------------------------
    F("tls_cert_expiring", "tls", WARNING,
      "A certificate in the chain expires soon (warning under 21 days, critical under 7).",
      "Renew the certificate (check that automatic renewal, e.g. certbot or your ACME client,"
      " runs and that the mail server is reloaded afterwards to pick up the new file)."),
    F("tls_cert_expired", "tls", CRITICAL,
      "The server presents an expired certificate (leaf or intermediate); senders that require"
      " TLS or honour MTA-STS refuse to deliver.",
      "Install a renewed certificate and its current intermediates, then reload the mail server."),
    F("tls_cert_not_yet_valid", "tls", CRITICAL,
      "The leaf certificate's validity starts in the future (or the server's clock is wrong).",
      "Check the certificate's notBefore and the clocks of the issuing and probing machines."),
    F("tls_cert_untrusted", "tls", CRITICAL,
      "The certificate chain does not lead to a trusted root (self-signed, unknown CA, missing"
      " intermediate, or a certificate the verifier rejects).",
      "Use a certificate from a public CA and configure the full chain (leaf plus intermediates)"
      " on the server; for a private CA set ca_file on the target."),
    F("tls_cert_hostname_mismatch", "tls", CRITICAL,
      "The certificate does not cover the name the server is reached by (MX host or target"
      " host, or server_name).",
      "Issue a certificate whose subjectAltName includes that host name, or point the MX record"
      " or clients at a name the certificate covers."),
    F("tls_mx_too_many", "tls", WARNING,
      "The domain publishes more MX hosts (or an MX host more addresses) than the probe checks"
      " in one run (16 hosts by preference, 8 addresses each); the rest are not probed. Senders"
      " try only a few of them (Postfix: smtp_mx_address_limit, 5 addresses) anyway.",
      "Publish the MX hosts that really receive mail (a handful, with preferences), and remove"
      " stale or generated ones."),
    F("tls_starttls_not_offered", "tls", CRITICAL,
      "The SMTP server does not advertise STARTTLS, so mail and passwords travel in clear and"
      " senders that require TLS (MTA-STS, DANE) cannot deliver.",
      "Enable STARTTLS on the server (postfix: smtpd_tls_security_level = may, with"
      " smtpd_tls_cert_file and smtpd_tls_key_file set)."),
    F("tls_version_old", "tls", WARNING,
      "The best TLS version the server negotiates is older than TLS 1.2.",
      "Enable TLS 1.2 and 1.3 on the server (postfix: smtpd_tls_protocols = >=TLSv1.2) and"
      " update its TLS library if needed."),
    F("tls_handshake_failed", "tls", CRITICAL,
      "The server answered but the TLS handshake failed with a TLS error (no common protocol or"
      " cipher, bad certificate or key, or the server aborted).",
      "Check the server's TLS settings and log for the handshake error shown in the evidence."),
    F("smtp_auth_failed", "tls", CRITICAL,
      "SMTP AUTH with the configured credentials was rejected (or no AUTH mechanism usable by"
      " the probe was offered).",
      "Check the account and password (rotated secret, locked or expired account) and that the"
      " server offers AUTH PLAIN or LOGIN after STARTTLS."),
    # --- mta_sts (exporter/probes/mta_sts.py, mta_sts_policy.py) --------------------------------
    # Severity: a broken MTA-STS setup costs protection, not mail: senders that cannot get a
    # policy deliver as before (with opportunistic TLS) and keep a cached policy until its
    # max_age. Warning, then. The one exception is an MX an enforce policy does not list:
    # enforcing senders refuse to deliver to it, so that is critical (warning in testing mode).
    F("mta_sts_record_invalid", "mta_sts", WARNING,
      "The _mta-sts TXT record does not follow RFC 8461 §3.1; senders ignore it and treat the"
      " domain as having no MTA-STS policy (new senders get no protection, and a changed id is"
      " never noticed).",
      "Publish exactly 'v=STSv1; id=<1-32 letters and digits>' (case-sensitive, fields separated"
      " by ';'); change the id whenever the policy changes."),
    F("mta_sts_record_duplicate", "mta_sts", WARNING,
      "More than one TXT record at _mta-sts begins with v=STSv1; senders use none of them"
      " (RFC 8461 §3.1) and the domain looks as if it had no MTA-STS.",
      "Delete all but one v=STSv1 record at _mta-sts.<domain>."),
    F("mta_sts_policy_unreachable", "mta_sts", WARNING,
      "The policy at https://mta-sts.<domain>/.well-known/mta-sts.txt could not be fetched: no"
      " address, connection refused, a TLS or HTTP error, or a status other than 200 (e.g. 404)."
      " Senders fall back to a cached policy until it expires, then to no policy.",
      "Serve the policy file over HTTPS at mta-sts.<domain> on port 443 with status 200 (check the"
      " host's A/AAAA record, the web server and its virtual host for that name)."),
    F("mta_sts_policy_redirect", "mta_sts", WARNING,
      "The policy URL answers with a redirect; senders must not follow it (RFC 8461 §3.3), so"
      " they get no policy.",
      "Serve the file itself at /.well-known/mta-sts.txt on mta-sts.<domain> (no redirect to"
      " www or another path; an HTTP-to-HTTPS redirect elsewhere is fine)."),
    F("mta_sts_policy_media_type", "mta_sts", WARNING,
      "The policy is not served as text/plain (RFC 8461 §3.2); strict senders reject it.",
      "Serve mta-sts.txt with 'Content-Type: text/plain' (a charset parameter is fine)."),
    F("mta_sts_policy_invalid", "mta_sts", WARNING,
      "The policy file does not follow RFC 8461 §3.2 (syntax, a missing field, a mode or"
      " max_age out of range, over 64 KB); senders ignore it.",
      "Fix the line named in the evidence: 'version: STSv1', 'mode: enforce|testing|none',"
      " 'max_age: <seconds up to 31557600>', one 'mx: <host or *.domain>' per line, LF or CRLF"
      " line ends, no blank lines, lower-case field names."),
    F("mta_sts_cert_invalid", "mta_sts", WARNING,
      "The policy host's certificate does not verify for mta-sts.<domain> (expired, untrusted"
      " chain, or another name); senders must verify it, so they get no policy.",
      "Install a certificate from a public CA that covers mta-sts.<domain>, with its full chain;"
      " for a private CA set mta_sts.ca_file."),
    F("mta_sts_cert_expiring", "mta_sts", WARNING,
      "The policy host's certificate chain expires within 21 days; after that senders cannot"
      " fetch or refresh the policy.",
      "Renew the certificate of mta-sts.<domain> (check that automatic renewal covers that name"
      " and that the web server reloads it)."),
    F("mta_sts_mx_not_covered", "mta_sts", CRITICAL,
      "An MX host matches no mx pattern of the policy: in enforce mode senders refuse to deliver"
      " to it (critical); in testing mode they only report it (warning).",
      "Add the MX host (or a '*.' pattern one label above it) to the policy's mx lines and change"
      " the id in the _mta-sts record; or correct the MX record."),
    F("mta_sts_testing_mode", "mta_sts", INFO,
      "The policy is in testing mode: senders report TLS failures (TLS-RPT) but still deliver"
      " without TLS; it protects nothing yet.",
      "Once TLS-RPT reports show no failures, switch to 'mode: enforce' and change the id."),
    F("mta_sts_mode_drift", "mta_sts", WARNING,
      "The MTA-STS policy's mode is not the one the domain's baseline expects (expect:"
      " mta_sts_mode): enforcement was switched off or on.",
      "Restore the policy's mode (and publish a new id in _mta-sts), or update expect: in the"
      " config if the change was intended."),
    F("mta_sts_max_age_short", "mta_sts", WARNING,
      "The policy's max_age is under a day: senders drop it soon, and blocking one refresh is"
      " enough to strip TLS (RFC 8461 expects weeks).",
      "Set max_age to weeks (604800, a week, or more; 31557600 at most) and change the id."),
    F("mta_sts_policy_changed_same_id", "mta_sts", WARNING,
      "The policy changed while the id in the _mta-sts record did not; senders that cached the"
      " old policy keep it until its max_age runs out (they refetch only on a new id).",
      "Change the id in the _mta-sts TXT record (e.g. to the current date and time,"
      " 20250101T120000) whenever the policy file changes."),
    F("tlsrpt_missing", "mta_sts", INFO,
      "The domain asks senders for TLS (MTA-STS or DANE) but publishes no TLS-RPT record, so"
      " nobody tells you when TLS to your MX fails.",
      "Publish '_smtp._tls.<domain> TXT \"v=TLSRPTv1; rua=mailto:tls-reports@<domain>\"'."),
    F("tlsrpt_invalid", "mta_sts", WARNING,
      "The _smtp._tls TXT record does not follow RFC 8460 §3 (rua with mailto: or https: URIs);"
      " senders send no TLS reports.",
      "Publish exactly 'v=TLSRPTv1; rua=mailto:<address>' (several URIs separated by commas)."),
    F("tlsrpt_duplicate", "mta_sts", WARNING,
      "More than one TXT record at _smtp._tls begins with v=TLSRPTv1; senders use none of them"
      " (RFC 8460 §3).",
      "Delete all but one v=TLSRPTv1 record; list several report addresses in one rua."),
    # --- tls: DANE (exporter/probes/tls_dane.py) ----------------------------------------------
    F("dane_no_match", "tls", CRITICAL,
      "The mail server publishes DNSSEC-secure TLSA records but none matches the certificate"
      " chain it presents: every DANE-enabled sender (Postfix and Exim with DANE, Exchange"
      " Online, many European providers) defers all mail to it. Usually a renewed certificate"
      " or key whose TLSA record was not updated.",
      "Publish a TLSA record for the current certificate (e.g. '3 1 1' with the SHA-256 of its"
      " public key) beside the old one, or put the previous key back; next time publish the new"
      " record before the certificate changes."),
    F("dane_tlsa_insecure", "tls", WARNING,
      "TLSA records are published in a zone that is not DNSSEC-signed: senders ignore them, so"
      " the server gets no DANE protection.",
      "Sign the zone of the TLSA records (and publish its DS), or remove the records."),
    F("dane_tlsa_bogus", "tls", WARNING,
      "TLSA records are published in a zone whose DNSSEC does not validate: senders cannot use"
      " them (and DANE senders may defer mail to the server).",
      "Fix the zone's DNSSEC (see the dns probe's dnssec findings for the reason)."),
    F("dane_single_ee", "tls", INFO,
      "The only usable TLSA record is a single DANE-EE (3 x x) record: the next certificate or"
      " key change breaks DANE delivery unless a record for the next key is published first.",
      "Publish a second TLSA record for the next key (or a '2 x x' record for the issuing CA)"
      " ahead of each rollover, and remove the old one after the change."),
)  # fmt: skip
