"""Who is paid for what: mean royalty share per conditioning class x owner, over settled
generations (the audit records the ledger keeps), as a table and a heatmap PNG.

share_i = max(phi_i, 0) / sum_j max(phi_j, 0) per generation (the royalty rule), averaged over
the generations of each class; generations without a class label form the row "content".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

MAX_RECORDS = 100_000  # bound on the records read for the report (the demo settles far fewer)
CONTENT_ONLY = "content"


def class_shares(records: list[dict[str, Any]]) -> tuple[list[str], list[str], np.ndarray, list[int]]:
    """(row labels, owners, mean shares (rows, owners), generations per row) from audit records."""
    owners: list[str] = []
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for record in records:
        for owner in record["owners"]:
            if owner not in owners:
                owners.append(owner)
    for record in records:
        values = np.clip(np.array(record["shapley_values"], dtype=np.float64), 0, None)
        shares = values / values.sum() if values.sum() > 0 else np.zeros_like(values)
        label = (record.get("conditioning") or {}).get("class_label")
        row = CONTENT_ONLY if label is None else str(label)
        vector = np.zeros(len(owners))
        for owner, share in zip(record["owners"], shares):
            vector[owners.index(owner)] = share
        sums[row] = sums.get(row, np.zeros(len(owners))) + vector
        counts[row] = counts.get(row, 0) + 1
    rows = sorted(sums, key=lambda r: (r == CONTENT_ONLY, int(r) if r.isdigit() else 0, r))
    matrix = np.array([sums[r] / counts[r] for r in rows]) if rows else np.zeros((0, len(owners)))
    return rows, owners, matrix, [counts[r] for r in rows]


async def fetch_records(pool: Any) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT record FROM attributions ORDER BY generation_id LIMIT $1", MAX_RECORDS)
    return [json.loads(r["record"]) if isinstance(r["record"], str) else r["record"] for r in rows]


def table_text(rows: list[str], owners: list[str], matrix: np.ndarray, counts: list[int]) -> str:
    lines = [f"{'class':<9}{'n':>5}" + "".join(f"{o:>10}" for o in owners)]
    for row, count, shares in zip(rows, counts, matrix):
        lines.append(f"{row:<9}{count:>5}" + "".join(f"{s:>10.2f}" for s in shares))
    return "\n".join(lines)


def write_png(rows: list[str], owners: list[str], matrix: np.ndarray, out_png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(owners), 1.2 + 0.45 * len(rows)))
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(owners)), owners)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("owner")
    ax.set_ylabel("class of the generation")
    for r in range(len(rows)):
        for c in range(len(owners)):
            ax.text(c, r, f"{matrix[r, c]:.2f}", ha="center", va="center", color="white" if matrix[r, c] > 0.6 else "black")
    ax.set_title("mean royalty share per class x owner")
    fig.colorbar(image, ax=ax, fraction=0.05)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
