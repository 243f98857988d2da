"""A real HTTP/1.1 server on 127.0.0.1 for tests: feeds, APIs and webhook receivers.

Routes are registered with `add()`; each can answer with conditional GET (ETag / Last-Modified),
gzip, redirects, delays, a number of failures before succeeding, Retry-After, raw pre-encoded
bodies, or a callable for anything else. Every request is recorded (method, path with query,
lower-case headers, body) so a test can assert on what a client actually sent.

Stdlib only (`http.server.ThreadingHTTPServer`), one daemon thread per connection, keep-alive with
Content-Length. `stop()` is fast: the accept loop wakes on a socket pair instead of polling, and
open keep-alive connections are shut down rather than waited for.
"""

from __future__ import annotations

import collections
import contextlib
import email.utils
import gzip as gzip_module
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

__all__ = ["LoopbackServer", "RequestInfo", "Route", "http_date", "unused_port_url"]

_REDIRECT_STATUSES = (301, 302, 303, 307, 308)
# Errors that only mean "the client went away", which clients under test do on purpose
# (size caps, timeouts, cancelled tasks): not worth a traceback.
_DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


@dataclass(frozen=True)
class RequestInfo:
    method: str
    path: str  # as requested, including the query string
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def route(self) -> str:
        """The path without the query string: what routes are matched on."""
        return urlsplit(self.path).path


Handler = Callable[[RequestInfo], tuple[int, dict[str, str], bytes]]


@dataclass
class Route:
    body: bytes
    status: int = 200
    content_type: str | None = "application/rss+xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    gzip: bool = False
    delay: float = 0.0
    redirect_to: str | None = None
    retry_after: str | None = None
    fail_times: int = 0
    fail_status: int = 500
    raw_body: bool = False
    handler: Handler | None = None
    chunk_delay: float = 0.0
    chunk_size: int = 1024
    served: int = 0  # requests seen by this route, for fail_times


