"""DMARC by RFC 9989: the DNS tree walk, psd=, np=, t=y and the removed tags.

Most zones here are ones where the Public Suffix List (RFC 7489) and the tree walk give
different answers; each test says what the PSL would have said. Served by the in-process DNS
server (tests/dnsserver.py); the walk's query count is read from the server's query log.
"""

from __future__ import annotations

import itertools

import pytest
from dnsserver import DnsServer
from hypothesis import given
from hypothesis import strategies as st
from probes.test_dns_auth import codes, healthy, probe, value

from exporter.probes.dns import treewalk
from exporter.probes.dns.treewalk import Step, TreeWalk, walk_names


def dmarc_queries(server: DnsServer) -> list[str]:
    return [
        name for name, rdtype in server.queries if name.startswith("_dmarc.") and rdtype == "TXT"
    ]


def evidence(rec_findings: list[object], code: str) -> str:
    return " | ".join(f.evidence for f in rec_findings if f.code == code)  # type: ignore[attr-defined]


# ----- the walk's names ----------------------------------------------------------------------


def test_walk_names_follow_the_label_count_rule() -> None:
    assert walk_names("example.com") == ["example.com", "com"]
    assert walk_names("a.mail.example.com") == [
        "a.mail.example.com", "mail.example.com", "example.com", "com",
    ]  # fmt: skip
    # RFC 9989 4.10's own example: 13 labels -> the name, then its last 7 labels, then parents.
    assert walk_names("a.b.c.d.e.f.g.h.i.j.mail.example.com") == [
        "a.b.c.d.e.f.g.h.i.j.mail.example.com",
        "g.h.i.j.mail.example.com",
        "h.i.j.mail.example.com",
        "i.j.mail.example.com",
        "j.mail.example.com",
        "mail.example.com",
        "example.com",
        "com",
    ]
    # exactly 8 labels: the shortcut and "remove one label" agree
    eight = "a.b.c.d.e.f.example.com"
    assert walk_names(eight)[1] == "b.c.d.e.f.example.com"
    assert walk_names("com") == ["com"]


label = st.from_regex(r"[a-z0-9]{1,5}", fullmatch=True)


@given(st.lists(label, min_size=1, max_size=40))
def test_walk_names_property(labels: list[str]) -> None:
    name = ".".join(labels)
    names = walk_names(name)
    assert names[0] == name
    assert len(names) <= treewalk.MAX_QUERIES
    assert len(names) == min(len(labels), 8)
    assert names[-1] == labels[-1]
    for longer, shorter in itertools.pairwise(names):
        assert longer.endswith("." + shorter)
    assert all(len(n.split(".")) <= 7 for n in names[1:])


def walk_of(start: str, records: dict[str, str]) -> TreeWalk:
    """A walk over ``records`` (name -> DMARC text) without DNS, stopping as the real one."""
    steps = []
    for name in walk_names(start):
        step = Step.of(name, [records[name]] if name in records else [])
        steps.append(step)
        if step.stops:
            break
    return TreeWalk(start, tuple(steps))


@pytest.mark.parametrize(
    ("start", "records", "org", "policy_at"),
    [
        # RFC 9989 B.4.1: the highest record wins
        ("signing.example.com", {"signing.example.com": "v=DMARC1; p=none",
                                 "example.com": "v=DMARC1; p=reject"}, "example.com",
         "signing.example.com"),
        # B.4.3: psd=y at bank.example -> the name below it
        ("giant.bank.example", {"giant.bank.example": "v=DMARC1; p=reject",
                                "bank.example": "v=DMARC1; p=none; psd=y"}, "giant.bank.example",
         "giant.bank.example"),
        ("mail.mega.bank.example", {"bank.example": "v=DMARC1; p=reject; psd=y"},
         "mega.bank.example", "bank.example"),
        # psd=n stops the walk: example.com's record is never read
        ("a.mail.example.com", {"mail.example.com": "v=DMARC1; p=quarantine; psd=n",
                                "example.com": "v=DMARC1; p=reject"}, "mail.example.com",
         "mail.example.com"),
        # a record of its own with psd=y: the PSD is its own organizational domain
        ("bank.example", {"bank.example": "v=DMARC1; p=reject; psd=y"}, "bank.example",
         "bank.example"),
        # nothing anywhere: the start itself, no policy
        ("x.example.net", {}, "x.example.net", None),
        # an intermediate record is not the policy of a deeper name without one
        ("a.b.example.com", {"b.example.com": "v=DMARC1; p=none",
                             "example.com": "v=DMARC1; p=reject"}, "example.com", "example.com"),
    ],
)  # fmt: skip
def test_organizational_domain_and_policy_record(
    start: str, records: dict[str, str], org: str, policy_at: str | None
) -> None:
    walk = walk_of(start, records)
    assert walk.organizational_domain() == org
    applicable = walk.applicable()
    assert (applicable.step.name if applicable else None) == policy_at


