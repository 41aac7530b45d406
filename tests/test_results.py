"""The sample builders of :mod:`exporter.results`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter import results
from exporter.results import sample, state_set

_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)


@given(
    labels=st.dictionaries(_NAMES, st.text(max_size=5), max_size=4),
    label=_NAMES,
    values=st.lists(st.text(max_size=5), min_size=1, max_size=6, unique=True),
    current=st.none() | st.text(max_size=5),
)
def test_state_set_is_one_sample_per_value(
    labels: dict[str, str], label: str, values: list[str], current: str | None
) -> None:
    labels.pop(label, None)
    expected = [sample("m", v == current, **{label: v}, **labels) for v in values]
    assert state_set("m", current, values, label, **labels) == expected


def test_samples_share_their_label_pairs() -> None:
    a = sample("dmarc_valid", 1, domain="example.com")
    b = state_set("dmarc_policy", "none", ("none", "reject"), "policy", domain="example.com")
    assert a.labels == (("domain", "example.com"),)
    assert a.labels[0] is b[0].labels[0] is b[1].labels[0]
    assert b[0].labels == (("domain", "example.com"), ("policy", "none"))


def test_label_pairs_when_the_table_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results, "MAX_LABEL_PAIRS", 3)
    made = [sample("m", 1, domain=f"d{i}.example", ip="192.0.2.1") for i in range(10)]
    assert [s.labels for s in made] == [
        (("domain", f"d{i}.example"), ("ip", "192.0.2.1")) for i in range(10)
    ]
