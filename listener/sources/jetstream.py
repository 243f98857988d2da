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
- v2 (`protocol: v2`; github.com/bluesky-social/jetstream, lexicon
  `network.bsky.jetstream.subscribeEvents`, atproto proposal 0015):
  `GET {base_url}/xrpc/network.bsky.jetstream.subscribeEvents?kinds=commit&collections=...
  [&cursor=SEQ]`, websocket subprotocol `xrpc.v1.json`. Each text frame is
  `{"$type": "message", "payload": {"$type": "network.bsky.jetstream.subscribeEvents#commit",
  "seq", "did", "time", "rev", "operation", "collection", "rkey", "record", "cid"}}`; the cursor
  is `seq`, replayed inclusively (the server sends `seq >= cursor` again, so the client drops
  what is at or below the last seq it delivered: the dedup floor). An `#info` payload
  (`OutdatedCursor`: a timestamp cursor was clamped to the retention floor) is advisory and the
  stream goes on; `{"$type": "error", "error", "message"}` ends the connection (`ConsumerTooSlow`,
  `InternalError`, `FutureCursor`); a seq cursor below the retention floor is refused before the
  upgrade with HTTP 400 and an XRPC body `{"error": "CursorTooOld", "message": "... floor N ..."}`.
  The public `jetstream*.bsky.network` hosts speak v1 only, hence the default.
- Cursors are not portable between versions (a v1 cursor is a time, a v2 cursor a seq): the
  stored cursor names its protocol, and one of the other protocol is never sent; the stream
  starts at the live tip instead, with a warning kept on the source.

Resuming: each batch of posts (every `batch_size` kept posts or `flush_every`, whichever first)
is committed with the position of the last event read before it (v1: `time_us`; v2: `seq`), in
one transaction; a restart, even after `kill -9`, resumes from the stored `time_us` minus
`rewind` (v1) or from the stored `seq` (v2, the redelivered event dropped by the dedup floor). A lost connection is
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
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from pydantic import Field, field_validator

from ..models import Item, SourcePoll, SourceSpec
from ..text import normalise_text, parse_datetime
from . import PollContext, SourceKind, StreamContext, register
from ._api import known_code
from .base import Duration, KindOptions, load_options

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "wss://jetstream2.us-east.bsky.network"
POST_COLLECTION = "app.bsky.feed.post"
# A one-off read (`listener poll`) ends when nothing arrives for this long.
POLL_IDLE_S = 2.0
# Pings on a quiet connection, so a dead one is noticed and reconnected.
_WS_HEARTBEAT_S = 30.0
_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

V2_NSID = "network.bsky.jetstream.subscribeEvents"
V2_PATH = f"/xrpc/{V2_NSID}"
V2_SUBPROTOCOL = "xrpc.v1.json"
_V2_COMMIT = f"{V2_NSID}#commit"
_V2_INFO = f"{V2_NSID}#info"
_V2_EVENTS = frozenset({_V2_COMMIT, f"{V2_NSID}#identity", f"{V2_NSID}#account", f"{V2_NSID}#sync"})
# How long an advisory (an `OutdatedCursor`, a cursor of the other protocol not replayed) stays
# on the source for `status` and `check`.
ADVISORY_SHOWN_FOR = timedelta(days=1)

WsUrl = Annotated[str, Field(pattern=r"^wss?://[^\s/?#]+(?:/[^\s?#]*)?$")]


class JetstreamOptions(KindOptions):
    # The Jetstream host (ws:// or wss://); the endpoint's path and the query are added here.
    base_url: WsUrl = DEFAULT_BASE_URL
    # v1: the legacy `/subscribe` (time_us cursors), what the public hosts speak; v2: the XRPC
    # `network.bsky.jetstream.subscribeEvents` (seq cursors, at-least-once with a dedup floor).
    protocol: Literal["v1", "v2"] = "v1"
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
        return v.removesuffix("/subscribe").removesuffix(V2_PATH)


