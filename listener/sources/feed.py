"""`kind: feed`: any RSS 0.9x/1.0/2.0, Atom or JSON Feed URL (blogs, forums, comment feeds,
Reddit and Google Alerts feeds, YouTube channel feeds)."""

from __future__ import annotations

import hashlib
import logging

from ..models import SourcePoll
from ..secrets import link_base, with_credentials_of
from . import PollContext, SourceKind, register
from .base import KindOptions, WebUrl

log = logging.getLogger(__name__)


class FeedOptions(KindOptions):
    url: WebUrl


def body_digest(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=16).hexdigest()


async def fetch_feed_items(
    ctx: PollContext, url: str, *, conditional: bool, retry: bool | None = None
) -> SourcePoll:
    """Fetch one feed URL and parse it; an unchanged body (304, or the same bytes) parses nothing.
    `retry=False`: one attempt only (a host with a tight request budget)."""
    state = ctx.state
    validators = state.validators if conditional else None
    if retry is None:
        response = await ctx.fetcher.get(url, validators=validators)
    else:
        from ..fetch import FEED_ACCEPT

        response = await ctx.fetcher.request(
            "GET", url, validators=validators, accept=FEED_ACCEPT, retry=retry
        )
    if response.error or not response.ok:
        return SourcePoll(
            items=[], responses=[response], error=response.error or f"HTTP {response.status}"
        )
    if response.not_modified:
        return SourcePoll(
            items=[], responses=[response], validators=response.validators, not_modified=True
        )
    digest = body_digest(response.body)
    if conditional and digest == state.body_hash:
        # Servers without validators send the same bytes again: skip parsing them.
        return SourcePoll(
            items=[],
            responses=[response],
            validators=response.validators,
            body_hash=digest,
            not_modified=True,
        )
    from ..parse import NotAFeed

    try:
        parsed = await ctx.parse_feed(
            response.body,
            source=ctx.spec.name,
            url=link_base(response.final_url),  # links built from it carry no credentials
            content_type=response.content_type,
            headers=response.headers,
        )
    except NotAFeed as exc:
        return SourcePoll(items=[], responses=[response], error=str(exc))
    if parsed.warning:
        log.debug("%s: feed recovered from: %s", ctx.spec.name, parsed.warning)
    note = parsed.truncation
    if note:
        log.warning("%s: %s", ctx.spec.name, note)
    return SourcePoll(
        items=parsed.items,
        responses=[response],
        validators=response.validators,
        body_hash=digest,
        note=note,
    )


async def poll(ctx: PollContext) -> SourcePoll:
    assert ctx.spec.url is not None  # FeedOptions requires it
    return await fetch_feed_items(ctx, ctx.spec.url, conditional=True)


async def fetch_thread(ctx: PollContext, thread_key: str, thread_url: str) -> SourcePoll:
    # A comment feed beside a password-protected feed needs its password (links carry none).
    url = with_credentials_of(thread_url, ctx.spec.url)
    return await fetch_feed_items(ctx, url, conditional=False)


KIND = register(
    SourceKind(
        name="feed",
        options_model=FeedOptions,
        poll=poll,
        fetch_thread=fetch_thread,
        description="RSS, Atom or JSON Feed",
    )
)
