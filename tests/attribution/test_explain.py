"""Explanations: a PNG of the generated image beside owner shares with error bars, and a table."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image

from royalflow.attribution.explain import render
from royalflow.contracts import AttributionRecord, Conditioning, Content
from tests.attribution.diffusion_factory import digit_png, sha256


def record(values: list[float]) -> AttributionRecord:
    png = digit_png(3)
    owners = [f"owner-{c}" for c in "abcd"][: len(values)]
    return AttributionRecord(
        generation_id="gen-explain", occurred_at=datetime(2026, 1, 1, tzinfo=UTC), family_id="digits-diffusion",
        family_version="1", method="exact", mode="exact", owners=owners, shapley_values=values,
        std_errors=[0.1] * len(values), coalition_utilities={"0x0": -80.0}, utility_std_errors={"0x0": 0.5},
        seed=7, revenue_amount=1000, pool_amount=300, currency="USD", asset_scale=2, content_sha256=sha256(png),
        model_evaluations=68, conditioning=Conditioning(class_label=4),
        content=Content(media_type="image/png", sha256=sha256(png), data_base64=base64.b64encode(png).decode()),
    )


def test_render_writes_image_and_returns_a_table(tmp_path: Path) -> None:
    out = tmp_path / "explain" / "gen.png"
    text = render(record([0.2, 3.1, -0.4, 0.7]), out, {"owner-a": 15, "owner-b": 232, "owner-d": 53})
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > image.height > 200
    lines = text.splitlines()
    assert "gen-explain" in lines[0] and "digits-diffusion" in lines[0]
    row_b = next(line for line in lines if line.startswith("owner-b"))
    assert "3.100" in row_b and "77.5%" in row_b and row_b.endswith("232")
    row_c = next(line for line in lines if line.startswith("owner-c"))
    assert "0.0%" in row_c  # negative values are clipped


def test_no_positive_owner_says_where_the_pool_went(tmp_path: Path) -> None:
    text = render(record([-1.0, -0.5]), tmp_path / "neg.png")
    assert "_unattributed" in text


def test_table_names_the_cluster_and_the_fair_control() -> None:
    from royalflow.attribution.explain import table
    from royalflow.contracts.events import FairnessRule

    base = record([1.0, 1.0, 2.0])
    rule = FairnessRule(control="random_labels", null_dropout=0.15, public_mix=0.0, start="base")
    text = table(base.model_copy(update={"clusters": [["owner-a", "owner-b"], ["owner-c"]], "fairness": rule,
                                         "conditioning": Conditioning()}))
    assert "owner-a + owner-b" in text and "random_labels" in text and "content only" in text


def test_a_screened_catalogue_family_shows_its_top_owners_and_marks_the_refined(tmp_path: Path) -> None:
    from royalflow.attribution.explain import MAX_SHOWN_OWNERS
    from royalflow.contracts.events import ScreenRecord

    base = record([0.1])
    owners = [f"owner-{i:04d}" for i in range(300)]
    values = [0.0] * 300
    values[7], values[42], values[5] = 2.0, 1.0, 0.5
    screened = base.model_copy(update={
        "owners": owners, "shapley_values": values, "std_errors": [0.2] * 300, "mode": "compositional",
        "method": "mixture", "screen": ScreenRecord(refined=["owner-0007", "owner-0042"], tolerance=0.02,
                                                    bound_nats=1.5, remainder=0.01, unet_passes=85)})
    text = render(screened, tmp_path / "screened.png")
    lines = text.splitlines()
    assert sum(line.startswith("owner-") for line in lines) == MAX_SHOWN_OWNERS
    assert next(line for line in lines if line.startswith("owner-0007")).endswith("full")
    assert next(line for line in lines if line.startswith("owner-0005")).endswith("screened")
    assert any(line.startswith(f"... and {300 - MAX_SHOWN_OWNERS} more owners") for line in lines)
    assert any("refined in full: owner-0007, owner-0042" in line and "85 UNet passes" in line for line in lines)
