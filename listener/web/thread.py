"""A conversation's page, `/-/thread?key=<urlencoded thread key>` (alerts link here): each post's
text, author, time, label, score and why, the brand's replies marked, intents, the triage state
and its history; a signed-in actor may change the state.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from datasette.utils.asgi import Response

from ..alerts.render import safe_url
from ..models import THREAD_STATUSES
from . import DASHBOARD_PATH, THREAD_PATH
from .links import LABELS, Links, database_name, thread_path

if TYPE_CHECKING:
    from ..store import Connection

log = logging.getLogger(__name__)

NOTE_MAX = 1000  # characters of a triage note kept
INTENT_WORDS = {
    "churn": "says they are leaving",
    "complaint": "complaint",
    "question": "question",
    "request": "request",
    "praise": "praise",
}
STATUS_WORDS = {
    "new": "New: nobody has taken it on yet",
    "acknowledged": "Acknowledged: someone is on it",
    "resolved": "Resolved (a new negative post opens it again)",
    "ignored": "Ignored: it never alerts",
}


def when_text(stamp: str | None) -> str:
    """'7 Dec 2026, 18:26 UTC' from a stored time; '' when there is none."""
    if not stamp:
        return ""
    try:
        t = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return stamp
    return f"{t.day} {t.strftime('%b %Y, %H:%M')} UTC"


def score_text(compound: float | None) -> str:
    """'−0.62', '+0.30': a score as the dashboard and alerts print it, with a real minus."""
    return "" if compound is None else f"{compound:+.2f}".replace("-", "−")


def why_text(explanation: Sequence[Mapping[str, Any]], brand: str | None = None) -> str:
    """The words behind a score, as alerts quote them: 'frustrating −1.9, "no answer" +1.3',
    with the scorer's placeholders for brand names read back as names."""
    from ..sentiment import describe_explanation

    try:
        text = describe_explanation(explanation, limit=5).replace("-", "−")
    except (KeyError, TypeError, ValueError):
        return ""
    return text.replace("<brand>", brand or "the brand").replace("<other>", "another brand")


def _assessments(post: Mapping[str, Any]) -> list[dict[str, Any]]:
    """How a post reads toward each brand it names (its mentions), or, for a reply that names
    none, the post's own score: label, score, why and intents."""
    out = []
    for m in post["mentions"]:
        if m.get("not_relevant"):
            continue
        out.append(
            {
                "brand": m["brand"],
                "product": m.get("product"),
                "label": m.get("label"),
                "score": score_text(m.get("compound")),
                "why": why_text(m.get("explanation") or [], m["brand"]),
                "intents": [INTENT_WORDS.get(i, str(i)) for i in m.get("intents") or []],
            }
        )
    if not out and post.get("label"):
        out.append(
            {
                "brand": None,
                "product": None,
                "label": post["label"],
                "score": score_text(post.get("compound")),
                "why": why_text(post.get("explanation") or []),
                "intents": [],
            }
        )
    return out


def _post_row(post: Mapping[str, Any]) -> dict[str, Any]:
    assessments = _assessments(post)
    text = (post.get("text") or "").strip()
    snippet = next((m.get("snippet") for m in post["mentions"] if m.get("snippet")), None)
    return {
        "id": post["id"],
        "author": post.get("author") or "someone",
        "when": when_text(post.get("published_at") or post.get("first_seen_at")),
        "title": None if post.get("is_reply") else post.get("title"),
        "text": text or snippet or post.get("title") or "",
        "href": safe_url(post.get("link")) or safe_url(post.get("url")),
        "source": post.get("source"),
        "by_brand": bool(post.get("by_brand")),
        "reply": bool(post.get("is_reply")),
        "assessments": assessments,
        # The post's edge colour: negative toward any brand it names wins.
        "tone": next((lab for lab in LABELS if any(a["label"] == lab for a in assessments)), None),
    }


def _load_thread(conn: Connection, key: str) -> dict[str, Any] | None:
    from ..store import Store

    store = Store(conn)
    thread = store.thread(key)
    if thread is None:
        return None
    return {
        "thread": thread,
        "posts": store.thread_posts(key),
        "history": store.thread_history(key),
    }


