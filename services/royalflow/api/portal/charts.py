"""Charts drawn on the server as SVG geometry: the templates turn these shapes into <svg>
markup (autoescaped like everything else), and every chart has a table beside it.

Amounts become floats here only to place pixels; every figure a reader sees comes from the
exact integers, in the tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

# Colour-blind-safe palette (Okabe-Ito), one colour per family; the rest share "other".
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
OTHER_COLOUR = "#999999"
OTHER = "other"
WIDTH = 640
HEIGHT = 260
MARGIN_LEFT = 56
MARGIN_BOTTOM = 40
MARGIN_TOP = 16
PLOT_WIDTH = WIDTH - MARGIN_LEFT - 16
PLOT_HEIGHT = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
Y_TICKS = 4
LABEL_EVERY_DAYS = 5


CAP_PIXELS = 5.0


def _px(value: float) -> str:
    """Pixel coordinates as text once, here, not in the template (a page draws hundreds)."""
    return f"{value:.1f}"


@dataclass(frozen=True)
class Rect:
    x: str
    y: str
    width: str
    height: str
    fill: str
    title: str  # the tooltip: an accessible name for the shape

    @classmethod
    def at(cls, x: float, y: float, width: float, height: float, fill: str, title: str) -> "Rect":
        return cls(_px(x), _px(y), _px(width), _px(height), fill, title)


@dataclass(frozen=True)
class Whisker:
    x: str
    left: str
    right: str
    top: str
    bottom: str

    @classmethod
    def at(cls, x: float, top: float, bottom: float) -> "Whisker":
        return cls(_px(x), _px(x - CAP_PIXELS), _px(x + CAP_PIXELS), _px(top), _px(bottom))


@dataclass
class Chart:
    title: str
    width: int = WIDTH
    height: int = HEIGHT
    bars: list[Rect] = field(default_factory=list)
    whiskers: list[Whisker] = field(default_factory=list)
    x_labels: list[tuple[str, str]] = field(default_factory=list)  # (x, text)
    y_ticks: list[tuple[str, str, str]] = field(default_factory=list)  # (y of the line, y of its label, text)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (colour, name)
    axis_y: int = HEIGHT - MARGIN_BOTTOM
    axis_x: int = MARGIN_LEFT
    axis_right: int = WIDTH - 16


def _y(value: float, top: float) -> float:
    """Pixel row of ``value`` on a 0..top axis."""
    return MARGIN_TOP + PLOT_HEIGHT * (1.0 - (value / top if top > 0 else 0.0))


def _tick(y: float, text: str) -> tuple[str, str, str]:
    return _px(y), _px(y + 4), text


def family_colours(families: list[str], totals: dict[str, int]) -> dict[str, tuple[str, str]]:
    """family -> (colour, legend name): the biggest earners get their own colour, the rest 'other'."""
    ranked = sorted(families, key=lambda f: (-totals.get(f, 0), f))
    keep = ranked if len(ranked) <= len(PALETTE) else ranked[: len(PALETTE) - 1]
    out = {f: (PALETTE[i], f) for i, f in enumerate(keep)}
    out.update({f: (OTHER_COLOUR, OTHER) for f in ranked if f not in out})
    return out


def earnings(days: list[date], families: list[str], cells: dict[tuple[date, str], int], scale: int, currency: str) -> Chart:
    """Stacked bars: one per day, one segment per family, heights in currency units."""
    totals = {f: sum(v for (_, fam), v in cells.items() if fam == f) for f in families}
    colours = family_colours(families, totals)
    per_day = [sum(cells.get((d, f), 0) for f in families) for d in days]
    top = max(per_day, default=0) / 10**scale or 1.0
    chart = Chart(title=f"earnings per day by family, {currency}")
    slot = PLOT_WIDTH / max(len(days), 1)
    for i, d in enumerate(days):
        x = MARGIN_LEFT + i * slot + slot * 0.1
        stacked = 0.0
        for f in sorted(families, key=lambda f: (-totals[f], f)):  # 1. biggest family at the bottom
            units = cells.get((d, f), 0)
            if units <= 0:
                continue
            value = units / 10**scale
            y_top, y_bottom = _y(stacked + value, top), _y(stacked, top)
            chart.bars.append(Rect.at(x, y_top, slot * 0.8, max(y_bottom - y_top, 0.5), colours[f][0], f"{d} {f}"))
            stacked += value
        if i % LABEL_EVERY_DAYS == 0 or i == len(days) - 1:
            chart.x_labels.append((_px(x + slot * 0.4), d.strftime("%m-%d")))
    chart.y_ticks = [_tick(_y(top * k / Y_TICKS, top), f"{top * k / Y_TICKS:.4g}") for k in range(Y_TICKS + 1)]
    seen: dict[str, str] = {}
    for colour, name in colours.values():
        seen.setdefault(name, colour)
    chart.legend = [(colour, name) for name, colour in seen.items()]
    return chart


def shares(parts: list[dict[str, Any]]) -> Chart:
    """One bar per owner: its royalty share, with a +-1 SE error bar. The share's SE is the SE of
    phi scaled by the normaliser sum(max(phi, 0)) (first order), as `attribution explain` draws it."""
    positive_total = sum(max(p["shapley_value"], 0.0) for p in parts)
    chart = Chart(title="royalty shares, +-1 SE")
    slot = PLOT_WIDTH / max(len(parts), 1)
    for i, p in enumerate(parts):
        share = float(p["share"])
        error = float(p["std_error"]) / positive_total if positive_total > 0 else 0.0
        x = MARGIN_LEFT + i * slot + slot * 0.2
        y = _y(min(share, 1.0), 1.0)
        chart.bars.append(Rect.at(x, y, slot * 0.6, max(_y(0.0, 1.0) - y, 0.5), PALETTE[0], f"{p['owner_id']}: {share:.1%}"))
        chart.whiskers.append(Whisker.at(x + slot * 0.3, _y(min(share + error, 1.0), 1.0), _y(max(share - error, 0.0), 1.0)))
        chart.x_labels.append((_px(x + slot * 0.3), str(p["owner_id"])))
    chart.y_ticks = [_tick(_y(k / Y_TICKS, 1.0), f"{k / Y_TICKS:.0%}") for k in range(Y_TICKS + 1)]
    return chart
