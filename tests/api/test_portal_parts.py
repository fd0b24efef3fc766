"""The portal's pure parts: pictures only ever as re-encoded PNG pixels, the share chart's error
bars, the earnings chart's families and colours, the per-owner cache."""

from __future__ import annotations

import base64
import io
from datetime import date

import numpy as np
from PIL import Image

from royalflow.api.portal import charts
from royalflow.api.portal.cache import TtlCache
from royalflow.api.portal.data import picture_data_uri

from tests.api.portal import png_base64


def _decoded(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_pictures_are_reencoded_png_or_nothing() -> None:
    assert _decoded(picture_data_uri({"media_type": "image/png", "data_base64": png_base64()}) or "").size == (8, 8)
    npy = io.BytesIO()
    np.save(npy, np.linspace(0, 1, 64).reshape(8, 8))
    npy_uri = picture_data_uri({"media_type": "application/x-npy", "data_base64": base64.b64encode(npy.getvalue()).decode()})
    assert _decoded(npy_uri or "").size == (8, 8)
    svg = base64.b64encode(b"<svg onload=alert(1)>").decode()
    for content in (None, {}, {"media_type": "image/png", "uri": "s3://x"}, {"media_type": "image/svg+xml", "data_base64": svg},
                    {"media_type": "image/png", "data_base64": svg}, {"media_type": "image/png", "data_base64": "%%%"},
                    {"media_type": "application/x-npy", "data_base64": svg}):
        assert picture_data_uri(content) is None


def test_share_chart_has_one_bar_and_error_bar_per_owner() -> None:
    parts = [{"owner_id": "owner-a", "shapley_value": 3.0, "std_error": 0.3, "share": 0.75},
             {"owner_id": "owner#2", "shapley_value": 1.0, "std_error": 0.5, "share": 0.25},
             {"owner_id": "owner#3", "shapley_value": -0.5, "std_error": 0.1, "share": 0.0}]
    chart = charts.shares(parts)
    assert len(chart.bars) == len(chart.whiskers) == 3 and [t for _, t in chart.x_labels] == ["owner-a", "owner#2", "owner#3"]
    # SE of phi over the sum of positive phi: 0.3 / 4 = 0.075 of the axis for owner-a.
    whisker = chart.whiskers[0]
    plot = charts.PLOT_HEIGHT
    assert abs((float(whisker.bottom) - float(whisker.top)) - 2 * 0.075 * plot) < 0.2
    assert all(charts.MARGIN_TOP - 0.1 <= float(w.top) <= float(w.bottom) <= charts.HEIGHT - charts.MARGIN_BOTTOM + 0.1
               for w in chart.whiskers)


def test_earnings_chart_keeps_the_biggest_families_and_groups_the_rest() -> None:
    days = [date(2026, 12, d) for d in range(1, 4)]
    families = [f"fam-{i}@1" for i in range(10)]
    cells = {(days[i % 3], f): (i + 1) * 10**9 for i, f in enumerate(families)}
    chart = charts.earnings(days, families, cells, 9, "USD")
    names = [name for _, name in chart.legend]
    assert len(names) == len(charts.PALETTE) and names[-1] == charts.OTHER and "fam-9@1" in names and "fam-0@1" not in names
    assert len(chart.bars) == len(families) and chart.y_ticks[-1][2] == "22"  # tallest day: 1 + 4 + 7 + 10 units


async def test_cache_keeps_values_for_its_ttl_and_is_bounded() -> None:
    calls = []

    async def compute() -> int:
        calls.append(1)
        return len(calls)

    cache = TtlCache(60, max_entries=2)
    assert [await cache.get("a", compute), await cache.get("a", compute)] == [1, 1]
    await cache.get("b", compute)
    await cache.get("c", compute)  # evicts "a"
    assert await cache.get("a", compute) == 4
    off = TtlCache(0)
    assert [await off.get("a", compute), await off.get("a", compute)] == [5, 6]
