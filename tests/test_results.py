"""The sample builders of :mod:`exporter.results`."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

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