def unused_port_url(path: str = "/") -> str:
    """A loopback URL on a port nobody listens on: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The default backlog of 5 makes a burst of 50 concurrent connects stall on SYN retries.
    request_queue_size = 256

    owner: LoopbackServer

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        self.owner._track(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        self.owner._untrack(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback to stderr by default; log instead, quietly for
        # disconnects, which tests cause on purpose.
        log.debug("loopback server: error while handling %s", client_address, exc_info=True)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    # An idle keep-alive connection is closed after this long so its thread ends.
    timeout = 30
    # Headers and body go out in two writes; with Nagle on, a keep-alive client waits ~40 ms for
    # the delayed ACK on every request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("loopback server: " + format, *args)

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # Trailer section ends with an empty line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        owner = self.server.owner
        try:
            info = RequestInfo(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self._read_body(),
            )
            owner._enter(info)
            try:
                status, headers, body, chunk_delay, chunk_size = owner._respond(info)
            finally:
                owner._leave()
            self._send(info, status, headers, body, chunk_delay, chunk_size)
        except _DISCONNECTS:
            self.close_connection = True

    def _send(
        self,
        info: RequestInfo,
        status: int,
        headers: dict[str, str],
        body: bytes,
        chunk_delay: float,
        chunk_size: int,
    ) -> None:
        self.send_response(status)
        no_body_status = status in (204, 304) or 100 <= status < 200
        names = {k.lower() for k in headers}
        for k, v in headers.items():
            self.send_header(k, v)
        if not no_body_status and "content-length" not in names:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if info.method == "HEAD" or no_body_status:
            return
        if chunk_delay <= 0:
            self.wfile.write(body)
            return
        stopping = self.server.owner._stopping
        for i in range(0, len(body), chunk_size):
            self.wfile.write(body[i : i + chunk_size])
            self.wfile.flush()
            if stopping.wait(chunk_delay):
                self.close_connection = True
                return


class LoopbackServer:
    """A started-on-demand HTTP server on 127.0.0.1:<free port>; a context manager.

    `host` puts it on another loopback address (127.0.0.2: "an internal server" that a config
    on 127.0.0.1 does not name)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._lock = threading.Lock()
        self._routes: dict[str, Route] = {}
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._in_flight = 0
        self.max_in_flight = 0  # most requests being answered at once, over all paths
        self.hits: collections.Counter[str] = collections.Counter()
        self.requests: list[RequestInfo] = []
        self.base_url = ""

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> LoopbackServer:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self.host, 0), _RequestHandler)
        server.owner = self
        self._server = server
        self._wake_r, self._wake_w = socket.socketpair()
        host, port = server.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._accept_loop, name="loopback-httpd", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        assert self._wake_w is not None
        self._wake_w.send(b"x")
        if thread is not None:
            thread.join(5)
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            # Wake handler threads blocked reading an idle keep-alive connection.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._server = self._thread = self._wake_r = self._wake_w = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        server, wake = self._server, self._wake_r
        assert server is not None and wake is not None
        with selectors.DefaultSelector() as sel:
            sel.register(server, selectors.EVENT_READ)
            sel.register(wake, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in sel.select():
                    if key.fileobj is wake:
                        return
                    server._handle_request_noblock()

    # -- routes ----------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        if not path.startswith("/"):
            path = "/" + path
        return self.base_url + path

    def add(
        self,
        path: str,
        body: bytes | str = b"",
        *,
        status: int = 200,
        content_type: str | None = "application/rss+xml; charset=utf-8",
        headers: dict[str, str] | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        gzip: bool = False,
        delay: float = 0.0,
        redirect_to: str | None = None,
        retry_after: str | None = None,
        fail_times: int = 0,
        fail_status: int = 500,
        raw_body: bool = False,
        handler: Handler | None = None,
        chunk_delay: float = 0.0,
        chunk_size: int = 1024,
    ) -> None:
        """Serve `path` (matched without its query string); replaces an earlier route.

        - etag / last_modified: sent, and a matching If-None-Match / If-Modified-Since gets 304.
        - gzip: the body is gzipped when the client accepts gzip; with raw_body=True the body is
          taken as already gzipped and sent as-is with Content-Encoding: gzip (gzip bombs).
        - redirect_to: answer `status` (302 unless status is a redirect code) with Location.
        - fail_times: the first N requests get fail_status (plus Retry-After if retry_after).
        - retry_after: sent with the failures, or, without fail_times, on the answer itself
          (e.g. status=429, retry_after="2").
        - handler: called with the RequestInfo; returns (status, headers, body). delay and
          fail_times still apply first.
        - chunk_delay: send the body chunk_size bytes at a time with this pause between (a slow
          trickle that keeps a read timeout happy but not a total one).
        """
        if isinstance(body, str):
            body = body.encode("utf-8")
        route = Route(
            body=body,
            status=status,
            content_type=content_type,
            headers=dict(headers or {}),
            etag=etag,
            last_modified=last_modified,
            gzip=gzip,
            delay=delay,
            redirect_to=redirect_to,
            retry_after=retry_after,
            fail_times=fail_times,
            fail_status=fail_status,
            raw_body=raw_body,
            handler=handler,
            chunk_delay=chunk_delay,
            chunk_size=max(1, chunk_size),
        )
        with self._lock:
            self._routes[_route_key(path)] = route

    def remove(self, path: str) -> None:
        with self._lock:
            self._routes.pop(_route_key(path), None)

    def requests_for(self, path: str) -> list[RequestInfo]:
        key = _route_key(path)
        with self._lock:
            return [r for r in self.requests if r.route == key]

    def reset(self) -> None:
        """Forget recorded requests and hits, and re-arm every route's fail_times."""
        with self._lock:
            self.requests.clear()
            self.hits.clear()
            self.max_in_flight = 0
            for route in self._routes.values():
                route.served = 0

    # -- internals (called from handler threads) -------------------------------------------------

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)

    def _enter(self, info: RequestInfo) -> None:
        with self._lock:
            self.requests.append(info)
            self.hits[info.route] += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _respond(self, info: RequestInfo) -> tuple[int, dict[str, str], bytes, float, int]:
        with self._lock:
            route = self._routes.get(info.route)
            if route is not None:
                route.served += 1
                served = route.served
        if route is None:
            return 404, {"Content-Type": "text/plain; charset=utf-8"}, b"not found\n", 0.0, 1024
        if route.delay > 0 and self._stopping.wait(route.delay):
            return 503, {"Connection": "close"}, b"", 0.0, 1024

        if served <= route.fail_times:
            headers = {"Content-Type": "text/plain; charset=utf-8"}
            if route.retry_after is not None:
                headers["Retry-After"] = route.retry_after
            return route.fail_status, headers, f"failure {served}\n".encode(), 0.0, 1024

        if route.handler is not None:
            status, headers, body = route.handler(info)
            return status, dict(headers), body, route.chunk_delay, route.chunk_size

        headers = {}
        if route.content_type:
            headers["Content-Type"] = route.content_type
        if route.retry_after is not None and route.fail_times == 0:
            headers["Retry-After"] = route.retry_after

        if route.redirect_to is not None:
            status = route.status if route.status in _REDIRECT_STATUSES else 302
            headers["Location"] = route.redirect_to
            headers.update(route.headers)
            return status, headers, b"", 0.0, 1024

        if route.etag is not None:
            headers["ETag"] = route.etag
        if route.last_modified is not None:
            headers["Last-Modified"] = route.last_modified
        if info.method in ("GET", "HEAD") and _not_modified(route, info.headers):
            headers.pop("Content-Type", None)
            headers.update(route.headers)
            return 304, headers, b"", 0.0, 1024

        body = route.body
        if route.gzip:
            if route.raw_body:
                headers["Content-Encoding"] = "gzip"
            elif "gzip" in info.headers.get("accept-encoding", "").lower():
                body = gzip_module.compress(body, mtime=0)
                headers["Content-Encoding"] = "gzip"
            headers["Vary"] = "Accept-Encoding"
        headers.update(route.headers)
        return route.status, headers, body, route.chunk_delay, route.chunk_size


def _route_key(path: str) -> str:
    key = urlsplit(path).path or "/"
    return key if key.startswith("/") else "/" + key


def _not_modified(route: Route, request_headers: dict[str, str]) -> bool:
    inm = request_headers.get("if-none-match")
    if inm is not None:
        # RFC 9110: If-Modified-Since is ignored when If-None-Match is present.
        if route.etag is None:
            return False
        tags = [t.strip() for t in inm.split(",")]
        weak = route.etag.removeprefix("W/")
        return "*" in tags or any(t.removeprefix("W/") == weak for t in tags)
    ims = request_headers.get("if-modified-since")
    if ims is None or route.last_modified is None:
        return False
    if ims == route.last_modified:
        return True
    try:
        return email.utils.parsedate_to_datetime(
            route.last_modified
        ) <= email.utils.parsedate_to_datetime(ims)
    except (TypeError, ValueError):
        return False


def http_date(ts: float | None = None) -> str:
    """An RFC 9110 HTTP-date for `ts` (default now), for Last-Modified and Retry-After."""
    return email.utils.formatdate(time.time() if ts is None else ts, usegmt=True)
