"""The dashboard's charts: inline SVG drawn on the server. No script, nothing from a CDN: the page
works offline and in any browser, and tests read the bars straight from the HTML. Every bar and
point is an `<a>` to the rows it counts.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .dashboard import DashboardData
from .links import LABELS, Links, attr

LABEL_COLORS = {"negative": "#d1495b", "neutral": "#a7b1bc", "positive": "#2e9e5b"}
BRAND_COLORS = (
    "#3465a4",
    "#e08a1e",
    "#75507b",
    "#1b998b",
    "#8f5902",
    "#c2185b",
    "#4e9a06",
    "#5c6bc0",
)


def brand_colors(brands: Iterable[str]) -> dict[str, str]:
    """A stable colour per brand: by name, so a brand keeps its colour as volumes change."""
    return {b: BRAND_COLORS[i % len(BRAND_COLORS)] for i, b in enumerate(sorted(brands))}


@dataclass(frozen=True)
class Frame:
    """A chart's canvas: the viewBox size and the plot area inside its margins."""

    width: int = 600
    height: int = 190
    left: int = 40
    right: int = 12
    top: int = 12
    bottom: int = 30

    @property
    def plot_w(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> float:
        return self.height - self.top - self.bottom


def nice_max(value: float) -> int:
    """A round axis maximum at or above `value` (1, 2, 5, 10, 20, 50, ...)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return int(step * power)
    return int(10 * power)


def _svg_open(frame: Frame, label: str, css_class: str) -> str:
    return (
        f'<svg class="chart {css_class}" viewBox="0 0 {frame.width} {frame.height}" '
        f'width="100%" role="img" aria-label="{attr(label)}" '
        'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMinYMin meet">'
        f"<title>{html.escape(label)}</title>"
    )


def _link(href: str, inner: str, tip: str) -> str:
    return f'<a href="{attr(href)}"><title>{html.escape(tip)}</title>{inner}</a>'


def _bucket_label(data: DashboardData, b: datetime) -> str:
    """An x-axis label: the hour ('14:00', the date at midnight) or the day."""
    if data.hourly:
        return b.strftime("%b %d") if b.hour == 0 else b.strftime("%H:%M")
    return b.strftime("%b %d") if len(data.buckets) <= 14 else b.strftime("%m-%d")


def _bucket_tip(data: DashboardData, b: datetime) -> str:
    """A bucket in a tooltip: '2026-12-07', or '2026-12-07 14:00 UTC' for an hour."""
    return b.strftime("%Y-%m-%d %H:00 UTC") if data.hourly else b.date().isoformat()


def _x_axis(frame: Frame, labels: Sequence[str], centres: Sequence[float]) -> list[str]:
    out = [
        f'<line class="axis" x1="{frame.left}" x2="{frame.width - frame.right}" '
        f'y1="{frame.top + frame.plot_h}" y2="{frame.top + frame.plot_h}"/>'
    ]
    # At most 12 labels, counted back from the last (today, this hour) so that it is always
    # labelled and never crowds its neighbour.
    every = max(1, math.ceil(len(labels) / 12))
    for i, (text, x) in enumerate(zip(labels, centres, strict=True)):
        if (len(labels) - 1 - i) % every:
            continue
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{frame.height - 10}" text-anchor="middle">'
            f"{html.escape(text)}</text>"
        )
    return out


def _y_axis(
    frame: Frame, top_value: float, fmt: Callable[[float], str], ticks: Sequence[float]
) -> list[str]:
    out = []
    lo = min(ticks)
    span = (top_value - lo) or 1
    for t in ticks:
        y = frame.top + frame.plot_h * (1 - (t - lo) / span)
        out.append(
            f'<line class="grid" x1="{frame.left}" x2="{frame.width - frame.right}" '
            f'y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{frame.left - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt(t)}</text>'
        )
    return out


def volume_chart(data: DashboardData, brand: str, links: Links, frame: Frame = Frame()) -> str:
    """Mentions of `brand` per day (per hour in short windows), stacked by sentiment; each
    segment links to its mentions.

    All brands share one scale (the busiest bucket of any brand), so the charts compare at a
    glance.
    """
    busiest = max((data.total(b, bucket=d) for b in data.brands for d in data.buckets), default=0)
    top = nice_max(busiest)
    n = len(data.buckets)
    slot = frame.plot_w / n
    bar = max(1.0, slot * 0.7)
    per = "hour" if data.hourly else "day"
    parts = [_svg_open(frame, f"{brand}: mentions per {per} by sentiment", "volume")]
    parts += _y_axis(frame, top, lambda v: f"{v:g}", [0, top / 2, top] if top > 1 else [0, 1])
    centres = []
    for i, d in enumerate(data.buckets):
        x = frame.left + slot * i + (slot - bar) / 2
        centres.append(x + bar / 2)
        y = frame.top + frame.plot_h
        for label in LABELS:
            count = data.counts.get((brand, d, label), 0)
            if not count:
                continue
            h = frame.plot_h * count / top
            y -= h
            rect = (
                f'<rect class="bar {label}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{LABEL_COLORS[label]}"/>'
            )
            href = links.mentions(brand=brand, label=label, **links.period(d, d + data.step))
            parts.append(_link(href, rect, f"{brand}, {_bucket_tip(data, d)}: {count} {label}"))
    parts += _x_axis(frame, [_bucket_label(data, d) for d in data.buckets], centres)
    if not data.total(brand):
        parts.append(
            f'<text class="empty" x="{frame.left + frame.plot_w / 2}" y="{frame.top + frame.plot_h / 2}" '
            'text-anchor="middle">no mentions in this period</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def sentiment_chart(
    data: DashboardData, links: Links, colors: Mapping[str, str], frame: Frame = Frame(height=220)
) -> str:
    """Mean VADER compound per brand per day or hour (-1..1), one line per brand; each point
    links to that bucket's mentions of the brand, most negative first."""
    n = len(data.buckets)
    slot = frame.plot_w / n
    per = "hour" if data.hourly else "day"
    parts = [_svg_open(frame, f"Mean sentiment per {per}, by brand", "sentiment")]
    parts += _y_axis(frame, 1, lambda v: f"{v:+.1f}" if v else "0", [-1, -0.5, 0, 0.5, 1])

    def y_of(v: float) -> float:
        return frame.top + frame.plot_h * (1 - (v + 1) / 2)

    parts.append(
        f'<line class="zero" x1="{frame.left}" x2="{frame.width - frame.right}" '
        f'y1="{y_of(0):.1f}" y2="{y_of(0):.1f}"/>'
    )
    centres = [frame.left + slot * (i + 0.5) for i in range(n)]
    for brand in data.brands:
        color = colors[brand]
        points = [(centres[i], data.mean(brand, d), d) for i, d in enumerate(data.buckets)]
        # A day without mentions breaks the line rather than pretending to be neutral.
        runs: list[list[tuple[float, float]]] = [[]]
        for x, v, _d in points:
            if v is None:
                runs.append([])
            else:
                runs[-1].append((x, y_of(v)))
        for run in runs:
            if len(run) > 1:
                path = " ".join(
                    f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(run)
                )
                parts.append(f'<path class="line" d="{path}" stroke="{color}" fill="none"/>')
        for x, v, d in points:
            if v is None:
                continue
            dot = f'<circle class="point" cx="{x:.1f}" cy="{y_of(v):.1f}" r="4" fill="{color}"/>'
            href = links.mentions(brand=brand, _sort="compound", **links.period(d, d + data.step))
            tip = (
                f"{brand}, {_bucket_tip(data, d)}: mean {v:+.2f} over "
                f"{data.total(brand, bucket=d)} mentions"
            )
            parts.append(_link(href, dot, tip))
    parts += _x_axis(frame, [_bucket_label(data, d) for d in data.buckets], centres)
    parts.append("</svg>")
    return "".join(parts)


def share_chart(
    data: DashboardData, links: Links, colors: Mapping[str, str], frame: Frame | None = None
) -> str:
    """Each brand's share of all mentions in the period, as horizontal bars."""
    rows = max(1, len(data.brands))
    frame = frame or Frame(height=24 * rows + 16, left=110, right=90, top=8, bottom=8)
    # Every mention is voice, scored or not (a post in another language too): the counts are
    # the rows behind each bar's link.
    total = data.all_total()
    parts = [_svg_open(frame, "Share of voice in this period", "share")]
    period = links.period(data.start, data.end)
    for i, brand in enumerate(data.brands):
        count = data.all_total(brand)
        share = count / total if total else 0.0
        y = frame.top + 24 * i
        w = max(frame.plot_w * share, 1.0 if count else 0.0)
        parts.append(
            f'<text class="label" x="{frame.left - 8}" y="{y + 15}" text-anchor="end">'
            f"{html.escape(brand)}</text>"
        )
        rect = (
            f'<rect class="bar" x="{frame.left}" y="{y + 2}" width="{w:.1f}" height="18" '
            f'fill="{colors[brand]}"/>'
        )
        tip = f"{brand}: {count} of {total} mentions ({share:.0%})"
        parts.append(_link(links.mentions(brand=brand, **period), rect, tip))
        parts.append(
            f'<text class="value" x="{frame.left + w + 6:.1f}" y="{y + 15}">'
            f"{share:.0%} ({count})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def weekly_share_chart(
    data: DashboardData, links: Links, colors: Mapping[str, str], frame: Frame = Frame(height=200)
) -> str:
    """Share of voice week by week: one 100% column per week, a segment per brand."""
    n = len(data.weeks)
    slot = frame.plot_w / n
    bar = slot * 0.7
    parts = [_svg_open(frame, "Share of voice by week", "weekly-share")]
    parts += _y_axis(frame, 1, lambda v: f"{v:.0%}", [0, 0.5, 1])
    centres = []
    for i, week in enumerate(data.weeks):
        x = frame.left + slot * i + (slot - bar) / 2
        centres.append(x + bar / 2)
        total = sum(data.weekly.get((b, week), 0) for b in data.brands)
        y = frame.top + frame.plot_h
        for brand in reversed(data.brands):
            count = data.weekly.get((brand, week), 0)
            if not count:
                continue
            h = frame.plot_h * count / total
            y -= h
            rect = (
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colors[brand]}"/>'
            )
            href = links.mentions(brand=brand, **links.period(week, week + timedelta(days=7)))
            tip = f"{brand}, week of {week.isoformat()}: {count} of {total} mentions ({count / total:.0%})"
            parts.append(_link(href, rect, tip))
    parts += _x_axis(frame, [w.strftime("%b %d") for w in data.weeks], centres)
    parts.append("</svg>")
    return "".join(parts)
