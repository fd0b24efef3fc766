"""Property tests of largest-remainder apportionment: exact sums, quota bounds, determinism."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from royalflow.money import apportion

weights_and_keys = st.lists(
    st.tuples(st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False), st.text(min_size=1, max_size=8)),
    min_size=1, max_size=20, unique_by=lambda t: t[1],
).filter(lambda xs: sum(w for w, _ in xs) > 0)


@settings(max_examples=300, deadline=None)
@given(total=st.integers(min_value=0, max_value=10**15), xs=weights_and_keys)
def test_parts_sum_exactly_and_stay_within_one_unit_of_quota(total: int, xs: list[tuple[float, str]]) -> None:
    weights, keys = [w for w, _ in xs], [k for _, k in xs]
    parts = apportion(total, weights, keys)
    assert sum(parts) == total and all(p >= 0 for p in parts)
    weight_sum = sum(Fraction(w) for w in weights)
    for part, w in zip(parts, weights):
        quota = total * Fraction(w) / weight_sum
        assert quota - 1 < part < quota + 1  # Hamilton: floor(quota) or floor(quota) + 1


@settings(max_examples=200, deadline=None)
@given(total=st.integers(min_value=0, max_value=10**12), xs=weights_and_keys)
def test_order_of_owners_does_not_change_anyones_amount(total: int, xs: list[tuple[float, str]]) -> None:
    forward = dict(zip([k for _, k in xs], apportion(total, [w for w, _ in xs], [k for _, k in xs])))
    rev = list(reversed(xs))
    backward = dict(zip([k for _, k in rev], apportion(total, [w for w, _ in rev], [k for _, k in rev])))
    assert forward == backward


def _largest_remainder_on_fractions(total: int, weights: list[float | int | Fraction], keys: list[str]) -> list[int]:
    """The definition, on exact rationals: what apportion computed before it moved to integers."""
    exact = [Fraction(w) for w in weights]
    weight_sum = sum(exact, Fraction(0))
    quotas = [total * w / weight_sum for w in exact]
    parts = [q.numerator // q.denominator for q in quotas]
    order = sorted(range(len(parts)), key=lambda i: (-(quotas[i] - parts[i]), keys[i]))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


mixed_weights = st.lists(
    st.tuples(
        st.one_of(st.floats(min_value=0, max_value=1e300, allow_nan=False, allow_infinity=False),
                  st.integers(min_value=0, max_value=10**6),
                  st.fractions(min_value=0, max_value=10**6, max_denominator=10**6)),
        st.text(min_size=1, max_size=8)),
    min_size=1, max_size=12, unique_by=lambda t: t[1],
).filter(lambda xs: sum(Fraction(w) for w, _ in xs) > 0)


@settings(max_examples=400, deadline=None)
@given(total=st.integers(min_value=0, max_value=10**15), xs=mixed_weights)
def test_integer_arithmetic_equals_the_exact_rational_definition(total: int, xs: list[tuple[object, str]]) -> None:
    weights, keys = [w for w, _ in xs], [k for _, k in xs]
    assert apportion(total, weights, keys) == _largest_remainder_on_fractions(total, weights, keys)  # type: ignore[arg-type]
