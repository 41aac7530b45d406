"""The findings catalogue: every finding code the exporter can report, written once.

Each entry has a stable ``code`` (a Prometheus label value users alert on — never rename one), the
probe that reports it, a default severity, a one-line explanation and the fix. The same text is
shown everywhere: the ``deliverability_finding`` metric, ``check`` output, the status page, and
``docs/FINDINGS.md`` (generated: ``python -m exporter.findings > docs/FINDINGS.md``).

Severity rules (SPEC.md): ``critical`` only for a confirmed bad state; a probe that could not tell
reports ``probe_success 0`` and an error, never a critical finding.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

CRITICAL = "critical"
WARNING = "warning"
INFO = "info"
SEVERITIES = (CRITICAL, WARNING, INFO)


@dataclass(frozen=True)
class FindingSpec:
    code: str
    probe: str
    severity: str
    summary: str
    fix: str


def _catalogue(*specs: FindingSpec) -> dict[str, FindingSpec]:
    out: dict[str, FindingSpec] = {}
    for spec in specs:
        if spec.code in out:
            raise ValueError(f"duplicate finding code {spec.code}")
        if spec.severity not in SEVERITIES:
            raise ValueError(f"bad severity for {spec.code}")
        out[spec.code] = spec
    return out


F = FindingSpec

CATALOGUE: dict[str, FindingSpec] = _catalogue(
    # --- dns: SPF (exporter/spf/) -------------------------------------------------------------
    F("spf_missing", "dns", CRITICAL,
      "The domain publishes no SPF record (no TXT record starting with v=spf1).",
      "Publish one TXT record at the domain, e.g. 'v=spf1 include:<your provider> -all'."),
    F("spf_multiple_records", "dns", CRITICAL,
      "More than one TXT record starts with v=spf1; receivers return permerror (RFC 7208 §4.5)"
      " and SPF fails for all mail.",
      "Merge the records into one: keep a single 'v=spf1 ... -all' with every include and"
      " ip4/ip6 term, and delete the others."),
    F("spf_syntax_error", "dns", CRITICAL,
      "The SPF record does not parse (RFC 7208 §4.6/§12); receivers return permerror.",
      "Fix the term named in the evidence: terms are separated by single spaces, mechanisms are"
      " all/include/a/mx/ptr/ip4/ip6/exists, domains end in a real top-level label."),
    F("spf_strings_joined_wrong", "dns", CRITICAL,
      "The record is split into several strings that receivers join with no space (RFC 7208"
      " §3.3), which glues two terms together.",
      "End each string with a space (or start the next with one) where the record is split."),
    F("spf_too_many_lookups", "dns", CRITICAL,
      "The include/redirect tree needs more than 10 DNS-querying terms; receivers stop with"
      " permerror (RFC 7208 §4.6.4).",
      "Flatten the includes named in the evidence into ip4:/ip6: terms (or drop unused"
      " providers, or move a provider to a subdomain) until the count is 10 or less."),
    F("spf_lookups_near_limit", "dns", WARNING,
      "The SPF tree uses 9 or 10 of the 10 allowed DNS lookups; a provider adding one include"
      " breaks SPF.",
      "Flatten the largest include into ip4:/ip6: terms or remove unused ones to leave headroom."),
    F("spf_too_many_void_lookups", "dns", CRITICAL,
      "More than 2 terms point at names that do not exist or have no records; receivers return"
      " permerror (RFC 7208 §4.6.4).",
      "Remove or correct the a/mx/exists/include terms listed in the evidence."),
    F("spf_include_no_spf", "dns", CRITICAL,
      "An include: or redirect= target publishes no SPF record (or is not a domain name);"
      " receivers return permerror when they reach it (RFC 7208 §5.2, §6.1).",
      "Correct the target's spelling, or remove the term if the provider is no longer used."),
    F("spf_include_invalid", "dns", CRITICAL,
      "An included or redirected SPF record is broken (syntax error or several records);"
      " receivers return permerror when they reach it.",
      "Ask the provider to fix its record, or replace the include with its ip4:/ip6: ranges."),
    F("spf_include_loop", "dns", CRITICAL,
      "The include/redirect chain comes back to a domain already on it; receivers hit the"
      " lookup limit and return permerror.",
      "Remove the include or redirect that points back up the chain shown in the evidence."),
    F("spf_mx_too_many_records", "dns", CRITICAL,
      "An mx term points at a domain with more than 10 MX records; receivers return permerror"
      " (RFC 7208 §4.6.4).",
      "Replace the mx term with ip4:/ip6: terms for the hosts that send mail."),
    F("spf_lookup_temperror", "dns", WARNING,
      "A DNS lookup inside the SPF tree failed temporarily (timeout, SERVFAIL); receivers seeing"
      " the same get temperror and defer or reject mail.",
      "Check the DNS servers of the name in the evidence; if it belongs to a provider, ask them."),
    F("spf_all_pass", "dns", CRITICAL,
      "The effective 'all' is +all: every host on the internet may send as the domain.",
      "End the record with -all (or ~all while rolling out) after listing your senders."),
    F("spf_all_neutral", "dns", WARNING,
      "The effective 'all' is ?all: unlisted hosts get neutral, which protects nothing.",
      "End the record with -all (or ~all while rolling out)."),
    F("spf_no_all", "dns", WARNING,
      "The record has no 'all' and no redirect: unlisted hosts get neutral (RFC 7208 §4.7).",
      "End the record with -all (or ~all while rolling out)."),
    F("spf_terms_after_all", "dns", INFO,
      "Terms after 'all' (including a redirect) are never evaluated.",
      "Move them before 'all' if they are needed, otherwise delete them."),
    F("spf_ptr_used", "dns", WARNING,
      "The record uses the ptr mechanism, which RFC 7208 §5.5 says SHOULD NOT be used: it is slow"
      " and many receivers ignore or penalise it.",
      "Replace ptr with ip4:/ip6: (or a:) terms for the sending hosts."),
    F("spf_record_long", "dns", WARNING,
      "The SPF record is near or over the size limits (255-byte strings, 450-byte record of"
      " RFC 7208 §3.4, 512-byte UDP answer); some receivers cannot read oversized answers.",
      "Shorten the record: flatten or drop includes, merge ip4 ranges into CIDR blocks, or move"
      " other TXT records at the name elsewhere."),
    F("spf_ip_not_permitted", "dns", CRITICAL,
      "A configured sending IP does not get 'pass' from check_host(); its mail fails SPF (and"
      " DMARC unless DKIM aligns).",
      "Add the IP (ip4:/ip6:) or its provider's include to the record, or remove the IP from"
      " sending_ips if it no longer sends."),
    F("spf_ip_temperror", "dns", WARNING,
      "check_host() for a configured sending IP ended in temperror: a DNS lookup in the SPF tree"
      " failed, so receivers may defer its mail.",
      "See the lookup trail in the details; check the DNS servers of the failing name."),
    # --- dns: DMARC (exporter/probes/dns/dmarc.py, treewalk.py) ------------------------------
    F("dmarc_missing", "dns", CRITICAL,
      "No DMARC record applies to the domain: none at _dmarc.<domain> nor anywhere up the RFC"
      " 9989 tree walk (its organizational domain, its public suffix domain).",
      "Publish a TXT record at _dmarc.<domain>, e.g. 'v=DMARC1; p=none; rua=mailto:dmarc@<domain>',"
      " then tighten p to quarantine/reject once reports look clean."),
    F("dmarc_multiple_records", "dns", CRITICAL,
      "More than one DMARC record is published at _dmarc.<domain>; receivers discard them all"
      " (RFC 9989 §4.10) and look higher up the tree, or apply no DMARC.",
      "Delete all but one TXT record starting with v=DMARC1 at _dmarc.<domain>."),
    F("dmarc_invalid", "dns", CRITICAL,
      "The DMARC record has an invalid p=, sp= or np=: receivers act as p=none if it has a valid"
      " rua=, and ignore the record otherwise (RFC 9989 §4.10.1).",
      "Set p=, sp= and np= to none, quarantine or reject, with tags separated by semicolons."),
    F("dmarc_invalid_tag", "dns", WARNING,
      "A DMARC tag has an invalid value and is ignored by receivers (adkim, aspf, fo, psd, t, pct,"
      " or a rua/ruf URI).",
      "Correct the tag named in the evidence; see RFC 9989 §4.7 for the allowed values."),
    F("dmarc_policy_missing", "dns", WARNING,
      "The DMARC record has no p= tag: RFC 9989 receivers act as p=none, receivers still on RFC"
      " 7489 ignore the record unless it has a valid rua=.",
      "Add p=none (or quarantine/reject) right after v=DMARC1."),
    F("dmarc_policy_none", "dns", WARNING,
      "The DMARC policy that applies is p=none: spoofed mail is still delivered.",
      "Once aggregate reports show your own mail passing, move to p=quarantine and then p=reject."),
    F("dmarc_testing_mode", "dns", INFO,
      "The DMARC record has t=y (test mode, RFC 9989): receivers apply the policy one level"
      " weaker (reject as quarantine, quarantine as none).",
      "Remove t=y once aggregate reports show your own mail passing."),
    F("dmarc_removed_tag", "dns", INFO,
      "The DMARC record uses pct, rf or ri, which RFC 9989 removed: RFC 9989 receivers ignore"
      " them, receivers still on RFC 7489 honour them.",
      "Keep them only while old receivers matter; use t=y instead of pct=0 for a trial period."),
    F("dmarc_pct_partial", "dns", INFO,
      "The DMARC policy asks receivers still on RFC 7489 to apply it to only part of the mail"
      " (pct below 100); RFC 9989 receivers apply it to all.",
      "Raise pct to 100 (or remove the tag) once reports show your mail passing."),
    F("dmarc_no_rua", "dns", WARNING,
      "The DMARC record asks for no aggregate reports (no rua=), so failures go unseen.",
      "Add rua=mailto:<address> to receive daily aggregate reports."),
    F("dmarc_inherited", "dns", INFO,
      "The domain has no DMARC record of its own; the record of its organizational domain (or"
      " of its public suffix domain, psd=y) applies, with its sp= or np=.",
      "Nothing to do if intended; publish _dmarc.<domain> to set a policy for this domain alone."),
    F("dmarc_subdomain_policy_weaker", "dns", INFO,
      "The policy subdomains get (sp=, or np= for non-existent ones) is weaker than the domain's"
      " own, so spoofed subdomains are treated leniently.",
      "Set sp= and np= to the same strength as p= (or remove them to inherit p=)."),
    F("dmarc_report_destination_unauthorized", "dns", WARNING,
      "A rua/ruf address is in another organizational domain that has not authorized receiving"
      " reports for this domain (RFC 9990 §3), so receivers send it no reports.",
      "Ask the report receiver to publish TXT 'v=DMARC1' at <domain>._report._dmarc.<their"
      " domain>, or use an address in your own domain."),
    # --- dns: sending IPs, bulk-sender rules, baseline ----------------------------------------
    F("sending_ip_no_ptr", "dns", CRITICAL,
      "A sending IP has no PTR record: Gmail rejects or junks mail from IPs without valid"
      " reverse DNS, and most receivers distrust it.",
      "Ask whoever owns the IP (your hosting or cloud provider) to set a PTR record to a host"
      " name whose A/AAAA record points back at the IP."),
    F("sending_ip_ptr_mismatch", "dns", CRITICAL,
      "The PTR name of a sending IP does not resolve back to the IP (forward-confirmed reverse"
      " DNS fails): Gmail treats this like a missing PTR.",
      "Publish an A (IPv4) or AAAA (IPv6) record for the PTR name pointing at the IP, or change"
      " the PTR to a name that has one."),
    F("sender_requirement_unmet", "dns", CRITICAL,
      "A bulk-sender requirement of Gmail, Yahoo or Microsoft is not met as far as DNS shows;"
      " senders of 5,000+ messages a day are rejected or junked by those providers.",
      "Fix what the evidence names (the requirement's own finding gives the details), then check"
      " the domain again."),
    F("baseline_drift", "dns", WARNING,
      "The domain no longer matches its declared baseline (expect:): the evidence names what was"
      " expected and what is there (critical when what is there is itself broken).",
      "Restore the expected record, or update expect: in the config if the change was intended."),
    F("baseline_not_checked", "dns", INFO,
      "An expectation of the baseline could not be compared because the check that provides it"
      " did not run (MTA-STS, DNSSEC) or has nothing to compare (no dkim_selectors).",
      "Enable the check (an mta_sts: section, global.dnssec) or remove the expectation."),
    # --- dns: DKIM (exporter/probes/dns/dkim.py) ----------------------------------------------
    F("dkim_key_missing", "dns", CRITICAL,
      "No DKIM key is published for a configured selector; mail signed with it fails DKIM.",
      "Publish the selector's public key at <selector>._domainkey.<domain> (your provider shows"
      " the record), or remove the selector from the config if it is retired."),
    F("dkim_key_revoked", "dns", CRITICAL,
      "The DKIM key for a configured selector is revoked (empty p=); signatures with it fail.",
      "Publish the current key for the selector, or stop signing with it and drop it from the"
      " config."),
    F("dkim_key_invalid", "dns", CRITICAL,
      "The DKIM key record cannot be used: bad syntax, unknown key type, undecodable key, an"
      " RSA key under 1024 bits (RFC 8301) or over 16384 bits (no verifier uses it).",
      "Republish the record as 'v=DKIM1; k=rsa; p=<base64 public key>' with a key of 2048 bits."),
    F("dkim_key_weak", "dns", WARNING,
      "The DKIM RSA key is shorter than 2048 bits.",
      "Generate a 2048-bit key, publish it under a new selector, switch signing, then retire the"
      " old selector."),
    F("dkim_key_too_long", "dns", WARNING,
      "The DKIM RSA key is longer than 4096 bits: RFC 8301 requires verifiers to handle 1024 to"
      " 4096 bits only, so some receivers cannot verify its signatures (DKIM fails there).",
      "Generate a 2048-bit key (at most 4096), publish it under a new selector, switch signing,"
      " then retire the old selector."),
    F("dkim_testing_mode", "dns", INFO,
      "The DKIM key is published with t=y (testing): receivers may treat failures leniently.",
      "Remove t=y once signing works."),
    F("dkim_multiple_records", "dns", CRITICAL,
      "More than one TXT record is published for a DKIM selector; verification is unreliable.",
      "Keep exactly one DKIM TXT record at <selector>._domainkey.<domain>."),
    # --- dns: MX (exporter/probes/dns/mx.py) --------------------------------------------------
    F("mx_missing", "dns", WARNING,
      "The domain has no MX record: mail to it falls back to its A record, and many receivers"
      " distrust senders whose domain cannot receive bounces.",
      "Publish MX records for the domain, or a null MX ('0 .') if it never receives mail."),
    F("mx_null", "dns", INFO,
      "The domain publishes a null MX (RFC 7505): it accepts no mail.",
      "Nothing to do if the domain never receives mail; otherwise replace it with real MX hosts."),
    F("mx_host_unresolvable", "dns", CRITICAL,
      "An MX host has no A or AAAA record; mail cannot be delivered through it.",
      "Fix the host name in the MX record or publish its address records."),
    F("mx_host_is_cname", "dns", WARNING,
      "An MX record points at a CNAME, which RFC 2181 §10.3 forbids; some senders refuse it.",
      "Point the MX record at the canonical host name."),
    F("mx_host_is_ip", "dns", CRITICAL,
      "An MX record names an IP address instead of a host name; senders treat it as a host name"
      " that does not exist.",
      "Point the MX record at a host name with A/AAAA records."),
    F("mx_null_mixed", "dns", CRITICAL,
      "A null MX ('0 .') is published together with other MX records (RFC 7505 §3 forbids it).",
      "Remove either the null MX or the other MX records."),
    # --- dns: DNSSEC (exporter/probes/dns/dnssec.py) ------------------------------------------
    F("dnssec_bogus", "dns", CRITICAL,
      "The domain's DNSSEC does not validate (expired signature, no DS matching a DNSKEY,"
      " missing RRSIG...): every validating resolver (Google, Cloudflare, most ISPs) answers"
      " SERVFAIL, so mail to and from the domain stops. The evidence has the record and reason.",
      "Fix what the evidence names: re-sign the zone or restart its signer (expired or missing"
      " signatures), publish the DS of the current key at the registrar or remove the stale one"
      " (no DS matches), or remove the DS at the registrar to go unsigned on purpose."),
    F("dnssec_mx_bogus", "dns", CRITICAL,
      "The DNSSEC of an MX host's address records does not validate: validating senders cannot"
      " resolve the host and defer mail to it.",
      "Tell the operator of the MX host's zone (see the evidence); if it is yours, fix its"
      " signatures or DS as for dnssec_bogus."),
    F("dnssec_signature_expiring", "dns", WARNING,
      "Signatures of the domain's records (or of its zone's keys) expire soon (warning within 7"
      " days, critical within 2): when they lapse the domain turns bogus.",
      "Check that the zone's signer runs and re-signs (automatic signing in the DNS provider,"
      " knot/BIND/OpenDNSSEC jobs); signatures are normally refreshed well before expiry."),
    F("dnssec_unsigned", "dns", INFO,
      "The domain is not signed (a proven insecure delegation): its records, and DANE for its"
      " mail servers, cannot be authenticated.",
      "Enable DNSSEC at the DNS provider and publish the DS record at the registrar."),
    # --- dnsbl (exporter/probes/dnsbl.py) -----------------------------------------------------
    F("ip_listed", "dnsbl", CRITICAL,
      "A sending IP is listed on a DNS blacklist: receivers that use the list reject its mail or"
      " file it as spam. The evidence names the list, its return code's meaning and its reason.",
      "Find and stop the cause first (compromised account or host, open relay, mail to bought or"
      " stale addresses), then request removal at the list's delisting page given in the"
      " evidence. Some lists (SpamCop) expire listings by themselves once the spam stops."),
    F("domain_listed", "dnsbl", CRITICAL,
      "A monitored domain is listed on a domain blacklist: mail from it or naming it is rejected"
      " or filed as spam. The evidence names the list, its return code's meaning and its reason.",
      "Find the cause (spam naming the domain, a compromised website or open redirect, a phishing"
      " page), clean it up, then request removal at the list's delisting page given in the"
      " evidence."),
    F("dnsbl_query_refused", "dnsbl", WARNING,
      "A blacklist answered with an error code instead of an answer (Spamhaus 127.255.255.254:"
      " query through a public or open resolver; 127.255.255.255: too many queries; URIBL/SURBL"
      " 127.0.0.1). Whether the target is listed is unknown; an error code is never counted as a"
      " listing.",
      "Use your own recursive resolver (e.g. unbound on the exporter's host) that asks the lists"
      " directly, and point global.nameservers at it: lists refuse queries that come through"
      " public resolvers (8.8.8.8, 1.1.1.1, 9.9.9.9) or a busy ISP resolver. For high volumes use"
      " the list's registered or paid access (Spamhaus DQS, Barracuda's free registration)."),
    F("dnsbl_zone_unhealthy", "dnsbl", WARNING,
      "A blacklist zone fails the RFC 5782 self-test through your resolver (127.0.0.2 not listed,"
      " or 127.0.0.1 listed) or answers with addresses outside 127.0.0.0/8 (the resolver rewrites"
      " NXDOMAIN); its answers are not trusted, so listings on it cannot be seen.",
      "Use your own recursive resolver that does not rewrite NXDOMAIN (no ad or search"
      " redirection) and point global.nameservers at it; check the zone's spelling; remove zones"
      " that have shut down (SORBS, for one) from blacklists.ip_zones / domain_zones."),
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
    # --- ses (exporter/probes/ses.py) ---------------------------------------------------------
    F("ses_quota_high", "ses", WARNING,
      "Messages sent in the last 24 hours are above 80% of the SES 24-hour quota (critical from"
      " 95%); at 100% SES rejects every send with 'Daily message quota exceeded'.",
      "Request a higher sending quota (Service Quotas console: Amazon SES 'Sending quota', or the"
      " SES console's 'Request an increase'), and hold back bulk or non-urgent mail meanwhile."),
    F("ses_sandbox", "ses", WARNING,
      "The SES account is in the sandbox in this region: it can send only to verified addresses,"
      " at most 200 messages a day, so mail to customers is refused.",
      "Request production access (SES console: Account dashboard > Request production access, or"
      " 'aws sesv2 put-account-details --production-access-enabled ...'); if this region is not"
      " meant to send, remove it from the config."),
    F("ses_sending_paused", "ses", CRITICAL,
      "Sending is disabled for the account in this region: every send is refused.",
      "If AWS paused it, read the notice in the SES console's Reputation metrics page and your"
      " e-mail, fix the cause and reply to the case; if it was paused on purpose, resume with"
      " 'aws sesv2 put-account-sending-attributes --sending-enabled'."),
    F("ses_probation", "ses", WARNING,
      "AWS has put the SES account under review (enforcement status PROBATION): mail still"
      " flows, but sending is paused if the bounce or complaint problem is not fixed in time.",
      "Open the SES Reputation metrics page for the cause, clean the recipient list (stop sending"
      " to addresses that bounced or complained, use the suppression list), then reply to the"
      " review notice describing the fix."),
    F("ses_shutdown", "ses", CRITICAL,
      "AWS has shut down sending for the SES account (enforcement status SHUTDOWN).",
      "Follow the instructions in the shutdown notice (SES console, AWS Health, account e-mail):"
      " fix the cause and open a case asking AWS to review and restore sending."),
    F("ses_bounce_rate_high", "ses", CRITICAL,
      "The SES reputation bounce rate is above 5% (warning from 2%); AWS reviews accounts above"
      " 5% and may pause sending above 10%.",
      "Stop sending to addresses that hard-bounced (enable the account-level suppression list),"
      " validate addresses at sign-up with double opt-in, and remove stale lists."),
    F("ses_complaint_rate_high", "ses", CRITICAL,
      "The SES reputation complaint rate is above 0.1% (warning from 0.05%); AWS reviews"
      " accounts above 0.1% and may pause sending above 0.5%.",
      "Send only mail recipients asked for, add a List-Unsubscribe header and honour it, process"
      " complaint notifications (SNS) by suppressing the address, and check which messages draw"
      " complaints."),
    F("ses_identity_not_verified", "ses", CRITICAL,
      "A configured SES identity (domain or address) is not verified, or does not exist in the"
      " region (warning while verification is pending or could not be checked): SES refuses to"
      " send from it.",
      "Create the identity in this region if missing, then publish the verification DNS records"
      " (DKIM CNAMEs) or click the link sent to the address; 'aws sesv2 get-email-identity"
      " --email-identity <name>' shows the status."),
    F("ses_identity_dkim_not_verified", "ses", WARNING,
      "DKIM is not verified for a configured SES identity (critical when verification failed):"
      " mail is not DKIM-signed with the domain, so DMARC alignment may fail.",
      "Publish the three DKIM CNAME records shown for the identity in the SES console (Easy"
      " DKIM), or the TXT record of your own key (BYODKIM), and keep them published."),
    F("ses_events_no_dead_letter_queue", "ses", WARNING,
      "The SES events queue has no redrive policy: a message that is not an SES event is never"
      " deleted by the exporter and comes back after every visibility timeout until the queue's"
      " retention period ends.",
      "Create a dead-letter queue and set the events queue's RedrivePolicy to it with a"
      " maxReceiveCount of 3 to 5 ('aws sqs set-queue-attributes ... RedrivePolicy=...')."),
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
    # --- queue (exporter/probes/queue.py) -------------------------------------------------------
    F("queue_oldest_too_old", "queue", WARNING,
      "An item has waited in the queue longer than the entry's oldest_age (critical from"
      " oldest_age_critical): an RQ job not picked up, or a Postfix message not even handed to"
      " the queue manager (incoming, maildrop); mail is not leaving.",
      "RQ: check that workers run and keep up ('rq info'), and what the oldest job waits for;"
      " Postfix: 'postfix status', the mail log for qmgr/pickup errors, 'postfix check'."),
    F("postfix_deferred_high", "queue", WARNING,
      "The Postfix deferred queue holds at least the entry's 'deferred' threshold of messages"
      " (critical from deferred_critical): receivers are refusing or unreachable; the"
      " evidence and the status page name the most frequent reasons.",
      "Read the top deferral reasons: a 4xx from one provider (rate limits, greylisting,"
      " reputation: see the blacklist and DNS probes), connection timeouts (outbound port 25"
      " blocked), DNS failures; 'qshape deferred' shows the destinations, 'postqueue -f'"
      " retries once fixed."),
    F("postfix_hold", "queue", INFO,
      "Messages are on hold in Postfix: they are never delivered until released.",
      "'postqueue -j' lists them (queue_name hold); release with 'postsuper -H ID' or delete"
      " with 'postsuper -d ID'; check header/body checks with a HOLD action."),
    F("queue_no_workers", "queue", WARNING,
      "An RQ queue has jobs waiting and no live RQ worker listens on it (critical once it has"
      " grown meanwhile): nothing sends that mail.",
      "Start or restart the workers for this queue ('rq worker QUEUE', your process manager or"
      " deployment); 'rq info' shows the workers Redis knows."),
    F("queue_failed_growing", "queue", WARNING,
      "The RQ failed-job registry of a queue grew since the previous run: mail jobs are"
      " failing.",
      "Look at the failures ('rq info', or FailedJobRegistry(queue=...).get_job_ids() and each"
      " job's exc_info): SMTP or API credentials, a provider refusing, a bug; requeue them once"
      " fixed ('rq requeue --all --queue QUEUE')."),
    F("queue_growing", "queue", WARNING,
      "A Redis queue grew at each of the last growing_runs runs: jobs arrive faster than the"
      " workers take them, or the workers are stuck.",
      "Check the workers (running, not stuck on one slow job, enough of them for the load) and"
      " what is flooding the queue."),
    F("queue_unknown", "queue", INFO,
      "A configured queue is empty and unknown to RQ (not in rq:queues) or kombu (no"
      " _kombu.binding set): possibly a misspelt name, so nothing is watched.",
      "Compare the name with the application's queue names ('rq info', Celery's task_queues);"
      " RQ and Celery create a queue only when the first job is sent to it."),
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


def spec_for(code: str) -> FindingSpec:
    return CATALOGUE[code]


def render_markdown() -> str:
    """The catalogue as Markdown (docs/FINDINGS.md)."""
    lines = [
        "# Findings catalogue",
        "",
        "Generated from `exporter/findings.py` (`python -m exporter.findings > docs/FINDINGS.md`).",
        "Each code is a stable value of the `code` label of `deliverability_finding`.",
        "",
    ]
    for probe in dict.fromkeys(s.probe for s in CATALOGUE.values()):
        lines += [f"## {probe}", "", "| code | severity | meaning | fix |", "|---|---|---|---|"]
        for s in CATALOGUE.values():
            if s.probe == probe:
                lines.append(f"| `{s.code}` | {s.severity} | {s.summary} | {s.fix} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
