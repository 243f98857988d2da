"""A loopback Jetstream for tests: aiohttp's websocket server on 127.0.0.1 in its own thread.

It behaves like Jetstream's legacy `/subscribe`: events are published into a log, each given a
strictly increasing `time_us`; a client with `?cursor=N` is replayed every event with
`time_us >= N`, then tailed live; a client without a cursor starts at the live tip (only events
published after it connected). `wantedCollections` filters commit events by collection
(identity and account events pass). `drop_after(n)` makes the next connection close after
sending n events (a disconnect mid-stream); every connection's query is recorded.

Events have the recorded shape of Jetstream messages (`post`, `delete`, `like`, `identity`).

It also speaks v2, `network.bsky.jetstream.subscribeEvents` (github.com/bluesky-social/jetstream,
its lexicon and `internal/subscribe`): `GET /xrpc/network.bsky.jetstream.subscribeEvents` with
the `xrpc.v1.json` subprotocol; every event has a `seq` (1, 2, ...); frames are
`{"$type": "message", "payload": {"$type": "...#commit", "seq", "did", "time", ...commit}}`;
`cursor` below 1e15 is a seq replayed inclusively (`seq >= cursor`), at or above the next seq
drops to the live tip; at or above 1e15 it is a time_us, translated to the first seq at or after
it, and clamped to the retention floor with an `#info` `OutdatedCursor` frame first; a seq cursor
below the floor (`forget_before`) is refused before the upgrade with HTTP 400 and
`{"error": "CursorTooOld", "message": "... floor N ..."}`; the legacy `wantedCollections` is a
400 `InvalidRequest`; `kinds` and `collections` filter. Test hooks: `error_after(n, code)` (an
error frame after n events, then the close), `advise_next(name, message)` (an `#info` frame
first), `rewind_next(k)` (the next connection replays k events before its cursor: at least once).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

T0_US = int(time.time() * 1_000_000)
V2_NSID = "network.bsky.jetstream.subscribeEvents"
V2_PATH = f"/xrpc/{V2_NSID}"
TIME_CURSOR_FROM = 1_000_000_000_000_000


def iso_us(time_us: int) -> str:
    """v2's `time`: a UTC datetime with six fractional digits."""
    return datetime.fromtimestamp(time_us / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def v2_frame(event: dict[str, Any]) -> dict[str, Any]:
    """A stored (v1-shaped) event as a v2 message frame."""
    base = {"seq": event["seq"], "did": event["did"], "time": iso_us(event["time_us"])}
    kind = event.get("kind")
    if kind == "commit":
        payload = {"$type": f"{V2_NSID}#commit", **base, **event["commit"]}
    else:
        payload = {"$type": f"{V2_NSID}#{kind}", **base, kind: event.get(kind, {})}
    return {"$type": "message", "payload": payload}


def edit(did: str, rkey: str, text: str) -> dict[str, Any]:
    """A commit event updating a post's text."""
    return post(did, rkey, text, operation="update")


def post(
    did: str,
    rkey: str,
    text: str,
    *,
    root: str | None = None,
    parent: str | None = None,
    operation: str = "create",
) -> dict[str, Any]:
    """A commit event creating a post (`root`/`parent`: at:// URIs of the reply chain)."""
    record: dict[str, Any] = {
        "$type": "app.bsky.feed.post",
        "createdAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "langs": ["en"],
        "text": text,
    }
    if root:
        record["reply"] = {
            "parent": {"cid": "bafyreiparent", "uri": parent or root},
            "root": {"cid": "bafyreiroot", "uri": root},
        }
    return {
        "did": did,
        "kind": "commit",
        "commit": {
            "rev": f"3l{rkey}rev",
            "operation": operation,
            "collection": "app.bsky.feed.post",
            "rkey": rkey,
            "record": record,
            "cid": f"bafyrei{rkey}",
        },
    }


def uri(did: str, rkey: str) -> str:
    return f"at://{did}/app.bsky.feed.post/{rkey}"


def delete(did: str, rkey: str) -> dict[str, Any]:
    return {
        "did": did,
        "kind": "commit",
        "commit": {
            "rev": "3lrev",
            "operation": "delete",
            "collection": "app.bsky.feed.post",
            "rkey": rkey,
        },
    }


def like(did: str, subject: str) -> dict[str, Any]:
    return {
        "did": did,
        "kind": "commit",
        "commit": {
            "rev": "3lrev",
            "operation": "create",
            "collection": "app.bsky.feed.like",
            "rkey": "3llike",
            "record": {"$type": "app.bsky.feed.like", "subject": {"uri": subject, "cid": "x"}},
        },
    }


def identity(did: str, handle: str) -> dict[str, Any]:
    return {
        "did": did,
        "kind": "identity",
        "identity": {"did": did, "handle": handle, "seq": 1, "time": "2026-01-01T00:00:00Z"},
    }


class Jetstream:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.connections: list[dict[str, str]] = []  # the query of each connection
        self.paths: list[str] = []  # the path of each connection
        self.subprotocols: list[str | None] = []  # the subprotocol agreed, per v2 connection
        self.floor_seq = 1  # v2: the oldest seq still kept
        self._lock = threading.Lock()
        self._drops: list[int] = []
        self._errors: list[tuple[int, str, str]] = []
        self._advice: list[tuple[str, str]] = []
        self._rewinds: list[int] = []
        self._loop = asyncio.new_event_loop()
        self._changed: asyncio.Event | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- control, from the test's thread --------------------------------------------------------

    def start(self) -> Jetstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Jetstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def publish(self, *events: dict[str, Any]) -> list[int]:
        """Append events (given their time_us now); returns their time_us."""
        out = []
        with self._lock:
            for event in events:
                last = self.events[-1]["time_us"] if self.events else T0_US
                stamped = {
                    **event,
                    "time_us": max(last + 1, int(time.time() * 1_000_000)),
                    "seq": len(self.events) + 1,
                }
                self.events.append(stamped)
                out.append(stamped["time_us"])
        self._loop.call_soon_threadsafe(self._wake)
        return out

    def drop_after(self, n: int) -> None:
        """The next connection closes (abruptly, no close frame) after sending n events."""
        with self._lock:
            self._drops.append(n)

    def error_after(self, n: int, code: str, message: str = "") -> None:
        """v2: the next connection sends an error frame after n events, then closes."""
        with self._lock:
            self._errors.append((n, code, message))

    def advise_next(self, name: str, message: str) -> None:
        """v2: the next connection starts with an `#info` advisory."""
        with self._lock:
            self._advice.append((name, message))

    def rewind_next(self, k: int) -> None:
        """v2: the next connection with a cursor replays from k events before it."""
        with self._lock:
            self._rewinds.append(k)

    def forget_before(self, seq: int) -> None:
        """v2: events before `seq` are past retention (a seq cursor below is CursorTooOld)."""
        with self._lock:
            self.floor_seq = seq

    def disconnect_all(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(10)

    def wait_connections(self, n: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.connections) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {n} connections, saw {self.connections}")
            time.sleep(0.02)

    # -- the server ------------------------------------------------------------------------------

    def _wake(self) -> None:
        assert self._changed is not None
        self._changed.set()
        self._changed = asyncio.Event()

    async def _start(self) -> None:
        self._changed = asyncio.Event()
        app = web.Application()
        app.router.add_get("/subscribe", self._subscribe)
        app.router.add_get(V2_PATH, self._subscribe_v2)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _close_all(self) -> None:
        for ws in list(self._sockets):
            await ws.close()

    async def _stop(self) -> None:
        await self._close_all()
        if self._runner is not None:
            await self._runner.cleanup()

    def _wanted(self, event: dict[str, Any], collections: list[str]) -> bool:
        if event.get("kind") != "commit" or not collections:
            return True
        return event["commit"].get("collection") in collections

    async def _subscribe(self, request: web.Request) -> web.StreamResponse:
        query = {k: v[0] for k, v in parse_qs(request.query_string).items()}
        collections = parse_qs(request.query_string).get("wantedCollections", [])
        with self._lock:
            self.connections.append(query)
            self.paths.append(request.path)
            drop = self._drops.pop(0) if self._drops else None
            if "cursor" in query:
                cursor = int(query["cursor"])
                position = next(
                    (i for i, e in enumerate(self.events) if e["time_us"] >= cursor),
                    len(self.events),
                )
            else:
                position = len(self.events)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        sent = 0
        # The client's side: a close frame (or the connection going away) ends the wait.
        closed = asyncio.ensure_future(ws.receive())
        try:
            while not ws.closed and not closed.done():
                assert self._changed is not None
                changed = self._changed
                with self._lock:
                    pending = self.events[position:]
                position += len(pending)
                for event in pending:
                    if not self._wanted(event, collections):
                        continue
                    if drop is not None and sent >= drop:
                        # Abrupt: the transport goes away without a close frame.
                        request.transport.close()  # type: ignore[union-attr]
                        return ws
                    await ws.send_str(json.dumps(event))
                    sent += 1
                if not pending:
                    waiter = asyncio.ensure_future(changed.wait())
                    await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
        finally:
            closed.cancel()
            self._sockets.discard(ws)
        return ws

    async def _subscribe_v2(self, request: web.Request) -> web.StreamResponse:
        values = parse_qs(request.query_string)
        query = {k: v[0] for k, v in values.items()}

        def refuse(status: int, name: str, message: str) -> web.Response:
            return web.json_response({"error": name, "message": message}, status=status)

        if "wantedCollections" in values or "wantedDids" in values:
            return refuse(400, "InvalidRequest", "wantedCollections is the legacy parameter")
        collections, kinds = values.get("collections", []), values.get("kinds", [])
        info: tuple[str, str] | None = None
        with self._lock:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                self.connections.append(query)
                self.paths.append(request.path)
            position = len(self.events)
            if "cursor" in query:
                cursor = int(query["cursor"])
                floor = self.floor_seq
                if cursor < TIME_CURSOR_FROM:
                    if cursor < len(self.events) + 1 and cursor < floor:
                        return refuse(
                            400,
                            "CursorTooOld",
                            f"subscribe: cursor too old: cursor {cursor} below lookback floor "
                            f"{floor}; re-backfill from your last seq",
                        )
                    if cursor < len(self.events) + 1:
                        position = max(cursor, 1) - 1
                else:
                    position = next(
                        (i for i, e in enumerate(self.events) if e["time_us"] >= cursor),
                        len(self.events),
                    )
                    if position < floor - 1:
                        position = floor - 1
                        info = (
                            "OutdatedCursor",
                            "requested timestamp cursor below retention floor; starting at "
                            f"seq {floor}",
                        )
                if self._rewinds:
                    position = max(0, position - self._rewinds.pop(0))
            if request.headers.get("Upgrade", "").lower() != "websocket":
                return refuse(400, "InvalidRequest", "a websocket endpoint")
            drop = self._drops.pop(0) if self._drops else None
            error = self._errors.pop(0) if self._errors else None
            if self._advice:
                info = self._advice.pop(0)
        ws = web.WebSocketResponse(protocols=("xrpc.v1.json",))
        await ws.prepare(request)
        self.subprotocols.append(ws.ws_protocol)
        self._sockets.add(ws)
        if info is not None:
            frame = {"$type": "message", "payload": {"$type": f"{V2_NSID}#info"}}
            frame["payload"].update(name=info[0], message=info[1])
            await ws.send_str(json.dumps(frame))
        sent = 0
        closed = asyncio.ensure_future(ws.receive())
        try:
            while not ws.closed and not closed.done():
                assert self._changed is not None
                changed = self._changed
                with self._lock:
                    pending = self.events[position:]
                for event in pending:
                    if error is not None and sent >= error[0]:
                        break
                    position += 1
                    if kinds and event.get("kind") not in kinds:
                        continue
                    if not self._wanted(event, collections):
                        continue
                    if drop is not None and sent >= drop:
                        request.transport.close()  # type: ignore[union-attr]
                        return ws
                    if error is not None and sent >= error[0]:
                        break
                    await ws.send_str(json.dumps(v2_frame(event)))
                    sent += 1
                if error is not None and sent >= error[0]:
                    # A terminal error frame, then the close (the event-stream spec's rule).
                    frame = {"$type": "error", "error": error[1]}
                    if error[2]:
                        frame["message"] = error[2]
                    await ws.send_str(json.dumps(frame))
                    await ws.close()
                    return ws
                if not pending:
                    waiter = asyncio.ensure_future(changed.wait())
                    await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
        finally:
            closed.cancel()
            self._sockets.discard(ws)
        return ws


@contextmanager
def jetstream() -> Iterator[Jetstream]:
    with Jetstream() as server:
        yield server
