"""A loopback Jetstream for tests: aiohttp's websocket server on 127.0.0.1 in its own thread.

It behaves like Jetstream's legacy `/subscribe`: events are published into a log, each given a
strictly increasing `time_us`; a client with `?cursor=N` is replayed every event with
`time_us >= N`, then tailed live; a client without a cursor starts at the live tip (only events
published after it connected). `wantedCollections` filters commit events by collection
(identity and account events pass). `drop_after(n)` makes the next connection close after
sending n events (a disconnect mid-stream); every connection's query is recorded.

Events have the recorded shape of Jetstream messages (`post`, `delete`, `like`, `identity`).
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
        self._lock = threading.Lock()
        self._drops: list[int] = []
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
                stamped = {**event, "time_us": max(last + 1, int(time.time() * 1_000_000))}
                self.events.append(stamped)
                out.append(stamped["time_us"])
        self._loop.call_soon_threadsafe(self._wake)
        return out

    def drop_after(self, n: int) -> None:
        """The next connection closes (abruptly, no close frame) after sending n events."""
        with self._lock:
            self._drops.append(n)

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


@contextmanager
def jetstream() -> Iterator[Jetstream]:
    with Jetstream() as server:
        yield server
