"""A diffusion family served to the agent: content checks, exact and compositional Shapley values
over ELBO utilities, axioms that common random numbers make exact, determinism."""

from __future__ import annotations

import base64
import itertools
from math import factorial

import numpy as np
import pytest

from royalflow.attribution.diffusion.images import configure_content_root
from royalflow.attribution.family import Family
from royalflow.contracts import Content
from royalflow.errors import ContractError
from tests.attribution.diffusion_factory import (
    digit_png, event, npy_bytes, random_family, sha256, with_content,
)


def brute_force_shapley(n: int, v: dict[int, float]) -> np.ndarray:
    """Shapley values by averaging marginal contributions over all n! orders (test oracle)."""
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        mask = 0
        for i in order:
            phi[i] += v[mask | 1 << i] - v[mask]
            mask |= 1 << i
    return phi / factorial(n)


@pytest.fixture(scope="module")
def exact3():  # type: ignore[no-untyped-def]
    return random_family(3, "exact", samples=4)


def test_family_meets_the_protocol(exact3) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(exact3, Family)
    assert str(exact3.pool_fraction) == "3/10"


def test_exact_mode_values_are_shapley_values_of_the_recorded_utilities(exact3) -> None:  # type: ignore[no-untyped-def]
    items = [exact3.prepare(event(exact3, f"gen-{i}", digit_png(i), label=i)) for i in range(3)]
    for a in exact3.attribute(items):
        assert sorted(a.coalition_utilities) == [hex(m) for m in range(8)]
        v = {int(k, 16): u for k, u in a.coalition_utilities.items()}
        np.testing.assert_allclose(a.shapley_values, brute_force_shapley(3, v), atol=1e-9)
        assert a.shapley_values.sum() == pytest.approx(v[7] - v[0])  # efficiency
        assert all(u < 0 for u in v.values())  # log-likelihoods of a discrete image, in nats
        assert np.all(np.isfinite(a.std_errors)) and np.all(a.std_errors > 0)
        assert set(a.utility_std_errors) == set(a.coalition_utilities)
        assert a.method == "exact" and a.mode == "exact"
        assert a.model_evaluations == 8 * (4 + 1)  # 2^n models x (K timesteps + the decoder step)


def test_symmetric_owners_get_identical_values() -> None:
    # Coalition models that depend only on coalition size: every owner is interchangeable, and
    # with common random numbers the values are equal to the last bit, SEs included.
    family = random_family(3, model_for=lambda mask, protos: protos[bin(mask).count("1")])
    a = family.attribute([family.prepare(event(family, "gen-sym", digit_png(5)))])[0]
    assert np.ptp(a.shapley_values) < 1e-9
    assert np.ptp(a.std_errors) < 1e-9


def test_null_owner_gets_exactly_zero() -> None:
    family = random_family(3, model_for=lambda mask, protos: protos[mask & 0b011])  # owner-2 changes nothing
    a = family.attribute([family.prepare(event(family, "gen-null", digit_png(6)))])[0]
    assert a.shapley_values[2] == pytest.approx(0.0, abs=1e-9)
    assert a.std_errors[2] == pytest.approx(0.0, abs=1e-9)


def test_same_event_same_numbers_whatever_the_batch(exact3) -> None:  # type: ignore[no-untyped-def]
    items = [exact3.prepare(event(exact3, f"gen-det-{i}", digit_png(10 + i))) for i in range(3)]
    alone = exact3.attribute(items[1:2])[0]
    together = exact3.attribute(items)[1]
    np.testing.assert_allclose(alone.shapley_values, together.shapley_values, atol=1e-6)
    assert exact3.attribute(items)[1].coalition_utilities == together.coalition_utilities


def mixture_utility(components: dict[str, float], sizes: dict[str, int], owners: list[str], members: list[str]) -> float:
    names = ["_base", *members]
    terms = np.array([np.log(sizes[o]) + components[o] for o in names])
    return float(np.logaddexp.reduce(terms) - np.log(sum(sizes[o] for o in names)))


def test_compositional_mode_uses_the_data_weighted_mixture() -> None:
    family = random_family(4, "compositional", samples=4)
    a = family.attribute([family.prepare(event(family, "gen-mix", digit_png(3)))])[0]
    assert sorted(a.coalition_utilities) == sorted(["component:_base", *[f"component:{o}" for o in family.owners]])
    components = {k.split(":", 1)[1]: u for k, u in a.coalition_utilities.items()}
    owners, sizes = list(family.owners), family.manifest["data_sizes"]
    v = {mask: mixture_utility(components, sizes, owners, [o for i, o in enumerate(owners) if mask >> i & 1])
         for mask in range(16)}
    np.testing.assert_allclose(a.shapley_values, brute_force_shapley(4, v), atol=1e-9)
    assert a.method == "exact" and a.mode == "compositional"
    assert a.model_evaluations == 5 * (4 + 1)  # n + 1 models, not 2^n
    assert np.all(a.std_errors > 0)


