"""`kind: google_alerts`: a Google Alert delivered "as RSS feed" (an Atom feed).

Create the alert at https://www.google.com/alerts, choose "Deliver to: RSS feed", and copy the
feed address (https://www.google.com/alerts/feeds/<user>/<alert>) into `url:`.

Each entry's link is a google.com/url redirect whose `url=` parameter is the article, and the
title and content mark the matched words with `<b>`. The shared feed parser already unwraps the
redirect into the item's canonical URL and turns the HTML into text; here the item also keeps the
article's own link (not the tracking redirect) as the link it was seen under, and loses the
" ..." Google appends to the excerpt. The article is its own thread, so the same story reached
through an alert, a blog feed and HN is one item.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any

from ..models import Item, SourcePoll
from ..text import canonical_url
from . import PollContext, SourceKind, register
from .base import KindOptions, WebUrl, load_options
from .feed import fetch_feed_items

log = logging.getLogger(__name__)

_TRAILING_ELLIPSIS = re.compile(r"\s*(?:\.\.\.|…)\s*$")
_REDIRECT_HOST = re.compile(r"^https?://(?:www\.)?google\.[a-z.]+/url\?", re.I)


class GoogleAlertsOptions(KindOptions):
    url: WebUrl


def normalise_item(item: Item) -> Item:
    raw = item.raw_url or ""
    changes: dict[str, Any] = {"text": _TRAILING_ELLIPSIS.sub("", item.text)}
    if _REDIRECT_HOST.match(raw):
        # canonical_url unwraps google.com/url; the sighting keeps the article's own address.
        target = canonical_url(raw)
        changes["raw_url"] = target
        changes["extra"] = {**item.extra, "alert_link": raw}
    return replace(item, **changes)


async def poll(ctx: PollContext) -> SourcePoll:
    url = ctx.spec.url or load_options(GoogleAlertsOptions, ctx).url
    result = await fetch_feed_items(ctx, url, conditional=True)
    if result.error:
        return replace(result, error=f"Google Alerts feed: {result.error}")
    return replace(result, items=[normalise_item(it) for it in result.items])


KIND = register(
    SourceKind(
        name="google_alerts",
        options_model=GoogleAlertsOptions,
        poll=poll,
        fetch_thread=None,
        description="Google Alerts delivered as an RSS (Atom) feed",
    )
)
