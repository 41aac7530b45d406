"""The findings of the ``dns`` probe (SPF, DMARC, sending IPs, bulk-sender rules, baseline, DKIM,
MX, DNSSEC) and of the ``dnsbl`` probe."""

from __future__ import annotations

from exporter.findings.spec import CRITICAL, INFO, WARNING, FindingSpec

F = FindingSpec

SPECS: tuple[FindingSpec, ...] = (
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
      " or a rua/ruf URI, such as a mailto: whose host is not a host name).",
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
)  # fmt: skip
