"""The Shapley Royalty Share policy: clip, renormalise, split exactly, never lose the pool."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from royalflow.attribution.family import Attribution, Prepared, seed_for
from royalflow.attribution.royalty import contribution_id, royalty_parts
from royalflow.contracts import UNATTRIBUTED_OWNER
from royalflow.producer.events import generation_event


class _Family:
    family_id = "fam"
    version = "3"
    owners = ("a", "b", "c")
    pool_fraction = Fraction(3, 10)


def _prepared(revenue: int) -> Prepared:
    event = generation_event(
        event_id="g1", family_id="fam", family_version="3", revenue_amount=revenue, currency="USD", content=b"x",
        class_label=1,
    )
    return Prepared(event=event, item=None, seed=seed_for("g1"))


def _attribution(values: list[float]) -> Attribution:
    return Attribution(
        owners=_Family.owners, shapley_values=np.array(values), std_errors=np.full(len(values), 0.01),
        method="exact", mode="categorical", coalition_utilities={"0x0": -3.0}, model_evaluations=8,
    )


def test_negative_values_are_clipped_and_shares_renormalised() -> None:
    parts, record = royalty_parts(_prepared(1_000_000_000), _Family(), _attribution([3.0, 1.0, -2.0]))
    by_owner = {p.owner_id: p for p in parts}
    assert [by_owner[o].share for o in "abc"] == [0.75, 0.25, 0.0]
    assert [by_owner[o].amount for o in "abc"] == [225_000_000, 75_000_000, 0]
    assert record.pool_amount == 300_000_000 and record.shapley_values == [3.0, 1.0, -2.0]
    assert by_owner["a"].contribution_id == contribution_id("g1", "a") == "g1/a/0"
    assert {p.parts_total for p in parts} == {3}


def test_no_positive_owner_sends_the_pool_to_unattributed() -> None:
    parts, _ = royalty_parts(_prepared(1_000), _Family(), _attribution([-1.0, 0.0, -0.5]))
    assert [p.amount for p in parts[:3]] == [0, 0, 0]
    assert parts[3].owner_id == UNATTRIBUTED_OWNER and parts[3].amount == 300 and parts[3].method == "unattributed"
    assert {p.parts_total for p in parts} == {4}


def test_non_finite_values_are_refused() -> None:
    from royalflow.errors import AttributionError

    with pytest.raises(AttributionError):
        royalty_parts(_prepared(1_000), _Family(), _attribution([np.nan, 1.0, 1.0]))


@hsettings(max_examples=200, deadline=None)
@given(
    revenue=st.integers(min_value=0, max_value=10**15),
    values=st.lists(st.floats(min_value=-50, max_value=50, allow_nan=False), min_size=3, max_size=3),
)
def test_parts_always_sum_to_the_pool(revenue: int, values: list[float]) -> None:
    parts, record = royalty_parts(_prepared(revenue), _Family(), _attribution(values))
    assert sum(p.amount for p in parts) == record.pool_amount == revenue * 3 // 10
    assert all(p.amount >= 0 for p in parts)