def subscribe_url(opts: JetstreamOptions, cursor: int | None) -> str:
    """The websocket URL: v1 `cursor` is a time_us, v2 `cursor` a seq (inclusive)."""
    if opts.protocol == "v2":
        # v2 refuses the legacy parameter names; `collections` filters commits only, so the
        # identity and account events are left out with `kinds`.
        params: dict[str, Any] = {"kinds": "commit", "collections": POST_COLLECTION}
        if cursor is not None and cursor >= 0:
            params["cursor"] = cursor
        return f"{opts.base_url}{V2_PATH}?{urlencode(params)}"
    params = {"wantedCollections": POST_COLLECTION}
    if cursor is not None and cursor > 0:
        params["cursor"] = cursor
    return f"{opts.base_url}/subscribe?{urlencode(params)}"


def stored_protocol(cursor: Mapping[str, Any]) -> str | None:
    """The protocol a stored cursor belongs to (one written before v2 existed is a v1 one)."""
    protocol = cursor.get("protocol")
    if protocol in ("v1", "v2"):
        return str(protocol)
    return "v1" if isinstance(cursor.get("time_us"), int) else None


def resume_point(
    opts: JetstreamOptions, cursor: Mapping[str, Any]
) -> tuple[int | None, str | None]:
    """Where to resume from a stored cursor, in `opts.protocol`'s terms (v1 time_us, v2 seq),
    and a warning when the cursor is the other protocol's: it is never replayed (a seq sent to
    v1 reads as a time 50 years ago; a time sent to v2 is not the position it was), so the
    stream starts at the live tip."""
    protocol = stored_protocol(cursor)
    if protocol is None:
        return None, None
    if protocol != opts.protocol:
        what = "a time_us" if protocol == "v1" else "a seq"
        return None, (
            f"the stored cursor is Jetstream {protocol}'s ({what}) and this source now speaks "
            f"{opts.protocol}: it was not replayed, the stream started at the live tip, and "
            "posts made while the source was stopped were not read"
        )
    value = cursor.get("seq" if opts.protocol == "v2" else "time_us")
    return (value if isinstance(value, int) and value >= 0 else None), None


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
    if not isinstance(time_us, int):
        time_us = _time_us(commit.get("time"))  # v2: the payload's `time`
    seen_at = datetime.fromtimestamp(time_us / 1_000_000, UTC) if time_us is not None else None
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
            **({"seq": event["seq"]} if isinstance(event.get("seq"), int) else {}),
            "langs": record.get("langs") or [],
            "links": _links(record),
        },
    )


