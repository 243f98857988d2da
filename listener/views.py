"""SQL views and canned queries over the mention database, declared as data next to the schema.

`VIEWS` are plain SQLite views (any SQL client sees them; Datasette shows them as tables with
facets). `CANNED_QUERIES` are the questions a marketer asks, with parameters, in the shape of
Datasette's `queries` metadata. `store.views.ensure_views(db)` runs after the migrations on every
connect and (re)creates a view only when its SQL changed, so the views always match the schema
they read.

Columns come in reading order: the words first (snippet, post), then how they feel, whose,
where and when; ids and keys last or as the narrow link column first.

Conventions shared by everything here (and by the dashboard, whose links must count the same rows):
- A mention's date is `published_at` (UTC ISO text, `2026-11-20T09:00:00Z`); windows compare it
  with `strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ...)`, never with `datetime()` (space, not `T`).
- Mentions a person marked not relevant (`not_relevant = 1`) are left out of every count.
- A brand's own posts (`by_brand = 1`: written by one of its `accounts:`) are its replies, not
  customer voice: never among the negative or worst posts.
- Parameters a person left blank arrive as '' from Datasette: `coalesce(nullif(:p, ''), default)`.
- A thread "turned negative" when it has negative posts and either a negative mean over two or
  more posts or at least three negative posts (the default alert rule's count): one angry reply
  in a happy thread does not make the list, a pile-on inside a long friendly thread does, and a
  lone negative post is a negative mention (see `negative_mentions`), not a conversation.
"""

from __future__ import annotations

from typing import Any

# A post's score in its conversation, the one every thread number, alert and page shows: its most
# negative score toward a brand it names (its mentions, corrections included), else, for a reply
# that names none, its own score. `{i}` is the items alias.
# (`+pm.label`: looked up by item, never through the label index, which the planner would
# otherwise scan for every post: all negative mentions, per post.)
_POST_MENTIONS = (
    "FROM mentions pm WHERE pm.item_id = {i}.id AND pm.not_relevant = 0 AND +pm.label != 'unscored'"
)
POST_SCORE = f"coalesce((SELECT min(pm.compound) {_POST_MENTIONS}), {{i}}.compound)"
POST_WHY = (
    f"coalesce((SELECT pm.explanation {_POST_MENTIONS} ORDER BY pm.compound LIMIT 1), "
    "{i}.explanation)"
)
# Negative in its conversation: negative toward a brand it names, else negative itself.
POST_NEGATIVE = (
    f"(CASE WHEN EXISTS (SELECT 1 {_POST_MENTIONS}) "
    f"THEN EXISTS (SELECT 1 {_POST_MENTIONS} AND +pm.label = 'negative') "
    "ELSE {i}.label = 'negative' END)"
)


def post_score(alias: str = "i") -> str:
    return POST_SCORE.format(i=alias)


def post_why(alias: str = "i") -> str:
    return POST_WHY.format(i=alias)


def post_negative(alias: str = "i") -> str:
    return POST_NEGATIVE.format(i=alias)


# Timestamps as stored, N units ago.
_AGO = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-' || {n} || ' {unit}')"
# The Monday that starts the ISO week of a date (`weekday 0` is the coming Sunday, or today).
_WEEK = "date({col}, 'weekday 0', '-6 days')"


def _param(name: str, default: int) -> str:
    """A positive number from a form field, `default` when blank or not a number."""
    return f"coalesce(nullif(abs(cast(nullif(:{name}, '') AS REAL)), 0), {default})"


NEGATIVE_THREAD_RULE = (
    "t.negative_posts > 0"
    " AND ((t.posts >= 2 AND t.mean_compound <= -0.05) OR t.negative_posts >= 3)"
)

