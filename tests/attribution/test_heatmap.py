"""The demo's 'who is paid for what' report from audit records."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from royalflow.attribution.heatmap import class_shares, table_text, write_png


def record(label: int | None, values: list[float]) -> dict:
    return {"owners": ["a", "b"], "shapley_values": values, "conditioning": {"class_label": label}}


def test_mean_shares_per_class_and_content_only_row(tmp_path: Path) -> None:
    records = [record(1, [3.0, 1.0]), record(1, [1.0, -2.0]), record(0, [-1.0, -1.0]), record(None, [0.0, 2.0])]
    rows, owners, matrix, counts = class_shares(records)
    assert rows == ["0", "1", "content"] and owners == ["a", "b"] and counts == [1, 2, 1]
    assert np.allclose(matrix, [[0.0, 0.0], [0.875, 0.125], [0.0, 1.0]])  # nothing positive: 0 (pool unattributed)
    assert "content" in table_text(rows, owners, matrix, counts)
    png = write_png(rows, owners, matrix, tmp_path / "h.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