def _set_status(
    conn: Connection, key: str, status: str, note: str | None, actor: str
) -> str | None:
    from ..store import Store

    return Store(conn).set_thread_status(key, status, note, actor)


def actor_name(actor: Mapping[str, Any] | None) -> str | None:
    """Who changed a state in `serve`, as the history keeps it: 'serve:root'."""
    if not actor:
        return None
    return f"serve:{actor.get('id') or actor.get('username') or 'signed-in'}"


async def thread_page(datasette: Any, request: Any) -> Response:
    """A conversation, top to bottom: each post's text, author, time, label, score and why,
    the brand's replies marked, intents, the triage state and its history. A signed-in actor
    may change the state (POST, with Datasette's CSRF token); anyone else only reads."""
    name = database_name(datasette)
    await datasette.ensure_permissions(request.actor, [("view-database", name), "view-instance"])
    db = datasette.get_database(name)
    if request.method == "POST":
        return await _change_status(datasette, request, db)
    key = request.args.get("key") or ""
    loaded = await db.execute_fn(lambda conn: _load_thread(conn, key)) if key else None
    if loaded is None:
        page = await datasette.render_template(
            "listener_thread.html",
            {"database": name, "missing": key, "dashboard": datasette.urls.path(DASHBOARD_PATH)},
            request=request,
        )
        return Response.html(page, status=404)
    links = Links(datasette, name)
    t = loaded["thread"]
    posts = [_post_row(p) for p in loaded["posts"]]
    customers = [p for p in posts if not p["by_brand"]]
    context = {
        "database": name,
        "key": key,
        "thread": t,
        "title": t.get("title") or t.get("url") or key,
        "href": safe_url(t.get("url")),
        "posts": posts,
        "customers": len(customers),
        "negative": sum(
            1 for p in customers if any(a["label"] == "negative" for a in p["assessments"])
        ),
        "brand_replies": len(posts) - len(customers),
        "answered": when_text(t.get("answered_at")),
        "first_negative": when_text(t.get("first_negative_at")),
        "status": t.get("status") or "new",
        "status_words": STATUS_WORDS,
        "status_at": when_text(t.get("status_at")),
        "history": [{**h, "when": when_text(h["at"])} for h in loaded["history"]],
        "triage_actor": actor_name(request.actor),
        "statuses": THREAD_STATUSES,
        "note_max": NOTE_MAX,
        "thread_path": datasette.urls.path(THREAD_PATH),
        "dashboard": datasette.urls.path(DASHBOARD_PATH),
        "posts_link": links.items(thread_key=key, relevant=1, _sort="published_at"),
        "row_link": links.row("threads", key),
        "negative_threads_link": links.query("negative_threads"),
    }
    page = await datasette.render_template("listener_thread.html", context, request=request)
    return Response.html(page)


async def _change_status(datasette: Any, request: Any, db: Any) -> Response:
    actor = actor_name(request.actor)
    if actor is None:
        # Datasette is read-only for everyone who has not signed in (`serve --root`).
        return Response.text(
            "Forbidden: sign in to change a conversation's status "
            "(start `listener serve --root` and open the login link it prints).",
            status=403,
        )
    form = await request.post_vars()
    key = (form.get("key") or "").strip()
    status = form.get("status") or ""
    note = (form.get("note") or "").strip()[:NOTE_MAX] or None
    if status not in THREAD_STATUSES:
        return Response.text(
            f"Bad request: status must be one of {', '.join(THREAD_STATUSES)}", status=400
        )
    was = await db.execute_write_fn(lambda conn: _set_status(conn, key, status, note, actor))
    if was is None:
        return Response.text(f"No conversation {key!r}", status=404)
    log.info("thread %s: %s -> %s by %s", key, was, status, actor)
    datasette.add_message(request, f"Status: {status} (was {was}).", datasette.INFO)
    return Response.redirect(thread_path(datasette, key))