VIEWS: dict[str, str] = {
    "daily_sentiment": """
SELECT substr(published_at, 1, 10) AS day,
       brand,
       count(*) AS mentions,
       sum(label = 'positive') AS positive,
       sum(label = 'neutral') AS neutral,
       sum(label = 'negative') AS negative,
       sum(label = 'unscored') AS unscored,
       round(avg(CASE WHEN label != 'unscored' THEN compound END), 3) AS mean_compound
FROM mentions
WHERE not_relevant = 0 AND published_at IS NOT NULL
GROUP BY day, brand
""",
    "weekly_share_of_voice": f"""
WITH weekly AS (
  SELECT {_WEEK.format(col="published_at")} AS week,
         brand,
         count(*) AS mentions,
         sum(label = 'positive') AS positive,
         sum(label = 'negative') AS negative
  FROM mentions
  WHERE not_relevant = 0 AND published_at IS NOT NULL
  GROUP BY week, brand
)
SELECT week,
       brand,
       mentions,
       round(100.0 * mentions / sum(mentions) OVER (PARTITION BY week), 1) AS share_pct,
       positive,
       negative
FROM weekly
""",
    "negative_threads": f"""
SELECT t.key AS thread_key,
       t.title,
       t.url,
       t.source,
       t.brands,
       t.posts,
       t.negative_posts,
       t.mean_compound,
       t.worst_compound,
       w.id AS worst_item_id,
       w.author AS worst_author,
       substr(coalesce(nullif(w.text, ''), w.title), 1, 280) AS worst_post,
       w.url AS worst_url,
       (SELECT max(coalesce(i.published_at, i.first_seen_at)) FROM items i
         WHERE i.thread_key = t.key AND {post_negative()} AND i.by_brand = 0)
         AS last_negative_at,
       t.first_seen_at,
       t.last_seen_at,
       t.status
FROM threads t
LEFT JOIN items w ON w.id = (
  SELECT i.id FROM items i
  WHERE i.thread_key = t.key AND i.relevant = 1 AND i.compound IS NOT NULL AND i.by_brand = 0
  ORDER BY {post_score()}, i.id LIMIT 1
)
WHERE t.brands IS NOT NULL AND {NEGATIVE_THREAD_RULE}
""",
    "source_health": f"""
SELECT s.name AS source,
       s.kind,
       CASE WHEN s.last_attempt_at IS NULL THEN 'not polled yet'
            WHEN s.consecutive_failures > 0 THEN 'failing'
            ELSE 'ok' END AS health,
       s.consecutive_failures AS failures_in_a_row,
       s.last_error,
       s.last_status,
       s.last_success_at,
       s.last_attempt_at,
       s.next_poll_at,
       (SELECT count(*) FROM fetches f
         WHERE f.source = s.name AND f.started_at >= {_AGO.format(n=24, unit="hours")}) AS fetches_24h,
       (SELECT count(*) FROM fetches f
         WHERE f.source = s.name AND f.started_at >= {_AGO.format(n=24, unit="hours")}
           AND (f.error IS NOT NULL OR f.status = 0 OR f.status >= 400)) AS failed_fetches_24h,
       s.items_seen,
       s.mentions_found,
       s.url
FROM sources s
""",
    # One row per alert and channel it goes to (an alert with no channel configured shows once,
    # as "no channel"). Only where the alert tables exist (see VIEW_REQUIRES).
    "alert_outbox": """
SELECT a.id AS alert_id,
       a.created_at,
       coalesce(o.status, 'no channel') AS status,
       o.channel,
       a.rule,
       a.level,
       a.brand,
       a.title,
       a.why,
       a.url,
       o.attempts,
       o.next_attempt_at,
       o.sent_at,
       o.last_error,
       a.thread_key,
       a.subject
FROM alerts a
LEFT JOIN outbox o ON o.alert_id = a.id
""",
}

# Tables a view reads that not every database has yet: the view exists only where they do.
VIEW_REQUIRES: dict[str, tuple[str, ...]] = {"alert_outbox": ("alerts", "outbox")}

_HOURS = _param("hours", 24)
_DAYS = _param("days", 7)

