"""Explaining one generation: its image beside a bar chart of owner shares with error bars,
plus a plain-text table. Input is the audit record the ledger keeps (AttributionRecord)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from royalflow.contracts import AttributionRecord

MAX_SHOWN_OWNERS = 20  # a catalogue family lists its top owners, then one line for the rest


def shown_owners(record: AttributionRecord) -> list[int]:
    """Indices of the owners to show: all of a small family; else the largest shares first
    (then values), at most MAX_SHOWN_OWNERS."""
    values = np.array(record.shapley_values)
    if len(values) <= MAX_SHOWN_OWNERS:
        return list(range(len(values)))
    order = np.lexsort((-values, -np.clip(values, 0, None)))
    return sorted(int(i) for i in order[:MAX_SHOWN_OWNERS])


def table(record: AttributionRecord, amounts: dict[str, int] | None = None) -> str:
    values = np.array(record.shapley_values)
    positive = np.clip(values, 0, None)
    shares = positive / positive.sum() if positive.sum() > 0 else np.zeros_like(positive)
    refined = set(record.screen.refined) if record.screen is not None else None
    lines = [
        f"generation {record.generation_id}  family {record.family_id} v{record.family_version} "
        f"({record.mode}, {record.method}, seed {record.seed})",
        f"pool {record.pool_amount} of revenue {record.revenue_amount} {record.currency} units (asset scale {record.asset_scale})",
        f"{'owner':<16}{'phi (nats)':>12}{'+- SE':>10}{'share':>9}{'amount':>16}" + ("  likelihood" if refined is not None else ""),
    ]
    shown = shown_owners(record)
    for i in shown:
        owner = record.owners[i]
        amount = "" if amounts is None else str(amounts.get(owner, 0))
        how = "" if refined is None else ("  full" if owner in refined else "  screened")
        lines.append(f"{owner:<16}{values[i]:>12.3f}{record.std_errors[i]:>10.3f}{shares[i]:>9.1%}{amount:>16}{how}")
    hidden = len(values) - len(shown)
    if hidden:
        rest = 1.0 - float(shares[shown].sum())
        lines.append(f"... and {hidden} more owners, {rest:.1%} of the pool together")
    if record.screen is not None:
        sc = record.screen
        lines.append(f"screened {len(values)} owners to first order; refined in full: {', '.join(sc.refined) or 'none'} "
                     f"(tolerance {sc.tolerance:g}, screen bound {sc.bound_nats:.3f} nats in every screened owner's SE, "
                     f"unrefined remainder {sc.remainder:.4f} nats, {sc.unet_passes} UNet passes)")
    if positive.sum() == 0:
        lines.append("no owner has a positive value: the pool went to _unattributed")
    for cluster in record.clusters or []:
        if len(cluster) > 1:  # same-source owners: valued as one player, split by data size
            lines.append(f"paid as one cluster (same-source evidence), split by data size: {' + '.join(cluster)}")
    if record.fairness is not None:
        rule = record.fairness
        lines.append(f"fair control: {rule.control}, null dropout {rule.null_dropout:g}, public mix {rule.public_mix:g}, "
                     f"fine-tunes start from {rule.start}")
    if record.conditioning.class_label is None and record.conditioning.prompt is None:
        lines.append("content only: no label, attributed from the image alone")
    return "\n".join(lines)


def render(record: AttributionRecord, out_png: Path, amounts: dict[str, int] | None = None) -> str:
    """Write the explanation PNG and return the text table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    values = np.array(record.shapley_values)
    errors = np.array(record.std_errors)
    positive = np.clip(values, 0, None)
    total = positive.sum()
    shares = positive / total if total > 0 else np.zeros_like(positive)
    # Share error bars: SE of phi scaled by the normaliser (first-order).
    share_errors = errors / total if total > 0 else np.zeros_like(errors)
    shown = shown_owners(record)
    owners = [record.owners[i] for i in shown]
    shares, share_errors = shares[shown], share_errors[shown]
    refined = set(record.screen.refined) if record.screen is not None else set(owners)
    colours = ["#3b7dd8" if o in refined else "#a9c4ea" for o in owners]  # pale: screened, first order

    fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [1, 2.2]})
    if record.content.data_base64 and record.content.media_type == "image/png":
        image = Image.open(io.BytesIO(base64.b64decode(record.content.data_base64))).convert("L")
        ax_img.imshow(np.asarray(image), cmap="gray_r", interpolation="nearest")
    else:
        ax_img.text(0.5, 0.5, record.content.uri or "(no inline image)", ha="center", va="center", wrap=True)
    label = record.conditioning.class_label
    ax_img.set_title(f"generated ({'class ' + str(label) if label is not None else record.conditioning.prompt or ''})")
    ax_img.axis("off")
    ax_bar.bar(owners, shares, yerr=share_errors, capsize=4, color=colours)
    if record.screen is not None:
        ax_bar.legend(handles=[plt.Rectangle((0, 0), 1, 1, color="#3b7dd8"), plt.Rectangle((0, 0), 1, 1, color="#a9c4ea")],
                      labels=["likelihood in full", "screened (first order)"], fontsize=7, loc="upper right")
    if len(shown) < len(record.owners):
        ax_bar.set_xlabel(f"top {len(shown)} of {len(record.owners)} owners")
        ax_bar.tick_params(axis="x", labelrotation=60, labelsize=6)
    ax_bar.set_ylim(0, 1)
    ax_bar.set_ylabel("royalty share")
    ax_bar.set_title(f"Shapley royalty shares ({record.mode}, ±1 SE)")
    for i, share in enumerate(shares):
        ax_bar.text(i, min(share + share_errors[i] + 0.03, 0.95), f"{share:.0%}", ha="center")  # above the error bar
    fig.suptitle(f"{record.generation_id} — {record.family_id} v{record.family_version}", fontsize=10)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return table(record, amounts)