_RECORD = st.sampled_from(
    ["v=DMARC1; p=reject", "v=DMARC1; p=none; psd=y", "v=DMARC1; p=quarantine; psd=n",
     "v=DMARC1; psd=u", "not dmarc"]
)  # fmt: skip


@given(st.lists(label, min_size=1, max_size=12), st.data())
def test_walk_invariants(labels: list[str], data: st.DataObject) -> None:
    start = ".".join(labels)
    names = walk_names(start)
    placed = data.draw(st.dictionaries(st.sampled_from(names), _RECORD, max_size=len(names)))
    walk = walk_of(start, placed)
    org = walk.organizational_domain()
    assert org == start or start.endswith("." + org)
    applicable = walk.applicable()
    # some record applies exactly when the walk found one
    assert (applicable is None) == (not walk.found)
    if applicable is not None:
        assert start == applicable.step.name or start.endswith("." + applicable.step.name)
        assert applicable.role == "domain" or applicable.step.name != start
    # the walk stops at the first psd=y/psd=n record and never goes past it
    stops = [i for i, step in enumerate(walk.steps) if step.stops]
    assert stops in ([], [len(walk.steps) - 1])
    # a psd=y record (not the start's own) puts the organizational domain right below it
    psd = walk.public_suffix_domain()
    if psd is not None and psd != start:
        assert org == treewalk.child_towards(start, psd)


def test_several_records_at_a_name_are_all_discarded() -> None:
    steps = (
        Step("mail.example.com"),
        Step.of("example.com", ["v=DMARC1; p=reject", "v=DMARC1; p=none"]),
        Step.of("com", []),
    )
    walk = TreeWalk("mail.example.com", steps)
    assert walk.applicable() is None
    assert walk.organizational_domain() == "mail.example.com"


# ----- against a DNS server -------------------------------------------------------------------


async def test_private_suffix_tree_walk_disagrees_with_the_psl(dns_server: DnsServer) -> None:
    # The PSL lists github.io as a (private) public suffix, so RFC 7489 took alice.github.io as
    # the organizational domain and applied its p=none. RFC 9989 walks up: github.io publishes a
    # record without psd=, so it is the highest record and the organizational domain.
    domain = "news.alice.github.io"
    healthy(dns_server, domain)
    dns_server.remove(f"_dmarc.{domain}")
    dns_server.add_txt("_dmarc.alice.github.io", "v=DMARC1; p=none; rua=mailto:d@alice.github.io")
    dns_server.add_txt(
        "_dmarc.github.io", "v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@github.io"
    )
    rec = await probe(dns_server, domain=domain)
    assert rec.success, rec.result.error
    assert rec.result.details["dmarc.organizational_domain"] == "github.io"
    assert value(rec, "dmarc_policy_domain_info", domain=domain, policy_domain="github.io") == 1
    assert value(rec, "dmarc_policy", domain=domain, policy="quarantine") == 1  # sp of github.io
    assert value(rec, "dmarc_records", domain=domain) == 0
    assert "dmarc_inherited" in codes(rec.result)
    assert dmarc_queries(dns_server)[:4] == [
        "_dmarc.news.alice.github.io", "_dmarc.alice.github.io", "_dmarc.github.io", "_dmarc.io",
    ]  # fmt: skip


