"""Turn an alert (or a digest of alerts) into Slack blocks, an email, plain text or HTML. Pure.

Titles, snippets, authors and URLs come from the web and are hostile until proven otherwise:

- Slack: `&`, `<`, `>` are escaped as Slack asks, so `<!channel>`, `<@U123>` and forged
  `<http://evil|click>` links arrive as inert text; formatting characters that could open or close
  bold / italic / strike / code are swapped for look-alikes (Slack has no escape for them); links
  are only ever built here, from http(s) URLs, with `|` and `>` percent-encoded.
- Email: everything that reaches a header loses CR, LF and other control characters, so a title
  cannot add a `Bcc:`; the HTML part escapes everything.
- Everywhere: control and bidirectional-override characters are dropped, so a title cannot hide or
  reorder what the reader sees.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, parseaddr
from typing import Any
from urllib.parse import urlsplit

from listener.alerts.message import AlertMessage, Digest, Evidence
from listener.units import parse_iso

# Slack Block Kit limits (https://api.slack.com/reference/block-kit/blocks).
SLACK_MAX_BLOCKS = 50
SLACK_HEADER_MAX = 150
SLACK_SECTION_MAX = 3000
SLACK_CONTEXT_MAX = 2000
# Slack accepts a much longer top-level `text`, but it is the notification preview and the
# fallback for clients without blocks: a few lines are enough.
SLACK_TEXT_MAX = 3000

MAX_EVIDENCE = 5
SUBJECT_MAX = 150
TITLE_MAX = 250
WHY_MAX = 600
SNIPPET_MAX = 300
AUTHOR_MAX = 60
URL_MAX = 1000  # longer links are shown as text only: they are tracking junk more often than not

RULE_LABELS = {
    "negative_thread": "negative conversation",
    "very_negative_mention": "very negative mention",
    "churn_risk": "a customer says they are leaving",
    "unanswered_negative": "a complaint is still unanswered",
    "spike": "spike in negative mentions",
    "source_health": "source failing",
    "test": "test alert",
}
RULE_ICONS = {
    "negative_thread": "🔻",
    "very_negative_mention": "🔻",
    "churn_risk": "🚪",
    "unanswered_negative": "⏰",
    "spike": "📈",
    "source_health": "🩺",
    "test": "🧪",
}

# C0/C1 controls (newlines are handled separately), zero-width and bidi controls, BOM.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
_SPACES = re.compile(r"\s+")
# A formatting character can only open or close Slack formatting next to a non-alphanumeric
# character (or the ends), so `snake_case` and `a*b` are left alone.
_SLACK_FORMAT = re.compile(r"(?<![^\W_])[*_~]|[*_~](?![^\W_])|`")
_SLACK_LOOKALIKE = {"*": "\u2217", "_": "\u02cd", "~": "\u223c", "`": "\u02cb"}
# "@channel" as plain text only pings with link_names, which incoming webhooks do not set; a
# word joiner keeps it that way should a workspace or a future API change turn parsing on.
_SLACK_BROADCAST = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
_SLACK_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


# ---------------------------------------------------------------------------------------- text


def clean_text(text: str | None, *, oneline: bool = True) -> str:
    """Drop control, invisible and bidi characters; `oneline` folds all whitespace to one space."""
    if not text:
        return ""
    text = unicodedata.normalize("NFC", str(text))
    if oneline:
        return _SPACES.sub(" ", _INVISIBLE.sub("", text)).strip()
    text = _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def truncate(text: str, limit: int) -> str:
    """Cap `text` at `limit` characters, marking a cut with "…"."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return "…"[:limit]
    return text[: limit - 1].rstrip() + "…"