def test_many_owners_use_the_mixture_quadrature_with_error_bars() -> None:
    family = random_family(16, "compositional", samples=2)
    a = family.attribute([family.prepare(event(family, "gen-many", digit_png(4)))])[0]
    assert a.method == "mixture"
    assert len(a.shapley_values) == 16 and np.all(a.std_errors > 0)
    v_full = mixture_utility({k.split(":", 1)[1]: u for k, u in a.coalition_utilities.items()},
                             family.manifest["data_sizes"], list(family.owners), list(family.owners))
    assert a.shapley_values.sum() == pytest.approx(v_full - a.coalition_utilities["component:_base"], abs=1e-6)


# -- content checks (bad content goes to the dead-letter topic with these reasons) -------------

def bad(family, ev, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ContractError, match=match) as caught:
        family.prepare(ev)
    assert caught.value.reason == "bad_content"


def test_bad_content_is_rejected_with_a_reason(exact3, tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = event(exact3, "gen-good", digit_png(1))
    raw = b"\x89PNG\r\n\x1a\n not really a png"
    bad(exact3, event(exact3, "gen-garbage", raw), "undecodable image")
    bad(exact3, with_content(good, Content(media_type="image/png", sha256="0" * 64, data_base64=good.content.data_base64)),
        "do not match content.sha256")
    bad(exact3, event(exact3, "gen-big", digit_png(1, size=16)), "expected a 8x8 image, got 16x16")
    from PIL import Image
    import io
    rgb = io.BytesIO()
    Image.new("RGB", (8, 8)).save(rgb, format="PNG")
    bad(exact3, event(exact3, "gen-rgb", rgb.getvalue()), "1 grayscale channel")
    bad(exact3, event(exact3, "gen-label", digit_png(1), label=57), "class_label")
    bad(exact3, with_content(good, Content(media_type="image/png", sha256="0" * 64, data_base64="%%%")), "base64")
    bad(exact3, with_content(good, Content(media_type="image/png", sha256="0" * 64, uri=f"file://{tmp_path}/missing.png")),
        "file:// content is disabled")  # no content root configured (tests/attribution/test_content.py)
    bad(exact3, with_content(good, Content(media_type="image/png", sha256="0" * 64, uri="https://example.com/x.png")),
        "file://")
    bad(exact3, event(exact3, "gen-npy-shape", npy_bytes(np.zeros((3, 8, 8), np.uint8)), media_type="application/x-npy"),
        "1 channel")
    bad(exact3, event(exact3, "gen-npy-junk", b"not an array", media_type="application/x-npy"), "undecodable npy")
    bad(exact3, event(exact3, "gen-npy-range", npy_bytes(np.full((8, 8), 2.0)), media_type="application/x-npy"),
        "within")


def test_npy_and_file_uri_content_decode_like_inline_png(exact3, tmp_path) -> None:  # type: ignore[no-untyped-def]
    png = digit_png(2)
    reference = exact3.prepare(event(exact3, "gen-ref", png)).item[0]
    from PIL import Image
    import io
    pixels = np.asarray(Image.open(io.BytesIO(png)))
    as_npy = exact3.prepare(event(exact3, "gen-npy", npy_bytes(pixels[..., None]), media_type="application/x-npy"))
    as_float = exact3.prepare(event(exact3, "gen-npyf", npy_bytes(pixels / 255.0), media_type="application/x-npy"))
    path = tmp_path / "gen.png"
    path.write_bytes(png)
    configure_content_root(tmp_path)
    try:
        by_uri = exact3.prepare(with_content(event(exact3, "gen-uri", png), Content(media_type="image/png", sha256=sha256(png), uri=path.as_uri())))
    finally:
        configure_content_root(None)
    for prepared in (as_npy, as_float, by_uri):
        np.testing.assert_array_equal(prepared.item[0], reference)
    assert base64.b64decode(event(exact3, "x", png).content.data_base64 or "") == png


def test_models_evaluated_side_by_side_on_threads_give_the_same_numbers_bit_for_bit() -> None:
    one = random_family(3, "exact", samples=4, seed=3)
    two = random_family(3, "exact", samples=4, seed=3, cpu_threads=2)
    assert two._threads is not None and one._threads is None
    items = [event(one, f"gen-thr-{i}", digit_png(20 + i), label=i) for i in range(5)]
    for a, b in zip(one.attribute([one.prepare(e) for e in items]), two.attribute([two.prepare(e) for e in items])):
        assert a.coalition_utilities == b.coalition_utilities
        assert a.utility_std_errors == b.utility_std_errors
        assert np.array_equal(a.shapley_values, b.shapley_values) and np.array_equal(a.std_errors, b.std_errors)