async def test_psd_record_with_np_for_a_non_existent_domain(dns_server: DnsServer) -> None:
    # bank.test publishes as a public suffix operator (psd=y) with np=reject. ghost.bank.test
    # does not exist (NXDOMAIN): np applies. RFC 7489 (PSL: organizational domain bank.test,
    # no np) would have applied sp=quarantine.
    dns_server.add_txt(
        "_dmarc.bank.test",
        "v=DMARC1; p=reject; sp=quarantine; np=reject; psd=y; rua=mailto:psd@bank.test",
    )
    dns_server.add("giant.bank.test", "MX", "10 mx.giant.bank.test.")
    dns_server.add("mx.giant.bank.test", "A", "192.0.2.25")
    ghost = await probe(dns_server, domain="ghost.bank.test", selectors=())
    assert ghost.success, ghost.result.error
    assert ghost.result.details["dmarc.organizational_domain"] == "ghost.bank.test"
    assert "np applies" in ghost.result.details["dmarc.exists"]
    assert value(ghost, "dmarc_policy", domain="ghost.bank.test", policy="reject") == 1
    assert (
        value(
            ghost, "dmarc_policy_domain_info", domain="ghost.bank.test", policy_domain="bank.test"
        )
        == 1
    )
    assert "public suffix domain" in ghost.result.details["dmarc.source"]
    # an existing subdomain of the PSD gets sp
    giant = await probe(dns_server, domain="giant.bank.test", selectors=())
    assert value(giant, "dmarc_policy", domain="giant.bank.test", policy="quarantine") == 1
    assert giant.result.details["dmarc.organizational_domain"] == "giant.bank.test"
    # the walk stopped at psd=y: _dmarc.test was never asked
    assert "_dmarc.test" not in dmarc_queries(dns_server)


async def test_policy_five_labels_up(dns_server: DnsServer) -> None:
    # 7 labels: the walk asks every parent (7 queries) and finds example.test's record five
    # labels up; RFC 7489 asked the name and the PSL's organizational domain only.
    domain = "a.b.c.d.e.example.test"
    healthy(dns_server, domain)
    dns_server.remove(f"_dmarc.{domain}")
    dns_server.add_txt(
        "_dmarc.example.test",
        "v=DMARC1; p=reject; sp=quarantine; np=reject; rua=mailto:d@example.test",
    )
    rec = await probe(dns_server, domain=domain)
    assert rec.success, rec.result.error
    assert value(rec, "dmarc_policy", domain=domain, policy="quarantine") == 1
    assert value(rec, "dmarc_subdomain_policy", domain=domain, policy="quarantine") == 1
    assert value(rec, "dmarc_nonexistent_subdomain_policy", domain=domain, policy="reject") == 1
    assert rec.result.details["dmarc.organizational_domain"] == "example.test"
    assert dmarc_queries(dns_server)[:7] == [f"_dmarc.{n}" for n in walk_names(domain)]


async def test_long_name_takes_at_most_eight_queries(dns_server: DnsServer) -> None:
    domain = "a.b.c.d.e.f.g.h.i.j.mail.example.test"
    dns_server.add(domain, "MX", "0 .")
    dns_server.add_txt("_dmarc.example.test", "v=DMARC1; p=reject; rua=mailto:d@example.test")
    rec = await probe(dns_server, domain=domain, selectors=())
    assert rec.success, rec.result.error
    asked = dmarc_queries(dns_server)
    assert len(set(asked)) == 8
    assert "_dmarc.b.c.d.e.f.g.h.i.j.mail.example.test" not in asked
    assert "_dmarc.g.h.i.j.mail.example.test" in asked
    assert value(rec, "dmarc_policy", domain=domain, policy="reject") == 1


async def test_psd_n_stops_the_walk_and_sp_of_a_subdomain_record_is_ignored(
    dns_server: DnsServer,
) -> None:
    healthy(dns_server, "dept.example.test")
    dns_server.set_records("_dmarc.dept.example.test", [])
    dns_server.add_txt(
        "_dmarc.dept.example.test",
        "v=DMARC1; p=reject; sp=none; psd=n; rua=mailto:d@dept.example.test",
    )
    dns_server.add_txt("_dmarc.example.test", "v=DMARC1; p=none; rua=mailto:d@example.test")
    rec = await probe(dns_server, domain="dept.example.test")
    assert rec.result.details["dmarc.organizational_domain"] == "dept.example.test"
    assert "_dmarc.example.test" not in dmarc_queries(dns_server)
    # psd=n: dept is its own organizational domain, so its sp= is what its subdomains get
    assert value(rec, "dmarc_subdomain_policy", domain="dept.example.test", policy="none") == 1
    assert "dmarc_subdomain_policy_weaker" in codes(rec.result)


