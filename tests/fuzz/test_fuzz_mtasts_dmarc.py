"""Wider properties of the MTA-STS policy, the STS and TLS-RPT records and the DMARC record.

Beyond "raises only its own error" (tests/mtasts, test_fuzz_dns_records.py): what the grammar
lets an author vary — whitespace per line and per delimiter, LF or CRLF per line, field order,
repeats, the case of DMARC tag names, the order of an RRset — never changes what is parsed; and
a valid text with one byte changed still raises only the parser's own error.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.mtasts import (
    MAX_AGE_LIMIT,
    PolicyError,
    StsRecordError,
    TlsRptError,
    discover_sts,
    discover_tlsrpt,
    parse_policy,
    parse_sts_record,
    parse_tlsrpt_record,
)
from exporter.probes.dns.dmarc_record import POLICIES, DmarcSyntaxError, parse_dmarc, valid_uri

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_WSP = st.text(" \t", max_size=3)
_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_HOST = st.lists(_LABEL, min_size=2, max_size=4).map(".".join)


def _case(draw: st.DrawFn, text: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c.lower() for c in text)


def _mutate(draw: st.DrawFn, text: str) -> str:
    """``text`` with one character replaced, inserted or removed."""
    pos = draw(st.integers(0, max(0, len(text) - 1)))
    op = draw(st.sampled_from(["replace", "insert", "delete"]))
    char = draw(st.characters(codec="utf-8") | st.sampled_from(list(" \t\r\n;:=,@.*")))
    if op == "delete":
        return text[:pos] + text[pos + 1 :]
    return text[:pos] + char + text[pos + (op == "replace") :]


# ----- MTA-STS policy --------------------------------------------------------------------------


@st.composite
def _policy(draw: st.DrawFn) -> tuple[str, tuple[str, int, set[tuple[bool, str]]]]:
    """A policy the grammar generates, each line with its own spacing and terminator, and
    (mode, max_age, mx patterns) it says."""
    mode = draw(st.sampled_from(["enforce", "testing", "none"]))
    max_age = draw(st.integers(0, MAX_AGE_LIMIT))
    mx = draw(st.lists(st.tuples(st.booleans(), _HOST), min_size=1, max_size=4))
    fields = [("version", "STSv1"), ("mode", mode), ("max_age", str(max_age))]
    fields += [("mx", ("*." if w else "") + h) for w, h in mx]
    # repeats of known fields (first wins) and extensions
    fields += [("mode", draw(st.sampled_from(["none", "bogus"])))] * draw(st.integers(0, 1))
    fields += draw(
        st.lists(
            st.tuples(
                st.from_regex(r"x-[a-z0-9_.-]{0,6}", fullmatch=True),
                st.from_regex(r"[!-~]([ !-~]{0,6}[!-~])?", fullmatch=True),
            ),
            max_size=2,
        )
    )
    head, tail = fields[:3], draw(st.permutations(fields[3:]))
    lines = draw(st.permutations(head)) + list(tail)
    # the repeated mode must come after the first one: keep the three known fields first
    text = ""
    for i, (name, value) in enumerate(lines):
        text += f"{name}:{draw(_WSP)}{value}{draw(_WSP)}"
        if i < len(lines) - 1 or draw(st.booleans()):
            text += draw(st.sampled_from(["\n", "\r\n"]))
    return text, (mode, max_age, set(mx))


@PROPS
@given(_policy())
def test_policy_parses_to_what_it_says_however_written(
    generated: tuple[str, tuple[str, int, set[tuple[bool, str]]]],
) -> None:
    text, (mode, max_age, mx) = generated
    policy = parse_policy(text)
    assert (policy.mode, policy.max_age) == (mode, max_age)
    assert {(p.wildcard, p.domain) for p in policy.mx} == mx
    # the canonical form is a fixed point: it parses to itself
    assert parse_policy(policy.canonical()).canonical() == policy.canonical()
    assert parse_policy(text.replace("\r\n", "\n")).digest() == policy.digest()


@PROPS
@given(st.data())
def test_policy_with_one_character_changed_raises_only_its_own_error(data: st.DataObject) -> None:
    text, _ = data.draw(_policy())
    mutated = _mutate(data.draw, text)
    for body in (mutated, mutated.encode("utf-8", "surrogatepass")):
        try:
            policy = parse_policy(body)
        except PolicyError as exc:
            assert str(exc)
            continue
        assert policy.mode in ("enforce", "testing", "none")
        assert 0 <= policy.max_age <= MAX_AGE_LIMIT


# ----- STS and TLS-RPT records -----------------------------------------------------------------


@st.composite
def _sts(draw: st.DrawFn) -> tuple[str, str]:
    policy_id = draw(st.from_regex(r"[A-Za-z0-9]{1,32}", fullmatch=True))
    fields = [f"id={policy_id}"]
    fields += [
        f"{k}={v}"
        for k, v in draw(
            st.lists(
                st.tuples(
                    st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,6}", fullmatch=True).filter(
                        lambda n: n != "id"
                    ),
                    st.from_regex(r"[!-:<>-~]{1,8}", fullmatch=True),
                ),
                max_size=3,
            )
        )
    ]
    fields = draw(st.permutations(fields))
    text = "v=STSv1" + "".join(f"{draw(_WSP)};{draw(_WSP)}{f}" for f in fields)
    final = f"{draw(_WSP)};{draw(_WSP)}" if draw(st.booleans()) else ""
    return text + final, policy_id


@st.composite
def _tlsrpt(draw: st.DrawFn) -> tuple[str, list[str]]:
    uris = draw(
        st.lists(
            st.one_of(
                st.builds(lambda lp, h: f"mailto:{lp}@{h}", st.from_regex(r"[a-z0-9.+_-]{1,8}",
                          fullmatch=True).filter(lambda s: not s.startswith(".")), _HOST),
                st.builds(lambda h, p: f"https://{h}{p}", _HOST,
                          st.from_regex(r"(/[a-z0-9]{0,6}){0,2}", fullmatch=True)),
            ),
            min_size=1,
            max_size=3,
        )
    )  # fmt: skip
    rua = "".join((f"{draw(_WSP)},{draw(_WSP)}" if i else "") + u for i, u in enumerate(uris))
    text = f"v=TLSRPTv1{draw(_WSP)};{draw(_WSP)}rua={rua}"
    return text + (f"{draw(_WSP)};{draw(_WSP)}" if draw(st.booleans()) else ""), uris


@PROPS
@given(_sts())
def test_generated_sts_records_parse_to_their_id(generated: tuple[str, str]) -> None:
    text, policy_id = generated
    assert parse_sts_record(text).id == policy_id
    assert discover_sts(["v=spf1 -all", text, "unrelated"]).record is not None


@PROPS
@given(_tlsrpt())
def test_generated_tlsrpt_records_parse_to_their_uris(generated: tuple[str, list[str]]) -> None:
    text, uris = generated
    assert list(parse_tlsrpt_record(text).rua) == uris


@PROPS
@given(st.data())
def test_records_with_one_character_changed_raise_only_their_own_errors(
    data: st.DataObject,
) -> None:
    sts, _ = data.draw(_sts())
    rpt, _ = data.draw(_tlsrpt())
    for parse, text, error in (
        (parse_sts_record, sts, StsRecordError),
        (parse_tlsrpt_record, rpt, TlsRptError),
    ):
        try:
            parse(_mutate(data.draw, text))
        except error as exc:
            assert str(exc)


@PROPS
@given(st.data())
def test_discovery_does_not_depend_on_the_order_of_the_rrset(data: st.DataObject) -> None:
    sts, _ = data.draw(_sts())
    rpt, _ = data.draw(_tlsrpt())
    noise = data.draw(
        st.lists(st.sampled_from([sts, rpt, "v=spf1 -all", "V=STSv1; id=1", " v=TLSRPTv1;"]),
                 max_size=3)
    )  # fmt: skip
    rrset = [sts, rpt, *noise]
    shuffled = data.draw(st.permutations(rrset))
    for discover in (discover_sts, discover_tlsrpt):
        a, b = discover(rrset), discover(shuffled)
        assert (a.status, a.record) == (b.status, b.record)


# ----- DMARC record ----------------------------------------------------------------------------


@st.composite
def _dmarc(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    """A valid record with random tag-name case and spacing, and the tags it sets."""
    tags = {"p": draw(st.sampled_from(POLICIES))}
    for tag, values in (
        ("sp", POLICIES), ("np", POLICIES), ("adkim", ("r", "s")), ("aspf", ("r", "s")),
        ("psd", ("y", "n", "u")), ("t", ("y", "n")), ("fo", ("0", "1", "d", "s", "0:1:d")),
    ):  # fmt: skip
        if draw(st.booleans()):
            tags[tag] = draw(st.sampled_from(values))
    hosts = draw(st.lists(_HOST, min_size=1, max_size=2))
    tags["rua"] = ",".join(f"mailto:d@{h}" for h in hosts)
    order = draw(st.permutations(list(tags)))
    text = f"{_case(draw, 'v')}{draw(_WSP)}={draw(_WSP)}DMARC1"
    for tag in order:
        text += f"{draw(_WSP)};{draw(_WSP)}{_case(draw, tag)}{draw(_WSP)}={draw(_WSP)}{tags[tag]}"
    return text + draw(st.sampled_from(["", ";", " ; "])), tags


@PROPS
@given(_dmarc())
def test_dmarc_parses_to_what_it_says_whatever_the_case_of_tag_names(
    generated: tuple[str, dict[str, str]],
) -> None:
    text, tags = generated
    rec = parse_dmarc(text)
    assert rec.problems == [] and rec.policy_problem is None
    assert rec.policy == tags["p"]
    assert rec.subdomain_policy == tags.get("sp")
    assert rec.nonexistent_policy == tags.get("np")
    assert (rec.adkim, rec.aspf, rec.psd) == (
        tags.get("adkim", "r"), tags.get("aspf", "r"), tags.get("psd", "u"),
    )  # fmt: skip
    assert rec.testing == (tags.get("t") == "y")
    assert ",".join(rec.rua) == tags["rua"]
    assert parse_dmarc(text.lower().replace("dmarc1", "DMARC1")).tags == rec.tags


@PROPS
@given(st.data())
def test_dmarc_with_one_character_changed_raises_only_its_own_error(data: st.DataObject) -> None:
    text, _ = data.draw(_dmarc())
    try:
        rec = parse_dmarc(_mutate(data.draw, text))
    except DmarcSyntaxError:
        return
    assert all(rec.effective(t) in POLICIES for t in ("p", "sp", "np"))
    assert all(valid_uri(u) for u in rec.rua + rec.ruf)
