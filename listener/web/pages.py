"""The `/-/dashboard` page: the dashboard's data and charts into `listener_dashboard.html`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from datasette.utils.asgi import Response
from markupsafe import Markup

from ..alerts.render import safe_url
from .charts import brand_colors, sentiment_chart, share_chart, volume_chart, weekly_share_chart
from .dashboard import UNSCORED, DashboardData, load_dashboard
from .links import LABELS, Links, bound, database_name

MAX_DAYS = 366


def _int_arg(request: Any, name: str, default: int, lo: int, hi: int) -> int:
    try:
        return max(lo, min(hi, int(request.args.get(name, default))))
    except (TypeError, ValueError):
        return default


def utc_now() -> datetime:
    return datetime.now(UTC)


def period_name(days: int) -> str:
    """'24 hours', '2 days', '7 days': how the page names its window."""
    return "24 hours" if days == 1 else f"{days} days"


async def dashboard(datasette: Any, request: Any) -> Response:
    name = database_name(datasette)
    await datasette.ensure_permissions(request.actor, [("view-database", name), "view-instance"])
    days = _int_arg(request, "days", 7, 1, MAX_DAYS)
    data = await load_dashboard(datasette.get_database(name), days, utc_now())
    links = Links(datasette, name)
    colors = brand_colors(data.brands)
    period = links.period(data.start, data.end)
    before = links.period(data.previous_start, data.start)
    total, negative = data.all_total(), data.total(label="negative")
    unscored = sum(data.unscored.values())
    context = {
        "database": name,
        "days": days,
        "period_name": period_name(days),
        "period_text": period_text(data),
        "day_choices": [1, 7, 30, 90],
        "data": data,
        "summary": summary_rows(data, links),
        "window_links": {
            "all": links.mentions(**period),
            "negative": links.mentions(label="negative", **period),
        },
        "total": total,
        "negative": negative,
        "total_change": change(total, data.previous_all_total(), links.mentions(**before)),
        "unscored": unscored,
        "unscored_link": links.mentions(label=UNSCORED, **period),
        "negative_change": change(
            negative,
            data.previous_total(label="negative"),
            links.mentions(label="negative", **before),
            good="down",
        ),
        "undated_link": links.mentions(
            published_at__isnull=1,
            first_seen_at__gte=bound(data.start),
            first_seen_at__lt=bound(data.end),
        ),
        "volume_charts": [
            (brand, colors[brand], Markup(volume_chart(data, brand, links)))
            for brand in data.brands
        ],
        "sentiment_chart": Markup(sentiment_chart(data, links, colors)),
        "share_chart": Markup(share_chart(data, links, colors)),
        "weekly_share_chart": Markup(weekly_share_chart(data, links, colors)),
        "threads": thread_rows(data, links),
        "worst_posts": worst_post_rows(data, links),
        "worst_posts_link": links.mentions(label="negative", _sort="compound", **period),
        "churn": voice_rows(data.churn, links),
        "churn_link": links.mentions(
            by_brand=0, intents__contains='"churn"', _sort_desc="published_at", **period
        ),
        "questions": voice_rows(data.questions, links),
        "questions_link": links.query("open_questions", days=days),
        "requests": request_rows(data, links),
        "requests_link": links.query("top_requests", days=days),
        "top_sources": top_rows(data, data.top_sources, links, ["source"]),
        "top_authors": top_rows(data, data.top_authors, links, ["author", "source"]),
        "negative_threads_link": links.query("negative_threads", days=days),
        "negative_sources_link": links.query("negative_sources", days=days),
        "negative_authors_link": links.query("negative_authors", days=days),
        "sources_link": links.query("source_health"),
        "alerts_link": links.query("alerts") if data.alerts is not None else None,
        "queries": [
            (links.query(q), query.get("title") or q)
            for q, query in (await datasette.get_canned_queries(name, request.actor)).items()
        ],
    }
    page = await datasette.render_template("listener_dashboard.html", context, request=request)
    return Response.html(page)


def period_text(data: DashboardData) -> str:
    if data.hourly:
        fmt = "%Y-%m-%d %H:%M"
        return (
            f"{data.start.strftime(fmt)} to {data.end.strftime(fmt)} UTC, hour by hour, "
            "by time posted"
        )
    return f"{data.start.date().isoformat()} to {data.today.isoformat()} (UTC, by date posted)"


def change(
    now: int | None, before: int | None, href: str | None = None, *, good: str = ""
) -> dict[str, Any] | None:
    """How a count moved against the previous period: text ('▲ 6 (+75%)'), the count before (and
    a link to its rows), and a tone for colour: 'better' or 'worse' when `good` says which way
    ('up' or 'down') is good, '' for plain volume."""
    if now is None or before is None:
        return None
    diff = now - before
    if diff == 0:
        text = "no change"
    else:
        text = f"{'▲' if diff > 0 else '▼'} {abs(diff):,}"
        if before:
            text += f" ({diff / before:+.0%})".replace("-", "−")
    tone = ""
    if diff and good:
        tone = "better" if (diff > 0) == (good == "up") else "worse"
    return {"text": text, "before": before, "href": href, "tone": tone}


def summary_rows(data: DashboardData, links: Links) -> list[dict[str, Any]]:
    period = links.period(data.start, data.end)
    before = links.period(data.previous_start, data.start)
    out = []
    for brand in data.brands:
        # Totals count every mention; shares and means only the scored ones (a post in a
        # language the scorer does not read is "not scored", never negative or neutral).
        total = data.all_total(brand)
        scored = data.total(brand)
        negative = data.total(brand, "negative")
        prev_total = data.previous_all_total(brand)
        prev_scored = data.previous_total(brand)
        prev_negative = data.previous_total(brand, "negative")
        unscored = data.unscored.get(brand, 0)
        row: dict[str, Any] = {
            "brand": brand,
            "total": (total, links.mentions(brand=brand, **period)),
            "total_change": change(total, prev_total, links.mentions(brand=brand, **before)),
            "negative_change": change(
                negative,
                prev_negative,
                links.mentions(brand=brand, label="negative", **before),
                good="down",
            ),
            "mean": data.mean(brand),
            "previous_mean": data.previous_mean(brand),
            "negative_pct": round(100 * negative / scored) if scored else None,
            "previous_negative_pct": (
                round(100 * prev_negative / prev_scored) if prev_scored else None
            ),
            "unscored": (
                unscored,
                links.mentions(brand=brand, label=UNSCORED, **period) if unscored else None,
            ),
        }
        for label in LABELS:
            row[label] = (
                data.total(brand, label),
                links.mentions(brand=brand, label=label, **period),
            )
        out.append(row)
    return out


def thread_rows(data: DashboardData, links: Links) -> list[dict[str, Any]]:
    out = []
    for t in data.threads:
        key = t["thread_key"]
        out.append(
            {
                **t,
                # Links from web data go through the one safe-URL rule: http(s) or no link.
                "href": safe_url(t.get("url")),
                "worst_href": safe_url(t.get("worst_url")),
                "posts_link": links.items(thread_key=key, relevant=1, _sort="published_at"),
                "negative_link": links.items(
                    thread_key=key, relevant=1, label="negative", _sort="compound"
                ),
                "thread_link": links.thread(key),
            }
        )
    return out


def worst_post_rows(data: DashboardData, links: Links) -> list[dict[str, Any]]:
    return [
        {
            **p,
            "href": safe_url(p.get("url")),
            "row_link": links.row("mentions", p["id"]),
            "thread_link": links.thread(p["thread_key"]) if p.get("thread_key") else None,
            "posted": (p.get("published_at") or "")[:16].replace("T", " "),
        }
        for p in data.worst_posts
    ]


def top_rows(
    data: DashboardData, top: list[dict[str, Any]], links: Links, keys: list[str]
) -> list[dict[str, Any]]:
    period = links.period(data.start, data.end)
    before = links.period(data.previous_start, data.start)
    out = []
    for t in top:
        filters = {k: t[k] for k in keys}
        out.append(
            {
                **t,
                "link": links.mentions(**filters, **period),
                "negative_link": links.mentions(**filters, label="negative", **period),
                "change": change(t["mentions"], t["previous"], links.mentions(**filters, **before)),
                "negative_pct": round(100 * t["negative"] / t["mentions"]),
            }
        )
    return out


def voice_rows(mentions: list[dict[str, Any]], links: Links) -> list[dict[str, Any]]:
    """Mentions listed for what their author means (churn risks, open questions): the post,
    a link to it (through the safe-URL rule), to its row and to its conversation's page."""
    return [
        {
            **m,
            "href": safe_url(m.get("url")),
            "row_link": links.row("mentions", m["id"]),
            "thread_link": links.thread(m["thread_key"]) if m.get("thread_key") else None,
            "posted": (m.get("published_at") or "")[:16].replace("T", " "),
        }
        for m in mentions
    ]


def request_rows(data: DashboardData, links: Links) -> list[dict[str, Any]]:
    """Requests per brand, most first: the count (a link to exactly those mentions) and the
    newest few."""
    period = links.period(data.start, data.end)
    return [
        {
            **group,
            "link": links.mentions(
                brand=group["brand"],
                by_brand=0,
                intents__contains='"request"',
                _sort_desc="published_at",
                **period,
            ),
            "posts": voice_rows(group["posts"], links),
        }
        for group in data.requests
    ]