async def test_sp_of_a_record_below_the_organizational_domain_does_not_apply(
    dns_server: DnsServer,
) -> None:
    # mail.example.test has its own record with sp=none, but example.test (higher) is the
    # organizational domain: subdomains of mail.example.test get example.test's sp.
    healthy(dns_server, "mail.example.test")
    dns_server.set_records("_dmarc.mail.example.test", [])
    dns_server.add_txt("_dmarc.mail.example.test", "v=DMARC1; p=reject; sp=none")
    dns_server.add_txt("_dmarc.example.test", "v=DMARC1; p=reject; sp=quarantine")
    rec = await probe(dns_server, domain="mail.example.test")
    domain = "mail.example.test"
    assert value(rec, "dmarc_policy", domain=domain, policy="reject") == 1
    assert value(rec, "dmarc_subdomain_policy", domain=domain, policy="quarantine") == 1
    weaker = [f for f in rec.result.findings if f.code == "dmarc_subdomain_policy_weaker"]
    # np= falls back to sp=, so non-existent subdomains get quarantine too
    assert [f.subject for f in weaker] == ["sp", "np"]
    assert all("_dmarc.example.test" in f.evidence for f in weaker)


async def test_testing_mode_and_removed_tags(dns_server: DnsServer) -> None:
    healthy(dns_server)
    dns_server.set_records("_dmarc.example.test", [])
    dns_server.add_txt(
        "_dmarc.example.test",
        "v=DMARC1; p=quarantine; t=y; pct=50; rf=afrf; ri=3600; rua=mailto:d@example.test",
    )
    rec = await probe(dns_server)
    assert value(rec, "dmarc_testing") == 1
    assert value(rec, "dmarc_pct") == 50  # still shown for RFC 7489 receivers
    assert {"dmarc_testing_mode", "dmarc_removed_tag", "dmarc_pct_partial"} <= codes(rec.result)
    assert evidence(rec.result.findings, "dmarc_removed_tag") == "pct=50; rf=afrf; ri=3600"
    assert "dmarc_invalid_tag" not in codes(rec.result)
    assert value(rec, "dmarc_policy", policy="quarantine") == 1


async def test_testing_flag_off_by_default(dns_server: DnsServer) -> None:
    healthy(dns_server)
    rec = await probe(dns_server)
    assert value(rec, "dmarc_testing") == 0
    assert value(rec, "dmarc_policy_domain_info", policy_domain="example.test") == 1
    assert not {"dmarc_testing_mode", "dmarc_removed_tag"} & codes(rec.result)


async def test_invalid_np_makes_the_record_act_as_none(dns_server: DnsServer) -> None:
    # RFC 9989 4.10.1: an invalid np (or sp, or p) with a valid rua -> act as p=none.
    healthy(dns_server)
    dns_server.set_records("_dmarc.example.test", [])
    dns_server.add_txt("_dmarc.example.test", "v=DMARC1; p=reject; np=never; rua=mailto:d@x.test")
    rec = await probe(dns_server)
    assert "dmarc_invalid" in codes(rec.result)
    assert value(rec, "dmarc_valid") == 0
    assert value(rec, "dmarc_policy", policy="none") == 1


async def test_report_destination_under_a_psd_needs_authorization(dns_server: DnsServer) -> None:
    # pages.test publishes psd=y: alice.pages.test and bob.pages.test are different
    # organizations, so reports for alice sent to bob need bob's consent. By the PSL (which
    # does not list pages.test) both were pages.test and nothing was asked.
    domain = "alice.pages.test"
    healthy(dns_server, domain)
    dns_server.set_records(f"_dmarc.{domain}", [])
    dns_server.add_txt(f"_dmarc.{domain}", "v=DMARC1; p=reject; rua=mailto:r@bob.pages.test")
    dns_server.add_txt("_dmarc.pages.test", "v=DMARC1; p=none; psd=y")
    rec = await probe(dns_server, domain=domain)
    unauthorized = [
        f for f in rec.result.findings if f.code == "dmarc_report_destination_unauthorized"
    ]
    assert [f.subject for f in unauthorized] == ["bob.pages.test"]
    dns_server.add_txt(f"{domain}._report._dmarc.bob.pages.test", "v=DMARC1")
    rec = await probe(dns_server, domain=domain)
    assert "dmarc_report_destination_unauthorized" not in codes(rec.result)