def _fit(text: str, limit: int | None, encode: Callable[[str], str]) -> str:
    """`encode(text)` capped at `limit` *encoded* characters, cutting the raw text so that an
    entity such as `&amp;` is never split."""
    out = encode(text)
    if limit is None or len(out) <= limit:
        return out
    if limit < 1:
        return ""
    # Binary search for the longest raw prefix whose encoding, plus "…", fits.
    lo, hi = 0, min(len(text), limit - 1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(encode(text[:mid].rstrip())) + 1 <= limit:
            lo = mid
        else:
            hi = mid - 1
    return encode(text[:lo].rstrip()) + "…"


def safe_url(url: str | None) -> str | None:
    """`url` if it is an absolute http(s) URL fit to be a link, else None."""
    if not url:
        return None
    url = url.strip()
    if len(url) > URL_MAX or any(c.isspace() or unicodedata.category(c) == "Cc" for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return url


def rule_label(rule: str) -> str:
    return RULE_LABELS.get(rule, rule.replace("_", " "))


def _headline(message: AlertMessage) -> str:
    """ "Acme: a conversation turned negative (serious)": our brand, what happened, how bad."""
    label = rule_label(message.rule)
    if message.rule == "negative_thread":
        # Worse than what the reader was told before: only an update says that (a first alert
        # may start above level 1 when many posts arrive at once).
        worse = clean_text(message.update) or (message.level > 1 and not message.severity)
        label = "a conversation got worse" if worse else "a conversation turned negative"
    elif message.rule == "very_negative_mention" and message.severity:
        label = "a very negative conversation"
    if clean_text(message.severity):
        label += f" ({clean_text(message.severity)})"
    elif message.level > 1:
        label += " (worse again)"
    brand = clean_text(message.brand)
    return f"{brand}: {label}" if brand else label[:1].upper() + label[1:]


def _facts(message: AlertMessage) -> list[tuple[str, str]]:
    """What a person acts on, labelled: what changed, who is talking, answered, next step."""
    return [
        (label, clean_text(value))
        for label, value in (
            ("What changed", message.update),
            ("Who", message.people),
            ("Answered", message.answered),
            ("Next", message.next_step),
        )
        if clean_text(value)
    ]


PAGE_LINK_LABEL = "Open the conversation in listener"


def _score(compound: float) -> str:
    return f"{compound:+.2f}"


def _format_count(key: str, value: Any) -> str:
    name = clean_text(str(key)).replace("_", " ")
    if isinstance(value, float):
        return f"{name} {value:.2f}"
    return f"{name} {value}"


def _counts_line(counts: Mapping[str, int | float]) -> str:
    return " · ".join(_format_count(k, v) for k, v in counts.items())


def _date(iso: str | None) -> str:
    """The date and minute of an ISO timestamp, for display ("2024-05-01 12:30 UTC")."""
    value = clean_text(iso)
    if not value:
        return ""
    dt = parse_iso(value)
    if dt is None:
        return truncate(value, 40)
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _evidence(message: AlertMessage) -> tuple[Evidence, ...]:
    return message.evidence[:MAX_EVIDENCE]


# --------------------------------------------------------------------------------------- slack


def _slack_encode(text: str) -> str:
    text = _SLACK_FORMAT.sub(lambda m: _SLACK_LOOKALIKE[m.group()], text)
    text = _SLACK_BROADCAST.sub("@\u2060\\1", text)
    return text.translate(_SLACK_ESCAPES)


def escape_slack(text: str | None, limit: int | None = None) -> str:
    """Untrusted text made inert for Slack mrkdwn, on one line, at most `limit` characters.

    `&`, `<`, `>` become entities (no mentions, broadcasts or links can be formed), formatting
    characters that could take effect become look-alikes, control characters are dropped.
    """
    return _fit(clean_text(text), limit, _slack_encode)


def escape_slack_plain(text: str | None, limit: int | None = None) -> str:
    """For `plain_text` objects: no formatting is parsed there, only `& < >` are escaped."""
    return _fit(clean_text(text), limit, lambda s: s.translate(_SLACK_ESCAPES))


def slack_link(url: str | None, label: str | None, limit: int = TITLE_MAX) -> str:
    """`<url|label>` for an http(s) `url`, else the escaped label alone (no link at all)."""
    target = safe_url(url)
    text = escape_slack(label or target or "", limit)
    if target is None:
        return text
    target = target.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")
    target = target.replace("&", "&amp;")
    return f"<{target}|{text or 'link'}>"


def _fit_lines(lines: Iterable[str], limit: int) -> str:
    """Join whole lines while they fit in `limit`; a line is never cut (a cut link is broken)."""
    kept: list[str] = []
    size = -1  # no newline before the first line
    for line in lines:
        if size + 1 + len(line) > limit:
            break
        kept.append(line)
        size += 1 + len(line)
    return "\n".join(kept)


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _slack_header(text: str) -> dict[str, Any]:
    return {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": escape_slack_plain(text, SLACK_HEADER_MAX),
            "emoji": True,
        },
    }


def _slack_evidence_line(ev: Evidence) -> str:
    parts = [f"> `{_score(ev.compound)}` “{escape_slack(ev.text, SNIPPET_MAX)}”"]
    meta = []
    if clean_text(ev.author):
        meta.append(escape_slack(ev.author, AUTHOR_MAX))
    if _date(ev.published_at):
        meta.append(escape_slack(_date(ev.published_at)))
    if safe_url(ev.url):
        meta.append(slack_link(ev.url, "open post"))
    if meta:
        parts.append(" — " + " · ".join(meta))
    if clean_text(ev.explanation):
        parts.append(f"\n>    _why: {escape_slack(ev.explanation, SNIPPET_MAX)}_")
    return "".join(parts)


def _slack_context(message: AlertMessage) -> dict[str, Any]:
    elements = []
    if message.counts:
        elements.append(_mrkdwn(escape_slack(_counts_line(message.counts), SLACK_CONTEXT_MAX)))
    tail = []
    if clean_text(message.source):
        tail.append("source " + escape_slack(message.source, 100))
    if _date(message.created_at):
        tail.append(escape_slack(_date(message.created_at)))
    tail.append("alert " + escape_slack(message.alert_id, 100))
    elements.append(_mrkdwn(" · ".join(tail)))
    return {"type": "context", "elements": elements}


def _slack_alert_blocks(message: AlertMessage) -> list[dict[str, Any]]:
    icon = RULE_ICONS.get(message.rule, "⚠️")
    blocks: list[dict[str, Any]] = [_slack_header(f"{icon} {_headline(message)}")]
    lines = []
    if clean_text(message.title) or safe_url(message.url):
        lines.append("*" + slack_link(message.url, message.title or message.url) + "*")
    if clean_text(message.why):
        lines.append(escape_slack(message.why, WHY_MAX))
    if lines:
        blocks.append({"type": "section", "text": _mrkdwn("\n".join(lines))})
    facts = [f"*{label}:* {escape_slack(value, WHY_MAX)}" for label, value in _facts(message)]
    if safe_url(message.page_url):
        facts.append("*" + slack_link(message.page_url, PAGE_LINK_LABEL) + "*")
    if facts:
        blocks.append({"type": "section", "text": _mrkdwn(_fit_lines(facts, SLACK_SECTION_MAX))})
    evidence = [_slack_evidence_line(ev) for ev in _evidence(message)]
    if evidence:
        text = _fit_lines(["*Worst posts*", *evidence], SLACK_SECTION_MAX)
        blocks.append({"type": "section", "text": _mrkdwn(text)})
    blocks.append(_slack_context(message))
    return blocks


def _slack_digest_item(message: AlertMessage) -> str:
    lines = [f"*{escape_slack(_headline(message), 200)}*"]
    if clean_text(message.title) or safe_url(message.url):
        lines.append(slack_link(message.url, message.title or message.url))
    if clean_text(message.why):
        lines.append(escape_slack(message.why, WHY_MAX))
    if clean_text(message.next_step):
        lines.append("*Next:* " + escape_slack(message.next_step, WHY_MAX))
    if safe_url(message.page_url):
        lines.append(slack_link(message.page_url, PAGE_LINK_LABEL))
    return "\n".join(lines)


def _digest_headline(digest: Digest) -> str:
    n = len(digest.messages)
    period = clean_text(digest.period)
    return f"listener: {n} alert{'s' if n != 1 else ''}" + (
        f" ({period} digest)" if period else " (digest)"
    )


def _slack_digest_blocks(digest: Digest) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [_slack_header("📋 " + _digest_headline(digest))]
    room = SLACK_MAX_BLOCKS - 2  # header + the "and N more" context
    shown = digest.messages if len(digest.messages) <= room + 1 else digest.messages[:room]
    for message in shown:
        blocks.append({"type": "section", "text": _mrkdwn(_slack_digest_item(message))})
    hidden = len(digest.messages) - len(shown)
    if hidden:
        note = f"…and {hidden} more alert{'s' if hidden != 1 else ''}, see the outbox / Datasette"
        blocks.append({"type": "context", "elements": [_mrkdwn(note)]})
    return blocks


def _fallback_text(item: AlertMessage | Digest) -> str:
    if isinstance(item, Digest):
        titles = "; ".join(
            t for m in item.messages[:10] if (t := clean_text(m.title) or clean_text(m.why))
        )
        raw = _digest_headline(item) + (f": {titles}" if titles else "")
    else:
        raw = _headline(item)
        if clean_text(item.title):
            raw += f" — {clean_text(item.title)}"
        if clean_text(item.why):
            raw += f": {clean_text(item.why)}"
        if clean_text(item.next_step):
            raw += f". {clean_text(item.next_step)}"
    return escape_slack(raw, SLACK_TEXT_MAX)


def render_slack(item: AlertMessage | Digest) -> dict[str, Any]:
    """An incoming-webhook payload: `text` (notification / fallback) plus Block Kit `blocks`."""
    blocks = _slack_digest_blocks(item) if isinstance(item, Digest) else _slack_alert_blocks(item)
    return {
        "text": _fallback_text(item),
        "blocks": blocks[:SLACK_MAX_BLOCKS],
        # Slack would otherwise fetch the (untrusted) links and show their previews.
        "unfurl_links": False,
        "unfurl_media": False,
    }


# ---------------------------------------------------------------------------------- plain text


def _text_alert(message: AlertMessage) -> list[str]:
    lines = [_headline(message)]
    if clean_text(message.title):
        lines.append(truncate(clean_text(message.title), TITLE_MAX * 2))
    if safe_url(message.url):
        lines.append(str(safe_url(message.url)))
    if clean_text(message.why):
        lines += ["", clean_text(message.why)]
    facts = _facts(message)
    if facts:
        lines.append("")
        lines += [f"{label}: {truncate(value, WHY_MAX)}" for label, value in facts]
    if safe_url(message.page_url):
        lines.append(f"{PAGE_LINK_LABEL}: {safe_url(message.page_url)}")
    if message.evidence:
        lines += ["", "Worst posts:"]
        for ev in _evidence(message):
            meta = [x for x in (clean_text(ev.author), _date(ev.published_at)) if x]
            line = f"  {_score(ev.compound)}  “{truncate(clean_text(ev.text), SNIPPET_MAX * 2)}”"
            if meta:
                line += " — " + ", ".join(truncate(m, AUTHOR_MAX) for m in meta)
            lines.append(line)
            if clean_text(ev.explanation):
                lines.append(f"         why: {truncate(clean_text(ev.explanation), SNIPPET_MAX)}")
            if safe_url(ev.url):
                lines.append(f"         {safe_url(ev.url)}")
    lines.append("")
    if message.counts:
        lines.append("Counts: " + _counts_line(message.counts))
    if clean_text(message.source):
        lines.append("Source: " + clean_text(message.source))
    if _date(message.created_at):
        lines.append("When: " + _date(message.created_at))
    lines.append("Alert id: " + clean_text(message.alert_id))
    return lines


def render_text(item: AlertMessage | Digest) -> str:
    """Plain text of an alert or digest (the text/plain part of emails, logs, `alerts test`)."""
    if not isinstance(item, Digest):
        return "\n".join(_text_alert(item)) + "\n"
    lines = [_digest_headline(item), ""]
    for i, message in enumerate(item.messages, 1):
        lines.append(f"{i}. {_headline(message)}")
        if clean_text(message.title):
            lines.append("   " + truncate(clean_text(message.title), TITLE_MAX * 2))
        if safe_url(message.url):
            lines.append(f"   {safe_url(message.url)}")
        if clean_text(message.why):
            lines.append("   " + clean_text(message.why))
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- html


def _h(text: str | None) -> str:
    return html.escape(clean_text(text), quote=True)


def _html_link(url: str | None, label: str | None) -> str:
    target = safe_url(url)
    text = _h(truncate(clean_text(label), TITLE_MAX * 2)) or _h(target)
    if target is None:
        return text
    return f'<a href="{html.escape(target, quote=True)}">{text}</a>'


_HTML_HEAD = (
    '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n'
    '<body style="font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;'
    'font-size:14px;color:#1d1d1f;max-width:680px">\n'
)
_HTML_FOOT = '<p style="color:#6e6e73;font-size:12px">{footer}</p>\n</body></html>\n'


def _html_alert_body(message: AlertMessage) -> list[str]:
    out = [f'<h2 style="margin:0 0 8px">{_h(_headline(message))}</h2>']
    if clean_text(message.title) or safe_url(message.url):
        out.append(
            f'<p style="font-size:16px;margin:0 0 8px"><strong>'
            f"{_html_link(message.url, message.title or message.url)}</strong></p>"
        )
    if clean_text(message.why):
        out.append(f"<p>{_h(message.why)}</p>")
    facts = _facts(message)
    if facts:
        out.append('<table cellpadding="3" style="border-collapse:collapse;margin:4px 0 8px">')
        for label, value in facts:
            out.append(
                '<tr><th style="text-align:left;vertical-align:top;padding-right:10px;'
                f'white-space:nowrap">{_h(label)}</th><td>{_h(truncate(value, WHY_MAX))}</td></tr>'
            )
        out.append("</table>")
    if safe_url(message.page_url):
        target = html.escape(str(safe_url(message.page_url)), quote=True)
        out.append(
            f'<p style="margin:12px 0"><a href="{target}" style="background:#0b57d0;color:#fff;'
            'padding:8px 14px;border-radius:6px;text-decoration:none;font-weight:600">'
            f"{_h(PAGE_LINK_LABEL)}</a></p>"
        )
    if message.evidence:
        out.append('<h3 style="margin:16px 0 4px">Worst posts</h3>')
        out.append('<table cellpadding="4" style="border-collapse:collapse">')
        for ev in _evidence(message):
            meta = [_h(x) for x in (ev.author, _date(ev.published_at)) if clean_text(x)]
            if safe_url(ev.url):
                meta.append(_html_link(ev.url, "open post"))
            if clean_text(ev.explanation):
                meta.append("why: " + _h(truncate(clean_text(ev.explanation), SNIPPET_MAX)))
            out.append(
                '<tr><td style="vertical-align:top;font-family:monospace;color:#b00020">'
                f"{_h(_score(ev.compound))}</td><td>"
                f"“{_h(truncate(clean_text(ev.text), SNIPPET_MAX * 2))}”"
                + (f'<br><span style="color:#6e6e73">{" · ".join(meta)}</span>' if meta else "")
                + "</td></tr>"
            )
        out.append("</table>")
    footer: list[str] = []
    if message.counts:
        footer.append(_h(_counts_line(message.counts)))
    if clean_text(message.source):
        footer.append("source " + _h(message.source))
    if _date(message.created_at):
        footer.append(_h(_date(message.created_at)))
    if footer:
        out.append(f'<p style="color:#6e6e73">{"<br>".join(footer)}</p>')
    return out


def render_html(item: AlertMessage | Digest) -> str:
    """A small self-contained HTML page (no external resources) for the text/html email part."""
    if not isinstance(item, Digest):
        out = [_HTML_HEAD.format(title=_h(_headline(item)))]
        out += _html_alert_body(item)
        out.append(_HTML_FOOT.format(footer="Sent by listener · alert " + _h(item.alert_id)))
        return "\n".join(out)
    out = [_HTML_HEAD.format(title=_h(_digest_headline(item)))]
    out.append(f'<h2 style="margin:0 0 8px">{_h(_digest_headline(item))}</h2>')
    out.append("<ol>")
    for message in item.messages:
        out.append(
            f'<li style="margin-bottom:10px"><strong>{_h(_headline(message))}</strong><br>'
            f"{_html_link(message.url, message.title or message.url)}<br>{_h(message.why)}</li>"
        )
    out.append("</ol>")
    out.append(_HTML_FOOT.format(footer="Sent by listener"))
    return "\n".join(out)


# --------------------------------------------------------------------------------------- email


def header_safe(text: str | None, limit: int | None = None) -> str:
    """A value fit for an email header: one line, no control characters, capped."""
    value = clean_text(text)  # drops CR, LF and every other control character
    return truncate(value, limit) if limit else value


def email_subject(item: AlertMessage | Digest) -> str:
    if isinstance(item, Digest):
        brands = sorted({clean_text(m.brand) for m in item.messages if clean_text(m.brand)})
        subject = f"[listener] {_digest_headline(item).removeprefix('listener: ')}"
        if brands:
            subject += " — " + ", ".join(brands)
    else:
        subject = f"[listener] {_headline(item)}"
        if clean_text(item.title):
            subject += f" — {clean_text(item.title)}"
    return header_safe(subject, SUBJECT_MAX)


_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


def message_id(item: AlertMessage | Digest, from_addr: str) -> str:
    """A Message-ID derived from the alert id: a retried send carries the same one."""
    key = item.digest_id if isinstance(item, Digest) else item.alert_id
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    domain = parseaddr(header_safe(from_addr))[1].rpartition("@")[2]
    if not _DOMAIN.match(domain):
        domain = "listener.invalid"
    return f"<listener.{digest}@{domain}>"


def render_email(
    item: AlertMessage | Digest,
    from_addr: str,
    to: Sequence[str],
    *,
    now: datetime | None = None,
) -> EmailMessage:
    """A multipart/alternative (text + HTML) email from `from_addr` to `to`. `now` sets the
    Date header."""
    msg = EmailMessage(policy=default_policy)
    msg["Subject"] = email_subject(item)
    msg["From"] = header_safe(from_addr)
    msg["To"] = ", ".join(header_safe(a) for a in to if header_safe(a))
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = message_id(item, from_addr)
    # RFC 3834: tells vacation responders and ticket systems not to answer an automatic message.
    msg["Auto-Submitted"] = "auto-generated"
    if isinstance(item, AlertMessage):
        msg["X-Listener-Alert-Id"] = header_safe(item.alert_id, 200)
        msg["X-Listener-Rule"] = header_safe(item.rule, 100)
    msg.set_content(render_text(item))
    msg.add_alternative(render_html(item), subtype="html")
    return msg