CANNED_QUERIES: dict[str, dict[str, Any]] = {
    "negative_mentions": {
        "title": "Negative mentions in the last 24 hours",
        "description": (
            "Every negative mention posted in the last 24 hours (or as many hours as you type), "
            "newest first. Leave brand blank for all brands."
        ),
        "params": ["hours", "brand"],
        "sql": f"""
SELECT m.id AS mention_id,
       m.snippet,
       m.compound,
       m.brand,
       m.product,
       m.source,
       m.published_at,
       m.url,
       m.author,
       m.title,
       m.intents,
       m.thread_key
FROM mentions m
WHERE m.label = 'negative' AND m.not_relevant = 0 AND m.by_brand = 0
  AND m.published_at >= {_AGO.format(n=_HOURS, unit="hours")}
  AND (:brand = '' OR m.brand = :brand)
ORDER BY m.published_at DESC
""",
    },
    "negative_threads": {
        "title": "Conversations that turned negative",
        "description": (
            "Conversations with negative posts in the last N days (7 if left blank) whose mood "
            "is negative overall (over two posts or more) or that have three or more negative "
            "posts, with their three worst posts and the team's triage status. Click a thread key "
            "to read the whole conversation and change its status."
        ),
        "params": ["days"],
        "sql": f"""
WITH recent AS (
  SELECT t.* FROM negative_threads t
  WHERE t.last_negative_at >= {_AGO.format(n=_DAYS, unit="days")}
),
scored AS (
  SELECT i.*, {post_score()} AS post_compound
  FROM items i JOIN recent r ON r.thread_key = i.thread_key
  WHERE i.relevant = 1 AND i.compound IS NOT NULL AND {post_negative()} AND i.by_brand = 0
),
worst AS (
  SELECT s.*, row_number() OVER (PARTITION BY s.thread_key ORDER BY s.post_compound, s.id) AS rank
  FROM scored s
)
SELECT r.title AS thread,
       w.rank,
       w.post_compound AS compound,
       w.author,
       substr(coalesce(nullif(w.text, ''), w.title), 1, 280) AS post,
       w.published_at AS posted_at,
       r.negative_posts,
       r.posts,
       r.mean_compound,
       r.brands,
       r.status,
       w.id AS item_id,
       r.thread_key
FROM recent r JOIN worst w ON w.thread_key = r.thread_key AND w.rank <= 3
ORDER BY r.negative_posts DESC, r.worst_compound, r.thread_key, w.rank
""",
    },
    "sentiment_by_day": {
        "title": "Sentiment by brand by day",
        "description": (
            "Mentions per brand per day over the last N days (30 if left blank), split by "
            "sentiment (unscored: in a language the scorer does not read), with the mean VADER "
            "compound of the scored ones (-1 very negative .. 1 very positive)."
        ),
        "params": ["days", "brand"],
        "sql": f"""
SELECT day, brand, mentions, positive, neutral, negative, unscored, mean_compound
FROM daily_sentiment
WHERE day >= date('now', '-' || ({_param("days", 30)} - 1) || ' days')
  AND (:brand = '' OR brand = :brand)
ORDER BY day DESC, mentions DESC
""",
    },
    "share_of_voice": {
        "title": "Share of voice by week",
        "description": (
            "Each brand's share of all brand mentions, week by week (weeks start on Monday), over "
            "the last N weeks (8 if left blank)."
        ),
        "params": ["weeks"],
        "sql": f"""
SELECT week, brand, mentions, share_pct, positive, negative
FROM weekly_share_of_voice
WHERE week >= date('now', 'weekday 0', '-6 days', '-' || (7 * ({_param("weeks", 8)} - 1)) || ' days')
ORDER BY week DESC, mentions DESC
""",
    },
    "negative_sources": {
        "title": "Where negative mentions come from",
        "description": (
            "Sources ranked by negative mentions posted in the last N days (7 if left blank), "
            "with the share of each source's mentions that are negative."
        ),
        "params": ["days"],
        "sql": f"""
SELECT source,
       sum(label = 'negative') AS negative,
       count(*) AS mentions,
       round(100.0 * sum(label = 'negative') / count(*), 1) AS negative_pct,
       round(min(compound), 3) AS worst_compound,
       group_concat(DISTINCT brand) AS brands
FROM mentions
WHERE not_relevant = 0 AND by_brand = 0
  AND published_at >= {_AGO.format(n=_DAYS, unit="days")}
GROUP BY source
HAVING negative > 0
ORDER BY negative DESC, negative_pct DESC
""",
    },
    "negative_authors": {
        "title": "Who writes the negative mentions",
        "description": (
            "Authors of negative mentions posted in the last N days (7 if left blank), most "
            "negative mentions first, with their worst one."
        ),
        "params": ["days"],
        "sql": f"""
WITH neg AS (
  SELECT * FROM mentions
  WHERE label = 'negative' AND not_relevant = 0 AND by_brand = 0 AND author IS NOT NULL
    AND published_at >= {_AGO.format(n=_DAYS, unit="days")}
)
SELECT author,
       source,
       count(*) AS negative,
       group_concat(DISTINCT brand) AS brands,
       max(published_at) AS last_at,
       (SELECT n2.snippet FROM neg n2 WHERE n2.author = neg.author AND n2.source = neg.source
         ORDER BY n2.compound LIMIT 1) AS worst_snippet
FROM neg
GROUP BY author, source
ORDER BY negative DESC, last_at DESC
""",
    },
    "new_since_yesterday": {
        "title": "New since yesterday",
        "description": (
            "Mentions found in the last N hours (24 if left blank), whenever they were posted: "
            "what a morning check-in needs. Negative first."
        ),
        "params": ["hours"],
        "sql": f"""
SELECT id AS mention_id,
       snippet,
       label,
       compound,
       brand,
       product,
       intents,
       source,
       published_at,
       url,
       author,
       title,
       first_seen_at
FROM mentions
WHERE not_relevant = 0 AND first_seen_at >= {_AGO.format(n=_HOURS, unit="hours")}
ORDER BY CASE label WHEN 'negative' THEN 0 WHEN 'neutral' THEN 1 ELSE 2 END, compound,
         first_seen_at DESC
""",
    },
    "churn_risks": {
        "title": "Churn risks",
        "description": (
            "Customers who say they are leaving (cancelling, switching away, not renewing, asking "
            "for alternatives) in the last N days (7 if left blank), newest first, with the words "
            "that showed it in the explanation. Leave brand blank for all brands."
        ),
        "params": ["days", "brand"],
        "sql": f"""
SELECT m.id AS mention_id,
       m.published_at,
       m.brand,
       m.source,
       m.author,
       m.title,
       m.snippet,
       m.intents,
       m.compound,
       m.url,
       m.thread_key
FROM mentions m
WHERE m.not_relevant = 0 AND m.by_brand = 0 AND m.intents LIKE '%"churn"%'
  AND m.published_at >= {_AGO.format(n=_DAYS, unit="days")}
  AND (:brand = '' OR m.brand = :brand)
ORDER BY m.published_at DESC
""",
    },
    "top_requests": {
        "title": "Top requests per brand",
        "description": (
            "Feature and change requests of the last N days (30 if left blank), by brand, the "
            "most recent first."
        ),
        "params": ["days"],
        "sql": f"""
SELECT m.brand,
       count(*) OVER (PARTITION BY m.brand) AS requests,
       m.published_at,
       m.snippet,
       m.url
FROM mentions m
WHERE m.not_relevant = 0 AND m.by_brand = 0 AND m.intents LIKE '%"request"%'
  AND m.published_at >= {_AGO.format(n=_param("days", 30), unit="days")}
ORDER BY requests DESC, m.brand, m.published_at DESC
""",
    },
    "open_questions": {
        "title": "Open questions nobody answered",
        "description": (
            "Customers' questions of the last N days (7 if left blank) in conversations where "
            "none of the brand's accounts has replied and that nobody resolved or ignored, "
            "newest first. Leave brand blank for all brands."
        ),
        "params": ["days", "brand"],
        "sql": f"""
SELECT m.id AS mention_id,
       m.snippet,
       m.brand,
       m.product,
       m.author,
       m.source,
       m.published_at,
       m.url,
       t.title AS thread,
       coalesce(t.status, 'new') AS status,
       m.thread_key
FROM mentions m
LEFT JOIN threads t ON t.key = m.thread_key
WHERE m.not_relevant = 0 AND m.by_brand = 0 AND m.intents LIKE '%"question"%'
  AND t.answered_at IS NULL AND coalesce(t.status, 'new') NOT IN ('resolved', 'ignored')
  AND m.published_at >= {_AGO.format(n=_DAYS, unit="days")}
  AND (:brand = '' OR m.brand = :brand)
ORDER BY m.published_at DESC, m.id DESC
""",
    },
    "source_health": {
        "title": "Source health",
        "description": (
            "Every source: failing ones first, with the last error, failures in a row, when it "
            "last worked and fetches in the last 24 hours."
        ),
        "sql": """
SELECT * FROM source_health
ORDER BY CASE health WHEN 'failing' THEN 0 WHEN 'not polled yet' THEN 1 ELSE 2 END,
         failures_in_a_row DESC, source
""",
    },
    "alerts": {
        "title": "Alerts sent and pending",
        "description": (
            "Every alert that fired and, per channel, whether it was sent, is waiting (retried with "
            "backoff) or failed. Pick a status (pending, sent, failed, no channel) or leave blank "
            "for all."
        ),
        "params": ["status"],
        "requires": ("alerts", "outbox"),
        "sql": """
SELECT * FROM alert_outbox
WHERE (:status = '' OR status = :status)
ORDER BY created_at DESC, alert_id DESC, channel
""",
    },
}


def available_queries(tables: set[str]) -> dict[str, dict[str, Any]]:
    """The canned queries whose tables exist, in Datasette's shape (our own keys removed)."""
    out = {}
    for name, query in CANNED_QUERIES.items():
        if not set(query.get("requires", ())) <= tables:
            continue
        shaped = {k: v.strip() if k == "sql" else v for k, v in query.items() if k != "requires"}
        # People who want the SQL click "show"; everyone else sees the question and the answer.
        shaped.setdefault("hide_sql", True)
        out[name] = shaped
    return out