async def test_report_destination_in_the_same_organization_needs_nothing(
    dns_server: DnsServer,
) -> None:
    healthy(dns_server)
    dns_server.set_records("_dmarc.example.test", [])
    dns_server.add_txt(
        "_dmarc.example.test", "v=DMARC1; p=reject; rua=mailto:r@reports.example.test"
    )
    rec = await probe(dns_server)
    assert "dmarc_report_destination_unauthorized" not in codes(rec.result)
    assert not any("_report._dmarc" in name for name, _ in dns_server.queries)


async def test_walk_timeout_is_could_not_tell(dns_server: DnsServer) -> None:
    domain = "mail.example.test"
    healthy(dns_server, domain)
    dns_server.remove(f"_dmarc.{domain}")
    dns_server.timeout.add("_dmarc.example.test")
    rec = await probe(dns_server, domain=domain, lifetime=0.5)
    assert not rec.success
    assert "DMARC" in (rec.result.error or "")
    assert not {"dmarc_missing", "dmarc_inherited"} & codes(rec.result)
    assert value(rec, "dmarc_valid", domain=domain) is None


@pytest.mark.parametrize("fault", ["servfail", "timeout"])
async def test_failed_upper_level_does_not_hide_the_domains_own_policy(
    dns_server: DnsServer, fault: str
) -> None:
    # SERVFAIL at _dmarc.<tld>: the domain's own record applies whatever the TLD says; only
    # the organizational domain and the policy of subdomains (which may come from higher up)
    # depend on the failed level.
    healthy(dns_server)
    getattr(dns_server, fault).add("_dmarc.test")
    rec = await probe(dns_server, lifetime=0.5)
    assert not rec.success
    assert "_dmarc.test" in (rec.result.error or "")
    assert value(rec, "dmarc_records") == 1
    assert value(rec, "dmarc_valid") == 1
    assert value(rec, "dmarc_policy", policy="reject") == 1
    assert value(rec, "dmarc_policy_domain_info", policy_domain="example.test") == 1
    assert value(rec, "dmarc_subdomain_policy", policy="reject") is None
    assert value(rec, "dmarc_nonexistent_subdomain_policy", policy="reject") is None
    assert not {"dmarc_missing", "dmarc_inherited"} & codes(rec.result)
    assert "could not tell" in rec.result.details["dmarc.organizational_domain"]
    # the bulk-sender dmarc requirement only needs the domain's policy
    assert value(rec, "sender_requirement", requirement="dmarc") == 1


async def test_failed_upper_level_without_an_own_record_is_could_not_tell(
    dns_server: DnsServer,
) -> None:
    domain = "mail.example.test"
    healthy(dns_server, domain)
    dns_server.remove(f"_dmarc.{domain}")
    dns_server.add_txt("_dmarc.example.test", "v=DMARC1; p=reject")
    dns_server.servfail.add("_dmarc.test")
    rec = await probe(dns_server, domain=domain)
    assert not rec.success
    assert "_dmarc.test" in (rec.result.error or "")
    assert value(rec, "dmarc_valid", domain=domain) is None
    assert value(rec, "dmarc_policy", domain=domain, policy="reject") is None
    assert not {"dmarc_missing", "dmarc_inherited"} & codes(rec.result)


def test_incomplete_walk_raises_for_what_depends_on_the_failed_level() -> None:
    from exporter.net.dnsmodel import DnsTempError

    failure = DnsTempError("_dmarc.test", "TXT", "SERVFAIL")
    own = Step.of("example.test", ["v=DMARC1; p=reject"])
    partial = TreeWalk("example.test", (own,), failure)
    app = partial.applicable()
    assert app is not None and app.role == "domain"
    for call in (partial.organizational_domain, partial.below().applicable):
        with pytest.raises(DnsTempError):
            call()
    without = TreeWalk("mail.example.test", (Step("mail.example.test"),), failure)
    with pytest.raises(DnsTempError):
        without.applicable()
