"""`kind: jetstream`: Bluesky's public firehose of posts, as JSON over a websocket, filtered here.

How the service behaves (github.com/bluesky-social/jetstream, README and specs/client.md):

- `GET {base_url}/subscribe?wantedCollections=app.bsky.feed.post[&cursor=N]` upgrades to a
  websocket that sends one JSON text message per event:
  `{"did", "time_us", "kind": "commit", "commit": {"rev", "operation": "create" | "update" |
  "delete", "collection", "rkey", "record": {"text", "createdAt", "reply": {"root": {"uri"},
  "parent": {"uri"}}, ...}, "cid"}}`; `kind` is also `identity` or `account` (no collection
  filter applies to those). Nothing is filtered by text on the server: every post of the network
  arrives, and the brand rules run here (a cheap prefilter, then the compiled matcher).
- `cursor` is a Unix time in microseconds (`time_us` of an event): the server replays from there,
  then tails live; without one it starts at the live tip. Delivery is at least once and a resume
  should rewind a little (a few seconds) to be gapless, so an event can arrive twice: posts are
  deduplicated on (did, rkey) by the store, through their URL.
- v2 (`/xrpc/network.bsky.jetstream.subscribeEvents`, sequence cursors) keeps the legacy
  `/subscribe` endpoint for live-only consumers; this kind speaks the legacy one.

Resuming: each batch of posts (every `batch_size` kept posts or `flush_every`, whichever first)
is committed with the `time_us` of the last event read before it, in one transaction; a restart,
even after `kill -9`, resumes from the stored `time_us` minus `rewind`. A lost connection is
retried with capped exponential backoff and jitter.

A post is one item: its URL `https://bsky.app/profile/{did}/post/{rkey}`, its thread the root
post of its reply chain (`bsky:{root at:// uri}`, the key `kind: bluesky` uses too). A reply that
does not name a brand is kept when its thread is a brand thread. Replies arrive on the stream, so
threads are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from pydantic import Field, field_validator

from ..models import Item, SourcePoll
from ..text import normalise_text, parse_datetime
from . import PollContext, SourceKind, StreamContext, register
from .base import Duration, KindOptions, load_options

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "wss://jetstream2.us-east.bsky.network"
POST_COLLECTION = "app.bsky.feed.post"
# A one-off read (`listener poll`) ends when nothing arrives for this long.
POLL_IDLE_S = 2.0
# Pings on a quiet connection, so a dead one is noticed and reconnected.
_WS_HEARTBEAT_S = 30.0
_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

WsUrl = Annotated[str, Field(pattern=r"^wss?://[^\s/?#]+(?:/[^\s?#]*)?$")]


class JetstreamOptions(KindOptions):
    # The Jetstream host (ws:// or wss://); `/subscribe` and the query are added here.
    base_url: WsUrl = DEFAULT_BASE_URL
    batch_size: int = Field(200, ge=1, le=10_000)
    flush_every: Annotated[Duration, Field(gt=0, le=60)] = 1.0
    rewind: Annotated[Duration, Field(le=3600)] = 2.0
    reconnect_min: Annotated[Duration, Field(gt=0, le=300)] = 1.0
    reconnect_max: Annotated[Duration, Field(gt=0, le=3600)] = 60.0
    # A one-off read (`listener poll`) stops after this long even if not caught up.
    poll_timeout: Annotated[Duration, Field(gt=0, le=3600)] = 30.0

    @field_validator("base_url")
    @classmethod
    def _host_only(cls, v: str) -> str:
        v = v.rstrip("/")
        return v.removesuffix("/subscribe")


def subscribe_url(opts: JetstreamOptions, cursor_us: int | None) -> str:
    params: dict[str, Any] = {"wantedCollections": POST_COLLECTION}
    if cursor_us is not None and cursor_us > 0:
        params["cursor"] = cursor_us
    return f"{opts.base_url}/subscribe?{urlencode(params)}"


def post_uri(did: str, rkey: str) -> str:
    return f"at://{did}/{POST_COLLECTION}/{rkey}"


def _root_uri(record: dict[str, Any]) -> str | None:
    reply = record.get("reply")
    if not isinstance(reply, dict):
        return None
    root = reply.get("root")
    uri = root.get("uri") if isinstance(root, dict) else None
    return uri if isinstance(uri, str) and uri.startswith("at://") else None


def _links(record: dict[str, Any]) -> list[str]:
    links: list[str] = []
    for facet in record.get("facets") or ():
        features = facet.get("features") if isinstance(facet, dict) else None
        for feature in features if isinstance(features, list) else ():
            if isinstance(feature, dict) and isinstance(feature.get("uri"), str):
                links.append(feature["uri"])
    return links


def parse_post(event: dict[str, Any], *, source: str, now: datetime) -> Item | None:
    """An `Item` from one Jetstream commit event creating or updating a post, else None."""
    commit = event.get("commit")
    did = event.get("did")
    if not isinstance(commit, dict) or not isinstance(did, str):
        return None
    if commit.get("collection") != POST_COLLECTION:
        return None
    if commit.get("operation") not in ("create", "update"):
        return None
    record, rkey = commit.get("record"), commit.get("rkey")
    if not isinstance(record, dict) or not isinstance(rkey, str) or not rkey:
        return None
    if not isinstance(record.get("text"), str):
        return None
    uri = post_uri(did, rkey)
    reply = record.get("reply") if isinstance(record.get("reply"), dict) else None
    root = _root_uri(record) or uri
    parent = reply.get("parent") if reply else None
    parent_uri = parent.get("uri") if isinstance(parent, dict) else None
    time_us = event.get("time_us")
    seen_at = datetime.fromtimestamp(time_us / 1_000_000, UTC) if isinstance(time_us, int) else None
    link = f"https://bsky.app/profile/{did}/post/{rkey}"
    return Item(
        source=source,
        native_id=uri,
        url=link,
        title="",
        text=normalise_text(record["text"]),
        author=did,  # Jetstream carries no handle; the DID is the stable name
        published_at=parse_datetime(record.get("createdAt"), now=now) or seen_at,
        thread_key=f"bsky:{root}",
        parent_key=f"bsky:{parent_uri}" if isinstance(parent_uri, str) else None,
        is_reply=reply is not None,
        raw_url=link,
        extra={
            "uri": uri,
            "cid": commit.get("cid"),
            "did": did,
            "time_us": time_us,
            "langs": record.get("langs") or [],
            "links": _links(record),
        },
    )


class _Batch:
    """Posts read since the last commit: kept ones, replies waiting for their thread's verdict,
    and the position (`time_us`) of the last event read."""

    def __init__(self, ctx: StreamContext) -> None:
        self.ctx = ctx
        self.kept: list[dict[str, Any]] = []
        self.replies: list[tuple[str, dict[str, Any]]] = []  # (thread key, event)
        self.events = 0
        self.last_us: int | None = None
        self.bad = 0

    def add(self, raw: str | bytes) -> None:
        """One websocket message. The hot path: most posts name no brand and stop at `wants`."""
        try:
            event = json.loads(raw)
        except ValueError:
            self.bad += 1
            return
        if not isinstance(event, dict):
            self.bad += 1
            return
        time_us = event.get("time_us")
        if isinstance(time_us, int) and (self.last_us is None or time_us > self.last_us):
            self.last_us = time_us
        self.events += 1
        commit = event.get("commit")
        if event.get("kind") != "commit" or not isinstance(commit, dict):
            return
        if commit.get("collection") != POST_COLLECTION or commit.get("operation") == "delete":
            return
        record = commit.get("record")
        text = record.get("text") if isinstance(record, dict) else None
        if not isinstance(text, str):
            return
        if self.ctx.wants(text):
            self.kept.append(event)
            return
        assert isinstance(record, dict)
        root = _root_uri(record)
        if root is not None:
            self.replies.append((f"bsky:{root}", event))

    @property
    def size(self) -> int:
        return len(self.kept)

    def take(self) -> SourcePoll | None:
        """The batch as items plus the cursor to store with them; None when nothing was read."""
        if self.last_us is None:
            return None
        now = self.ctx.now()
        name = self.ctx.spec.name
        items = [it for ev in self.kept if (it := parse_post(ev, source=name, now=now)) is not None]
        if self.replies:
            threads = {it.thread_key for it in items}
            threads |= self.ctx.brand_threads({key for key, _ in self.replies} - threads)
            for key, ev in self.replies:
                if key in threads and (it := parse_post(ev, source=name, now=now)) is not None:
                    items.append(it)
        if self.bad:
            log.warning("%s: %d messages that are not JSON events skipped", name, self.bad)
        poll = SourcePoll(items=items, responses=[], cursor={"time_us": self.last_us})
        self.kept, self.replies, self.events, self.bad = [], [], 0, 0
        return poll


class _Stopped(Exception):
    pass


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def backoff_delay(opts: JetstreamOptions, failures: int) -> float:
    """Seconds before the next connection: doubling per failure up to `reconnect_max`, with
    jitter (half to all of it) so many clients do not reconnect in step."""
    ceiling = min(opts.reconnect_max, opts.reconnect_min * 2 ** min(failures, 30))
    return random.uniform(ceiling / 2, ceiling)


async def stream(ctx: StreamContext) -> None:
    """Read the stream until `ctx.stop` (or, for a one-off read, until caught up)."""
    import aiohttp

    opts = load_options(JetstreamOptions, ctx)
    stored = ctx.state.cursor.get("time_us")
    position: int | None = stored if isinstance(stored, int) else None
    failures = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + opts.poll_timeout if ctx.until_us is not None else None
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=ctx.connect_timeout_s)
    async with aiohttp.ClientSession(
        timeout=timeout, headers={"User-Agent": ctx.user_agent}
    ) as session:
        while not ctx.stop.is_set():
            cursor = position - int(opts.rewind * 1_000_000) if position is not None else None
            url = subscribe_url(opts, cursor)
            batch = _Batch(ctx)
            try:
                ws = await session.ws_connect(
                    url, heartbeat=_WS_HEARTBEAT_S, max_msg_size=_MAX_MESSAGE_BYTES
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                problem = _connect_problem(opts, exc)
                log.warning("%s: %s", ctx.spec.name, problem)
                await ctx.deliver(SourcePoll(items=[], responses=[], error=problem))
                if ctx.until_us is not None:
                    return
                failures += 1
                await _sleep_or_stop(ctx.stop, backoff_delay(opts, failures))
                continue
            log.info(
                "%s: connected to %s (%s)",
                ctx.spec.name,
                opts.base_url,
                f"resuming at {cursor}" if cursor is not None else "live",
            )
            read_any = False
            caught_up = False
            closer = loop.create_task(_close_on_stop(ctx.stop, ws))
            try:
                flush_at: float | None = None
                last_msg_at = loop.time()
                while True:
                    now = loop.time()
                    wait = flush_at - now if flush_at is not None else None
                    if ctx.until_us is not None:
                        idle = last_msg_at + POLL_IDLE_S - now
                        wait = min(
                            w for w in (wait, idle, (deadline or now) - now) if w is not None
                        )
                    try:
                        msg = await ws.receive(
                            timeout=max(wait, 0.001) if wait is not None else None
                        )
                    except TimeoutError:
                        msg = None
                    except aiohttp.ClientError as exc:
                        log.info("%s: Jetstream connection lost: %s", ctx.spec.name, exc)
                        break
                    if msg is not None and msg.type in (
                        aiohttp.WSMsgType.TEXT,
                        aiohttp.WSMsgType.BINARY,
                    ):
                        batch.add(msg.data)
                        read_any = True
                        last_msg_at = loop.time()
                        if flush_at is None:
                            flush_at = last_msg_at + opts.flush_every
                        if batch.size < opts.batch_size and last_msg_at < flush_at:
                            continue
                    elif msg is not None:
                        break  # closed, closing or an error: flush what was read, reconnect
                    position = await _flush(ctx, batch, position)
                    flush_at = None
                    if ctx.until_us is not None:
                        now = loop.time()
                        if (
                            (position or 0) >= ctx.until_us
                            or now - last_msg_at >= POLL_IDLE_S
                            or (deadline is not None and now >= deadline)
                        ):
                            caught_up = True
                            break
            finally:
                closer.cancel()
                position = await _flush(ctx, batch, position)
                await ws.close()
            if caught_up or ctx.stop.is_set():
                return
            if ctx.until_us is not None and deadline is not None and loop.time() >= deadline:
                return
            failures = 0 if read_any else failures + 1
            delay = backoff_delay(opts, failures)
            log.info(
                "%s: Jetstream closed the connection (%s); reconnecting in %.1f s",
                ctx.spec.name,
                ws.close_code,
                delay,
            )
            await _sleep_or_stop(ctx.stop, delay)


async def _close_on_stop(stop: asyncio.Event, ws: Any) -> None:
    await stop.wait()
    await ws.close()


async def _flush(ctx: StreamContext, batch: _Batch, position: int | None) -> int | None:
    poll = batch.take()
    if poll is None:
        return position
    await ctx.deliver(poll)
    assert poll.cursor is not None
    return int(poll.cursor["time_us"])


def _connect_problem(opts: JetstreamOptions, exc: BaseException) -> str:
    import aiohttp

    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return (
            f"Jetstream at {opts.base_url} refused the websocket (HTTP {exc.status}): check "
            "base_url (the host, e.g. wss://jetstream2.us-east.bsky.network)"
        )
    what = str(exc) or type(exc).__name__
    return f"Jetstream unreachable at {opts.base_url}: {what}"


async def poll(ctx: PollContext) -> SourcePoll:
    # Never called by the pipeline (stream kinds are read by `listener.stream`); kept so the
    # kind fits the registry's shape.
    return SourcePoll(
        items=[], responses=[], error="a stream: read by `listener run` (or `listener poll`)"
    )


KIND = register(
    SourceKind(
        name="jetstream",
        options_model=JetstreamOptions,
        poll=poll,
        stream=stream,
        description="Bluesky Jetstream firehose (websocket), filtered locally",
    )
)
