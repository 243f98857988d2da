"""`kind: youtube`: a channel's (or playlist's) uploads from YouTube's public Atom feed.

`https://www.youtube.com/feeds/videos.xml?channel_id=UC…` lists the latest 15 videos with their
title, publication time and `media:description` (the video's description, used as its text).
It needs no key. Its one known quirk: the endpoint answers 404 now and then for channels that
exist, for a poll or a few. A 404 is therefore not a failure until it has happened
`not_found_grace` polls in a row (the count is kept in the cursor); until then the poll is
reported as "unchanged" and a warning is logged.

Comments are not read: they are only available through the YouTube Data API with a key.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from urllib.parse import urlencode

from pydantic import Field, model_validator

from ..models import Item, SourcePoll
from . import PollContext, SourceKind, register
from ._api import load_options
from .base import KindOptions, WebUrl
from .feed import fetch_feed_items

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://www.youtube.com"


class YouTubeOptions(KindOptions):
    channel_id: str | None = Field(None, pattern=r"^UC[A-Za-z0-9_-]{22}$")
    playlist_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{10,64}$")
    base_url: WebUrl = DEFAULT_BASE_URL
    # Polls in a row that may answer 404 before the source counts as failing.
    not_found_grace: int = Field(3, ge=0, le=100)

    @model_validator(mode="after")
    def _one_feed(self) -> YouTubeOptions:
        if bool(self.channel_id) == bool(self.playlist_id):
            raise ValueError(
                "give exactly one of channel_id (the UC… id on the channel's About > Share "
                "channel > Copy channel ID) or playlist_id"
            )
        return self


def feed_url(opts: YouTubeOptions) -> str:
    if opts.channel_id:
        query = {"channel_id": opts.channel_id}
    else:
        query = {"playlist_id": opts.playlist_id or ""}
    return f"{opts.base_url.rstrip('/')}/feeds/videos.xml?{urlencode(query)}"


def _video_item(item: Item) -> Item:
    """Thread key `youtube:{video id}`: one video is one conversation."""
    native = item.native_id or ""
    video_id = native.removeprefix("yt:video:") if native.startswith("yt:video:") else None
    if not video_id:
        return item
    return replace(
        item,
        thread_key=f"youtube:{video_id}",
        extra={**item.extra, "video_id": video_id},
    )


async def poll(ctx: PollContext) -> SourcePoll:
    opts = load_options(YouTubeOptions, ctx)
    result = await fetch_feed_items(ctx, feed_url(opts), conditional=True)
    status = result.responses[-1].status if result.responses else 0
    misses = ctx.state.cursor.get("not_found_in_a_row", 0)
    misses = misses if isinstance(misses, int) else 0
    if status == 404:
        misses += 1
        if misses <= opts.not_found_grace:
            log.warning(
                "%s: YouTube answered 404 for the channel feed (%d poll(s) in a row); YouTube "
                "does this now and then, so it is not counted as a failure until it happens "
                "more than %d times in a row",
                ctx.spec.name,
                misses,
                opts.not_found_grace,
            )
            return SourcePoll(
                items=[],
                responses=result.responses,
                cursor={"not_found_in_a_row": misses},
                not_modified=True,
            )
        return replace(
            result,
            error=(
                f"YouTube answered 404 for more than {opts.not_found_grace} polls in a row: "
                "check that the "
                f"{'channel_id' if opts.channel_id else 'playlist_id'} is right and the channel "
                "or playlist still exists and is public"
            ),
        )
    if result.error:
        return replace(result, error=f"YouTube feed: {result.error}")
    return replace(
        result,
        items=[_video_item(it) for it in result.items],
        cursor={"not_found_in_a_row": 0},
    )


KIND = register(
    SourceKind(
        name="youtube",
        options_model=YouTubeOptions,
        poll=poll,
        fetch_thread=None,
        description="YouTube channel or playlist uploads (public Atom feed)",
    )
)