def _time_us(value: Any) -> int | None:
    """A v2 event's `time` (an ISO-8601 datetime, µs precision) as epoch microseconds."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


class _Cursor:
    """What is stored as the source's cursor: the protocol, the position of the last event read
    (v1 `time_us`, v2 `seq`) and the last advisory the stream gave (with its time)."""

    def __init__(
        self, protocol: str, position: int | None, advisory: dict[str, Any] | None = None
    ) -> None:
        self.protocol = protocol
        self.position = position
        self.advisory = advisory
        # The time of the last event read (epoch µs), for a one-off read's "caught up".
        self.last_us: int | None = position if protocol == "v1" else None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol": self.protocol}
        if self.position is not None:
            out["seq" if self.protocol == "v2" else "time_us"] = self.position
        if self.advisory is not None:
            out["advisory"] = self.advisory
        return out

    def advise(self, name: str, message: str, now: datetime) -> None:
        self.advisory = {"name": name, "message": message, "at": now.isoformat()}

    def note(self, now: datetime) -> str | None:
        return advisory_note(self.advisory, now)


def advisory_note(advisory: Any, now: datetime) -> str | None:
    """The advisory as a line for `status`, while it is recent."""
    if not isinstance(advisory, dict):
        return None
    try:
        at = datetime.fromisoformat(str(advisory.get("at")))
    except ValueError:
        return None
    if now - at > ADVISORY_SHOWN_FOR:
        return None
    return (
        f"{advisory.get('name')} at {at.strftime('%Y-%m-%d %H:%M')} UTC: {advisory.get('message')}"
    )


class _Batch:
    """Posts read since the last commit on one connection: kept ones, replies waiting for their
    thread's verdict, the position of the last event read, and (v2) what the server said besides
    events: advisories and a terminal error frame."""

    def __init__(self, ctx: StreamContext, cursor: _Cursor | None = None) -> None:
        self.ctx = ctx
        self.cursor = cursor if cursor is not None else _Cursor("v1", None)
        self.v2 = self.cursor.protocol == "v2"
        self.kept: list[dict[str, Any]] = []
        self.replies: list[tuple[str, dict[str, Any]]] = []  # (thread key, event)
        self.events = 0
        self.last_us: int | None = None
        self.bad = 0
        # v2: the dedup floor (the highest seq delivered: the server replays inclusively, so a
        # resumed connection starts with it again), the last seq and time read, and whether
        # this connection has sent an event yet.
        self.floor = self.cursor.position if self.v2 else None
        self.last_seq: int | None = None
        self.last_time: Any = None
        self.first = True
        self.redelivered = 0
        self.notices: list[tuple[str, str]] = []  # (name, message): #info frames and the like
        self.error_frame: tuple[str, str] | None = None

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
        if self.v2:
            unwrapped = self._unwrap(event)
            if unwrapped is None:
                return
            event = unwrapped
        else:
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

    def _unwrap(self, frame: dict[str, Any]) -> dict[str, Any] | None:
        """A v2 (xrpc.v1.json) frame as a v1-shaped commit event, or None when it is not one
        (another kind, an advisory, an error, a redelivered seq)."""
        frame_type = frame.get("$type")
        if frame_type == "error":
            self.error_frame = (
                str(frame.get("error") or "unknown"),
                str(frame.get("message") or ""),
            )
            return None
        payload = frame.get("payload")
        if frame_type != "message" or not isinstance(payload, dict):
            return None  # an unknown frame type: skipped, for a newer server's sake
        payload_type = payload.get("$type")
        if payload_type == _V2_INFO:
            self.notices.append(
                (str(payload.get("name") or "unknown"), str(payload.get("message") or ""))
            )
            return None
        if payload_type not in _V2_EVENTS:
            return None
        seq = payload.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq <= 0:
            self.bad += 1
            return None
        if self.floor is not None and seq <= self.floor:
            if self.first:
                log.info(
                    "%s: the server replays from seq %d, at or before the stored %d: "
                    "what was read already is dropped",
                    self.ctx.spec.name,
                    seq,
                    self.floor,
                )
            self.first = False
            self.redelivered += 1  # at least once: already delivered
            return None
        self.first = False
        self.floor = self.last_seq = seq
        self.last_time = payload.get("time")
        self.events += 1
        if payload_type != _V2_COMMIT:
            return None
        # The commit payload has the fields of v1's `commit` object, and `did` and `time`.
        return {"did": payload.get("did"), "kind": "commit", "commit": payload, "seq": seq}

    @property
    def size(self) -> int:
        return len(self.kept)

    def take(self, force: bool = False) -> SourcePoll | None:
        """The batch as items plus the cursor to store with them; None when nothing was read
        (unless `force`: an advisory to record)."""
        cursor = self.cursor
        if self.v2:
            if self.last_seq is not None:
                cursor.position = self.last_seq
                cursor.last_us = _time_us(self.last_time) or cursor.last_us
            elif not force:
                return None
        elif self.last_us is not None:
            cursor.position = cursor.last_us = self.last_us
        elif not force:
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
        if self.redelivered:
            log.debug(
                "%s: %d redelivered events dropped (seq at or below the floor)",
                name,
                self.redelivered,
            )
        poll = SourcePoll(items=items, responses=[], cursor=cursor.as_dict(), note=cursor.note(now))
        self.kept, self.replies, self.events, self.bad, self.redelivered = [], [], 0, 0, 0
        self.last_us, self.last_seq = None, None
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
    name = ctx.spec.name
    v2 = opts.protocol == "v2"
    stored = ctx.state.cursor
    position, mismatch = resume_point(opts, stored)
    advisory = stored.get("advisory") if stored_protocol(stored) == opts.protocol else None
    cursor = _Cursor(opts.protocol, position, advisory if isinstance(advisory, dict) else None)
    if mismatch is not None:
        log.warning("%s: %s", name, mismatch)
        cursor.advise("ProtocolChanged", mismatch, ctx.now())
        await ctx.deliver(
            SourcePoll(items=[], responses=[], cursor=cursor.as_dict(), note=cursor.note(ctx.now()))
        )
    # v2, after a CursorTooOld: the seq to send once (the server's floor), the floor staying
    # one below it so the event at the floor is kept.
    wire_once: int | None = None
    recovered = False  # a refused cursor was replaced: reconnect without waiting
    failures = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + opts.poll_timeout if ctx.until_us is not None else None
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=ctx.connect_timeout_s)
    async with aiohttp.ClientSession(
        timeout=timeout, headers={"User-Agent": ctx.user_agent}
    ) as session:
        while not ctx.stop.is_set():
            if v2:
                wire = wire_once if wire_once is not None else cursor.position
                wire_once = None
            elif cursor.position is not None:
                wire = cursor.position - int(opts.rewind * 1_000_000)
            else:
                wire = None
            url = subscribe_url(opts, wire)
            batch = _Batch(ctx, cursor)
            try:
                ws = await session.ws_connect(
                    url,
                    heartbeat=_WS_HEARTBEAT_S,
                    max_msg_size=_MAX_MESSAGE_BYTES,
                    protocols=(V2_SUBPROTOCOL,) if v2 else (),
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                problem = _connect_problem(opts, exc)
                if (
                    v2
                    and isinstance(exc, aiohttp.WSServerHandshakeError)
                    and 400 <= exc.status < 500
                ):
                    code, message = await _xrpc_error(session, url)
                    if code == "CursorTooOld":
                        floor = _floor_seq(message)
                        problem = (
                            f"Jetstream refused the stored cursor (seq {wire}) with CursorTooOld, "
                            "older than it keeps: posts in between were missed; "
                            "resuming "
                            + (f"at its oldest, seq {floor}" if floor else "at the live tip")
                        )
                        cursor.position = floor - 1 if floor else None
                        wire_once = floor
                        recovered = True
                    elif code is not None:
                        # The server's `message` is never quoted; a known code is ours to name.
                        problem = f"Jetstream at {opts.base_url} refused the stream: " + (
                            known_code(code, _ERROR_CODES) or f"HTTP {exc.status}"
                        )
                log.warning("%s: %s", name, problem)
                await ctx.deliver(
                    SourcePoll(items=[], responses=[], error=problem, cursor=cursor.as_dict())
                )
                if recovered:
                    recovered = False
                    continue  # the cursor is fixed: at once, from the server's oldest event
                if ctx.until_us is not None:
                    return
                failures += 1
                await _sleep_or_stop(ctx.stop, backoff_delay(opts, failures))
                continue
            if v2 and ws.protocol != V2_SUBPROTOCOL:
                log.warning(
                    "%s: the server did not agree to the %s subprotocol; reading on",
                    name,
                    V2_SUBPROTOCOL,
                )
            log.info(
                "%s: connected to %s (%s, %s)",
                name,
                opts.base_url,
                opts.protocol,
                f"resuming at {wire}" if wire is not None else "live",
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
                        log.info("%s: Jetstream connection lost: %s", name, exc)
                        break
                    force = False
                    if msg is not None and msg.type in (
                        aiohttp.WSMsgType.TEXT,
                        aiohttp.WSMsgType.BINARY,
                    ):
                        batch.add(msg.data)
                        read_any = True
                        last_msg_at = loop.time()
                        if batch.error_frame is not None:
                            break  # the server ends the stream after an error frame
                        if batch.notices:
                            force = _take_notices(ctx, batch, cursor)
                        if flush_at is None:
                            flush_at = last_msg_at + opts.flush_every
                        if not force and batch.size < opts.batch_size and last_msg_at < flush_at:
                            continue
                    elif msg is not None:
                        break  # closed, closing or an error: flush what was read, reconnect
                    await _flush(ctx, batch, force)
                    flush_at = None
                    if ctx.until_us is not None:
                        now = loop.time()
                        if (
                            (cursor.last_us or 0) >= ctx.until_us
                            or now - last_msg_at >= POLL_IDLE_S
                            or (deadline is not None and now >= deadline)
                        ):
                            caught_up = True
                            break
            finally:
                closer.cancel()
                await _flush(ctx, batch)
                await ws.close()
            if batch.error_frame is not None:
                problem = _error_frame_problem(opts, batch.error_frame, cursor)
                log.warning("%s: %s", name, problem)
                await ctx.deliver(
                    SourcePoll(items=[], responses=[], error=problem, cursor=cursor.as_dict())
                )
                read_any = False  # counts as a failed connection: backoff grows
            if caught_up or ctx.stop.is_set():
                return
            if ctx.until_us is not None and (
                batch.error_frame is not None or (deadline is not None and loop.time() >= deadline)
            ):
                return
            failures = 0 if read_any else failures + 1
            delay = backoff_delay(opts, failures)
            log.info(
                "%s: Jetstream closed the connection (%s); reconnecting in %.1f s",
                name,
                ws.close_code,
                delay,
            )
            await _sleep_or_stop(ctx.stop, delay)


def _take_notices(ctx: StreamContext, batch: _Batch, cursor: _Cursor) -> bool:
    """Advisories read (v2 `#info` frames such as `OutdatedCursor`): logged and kept on the
    source; the stream goes on. True when one must be committed now."""
    for name, message in batch.notices:
        log.warning("%s: Jetstream advisory %s: %s", ctx.spec.name, name, message)
        cursor.advise(name, message, ctx.now())
    batch.notices = []
    return True


# Jetstream v2's error codes an error message may name (any other is the server's text).
_ERROR_CODES = frozenset(
    {
        "ConsumerTooSlow",
        "CursorTooOld",
        "FutureCursor",
        "InvalidRequest",
        "BadRequest",
        "RateLimitExceeded",
        "InternalServerError",
    }
)


def _error_frame_problem(opts: JetstreamOptions, frame: tuple[str, str], cursor: _Cursor) -> str:
    """The source error for a v2 error frame; a `FutureCursor` drops the stored cursor (the
    server will never reach it: resuming from it again would fail again), the rest reconnect
    from it with backoff."""
    code, _message = frame  # the server's `message` is never quoted, a known code is ours
    problem = f"Jetstream at {opts.base_url} ended the stream: " + (
        known_code(code, _ERROR_CODES) or "an error frame"
    )
    if code == "FutureCursor":
        cursor.position = None
        problem += "; the stored cursor is ahead of the server, so it restarts at the live tip"
    elif code == "ConsumerTooSlow":
        problem += "; reconnecting from the last stored event (is this machine keeping up?)"
    else:
        problem += "; reconnecting from the last stored event"
    return problem


async def _xrpc_error(session: Any, url: str) -> tuple[str | None, str]:
    """The XRPC error (`{"error", "message"}`) a v2 server refused the websocket with. aiohttp
    drops the body of a refused handshake, so the same URL is asked again as plain HTTP: the
    cursor and filters are judged before the upgrade, so the answer is the same."""
    import aiohttp

    http_url = "http" + url.removeprefix("ws")
    try:
        async with session.get(http_url) as resp:
            body = await resp.content.read(64 * 1024)
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None, ""
    try:
        doc = json.loads(body)
    except ValueError:
        return None, ""
    if not isinstance(doc, dict) or not isinstance(doc.get("error"), str):
        return None, ""
    return doc["error"], str(doc.get("message") or "")


def _floor_seq(message: str) -> int | None:
    """The oldest seq a server keeps, from a CursorTooOld message ("... floor 1234 ...")."""
    match = re.search(r"floor(?: seq)?:? (\d+)", message)
    return int(match.group(1)) if match and int(match.group(1)) > 0 else None


async def _close_on_stop(stop: asyncio.Event, ws: Any) -> None:
    await stop.wait()
    await ws.close()


async def _flush(ctx: StreamContext, batch: _Batch, force: bool = False) -> None:
    poll = batch.take(force)
    if poll is not None:
        await ctx.deliver(poll)


def _connect_problem(opts: JetstreamOptions, exc: BaseException) -> str:
    import aiohttp

    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return (
            f"Jetstream at {opts.base_url} refused the websocket (HTTP {exc.status}): check "
            "base_url (the host, e.g. wss://jetstream2.us-east.bsky.network)"
            + (
                " and that it speaks v2 (the public hosts speak v1)"
                if opts.protocol == "v2"
                else ""
            )
        )
    what = str(exc) or type(exc).__name__
    return f"Jetstream unreachable at {opts.base_url}: {what}"


def notes(spec: SourceSpec, cursor: Mapping[str, Any]) -> list[str]:
    """What `check` and `status` say from the stored cursor: a recent advisory."""
    note = advisory_note(cursor.get("advisory"), datetime.now(UTC))
    return [note] if note else []


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
        notes=notes,
        description="Bluesky Jetstream firehose (websocket), filtered locally",
    )
)
