"""The one HTTP client of the process: every source kind and alert channel fetches through here.

`Fetcher.get()` turns every network and HTTP problem into a `Response` with `error` set, so a
source kind never needs a try/except around I/O and one broken host never stops a poll. Around one
shared httpx transport (aiohttp's connection pool behind httpx's transport API by default, see
`listener.fetch.transport`; httpcore's on request) it adds what a polite, robust poller needs:
connect/read/total timeouts,
a global and a per-host concurrency limit, an optional minimum interval per host, a body-size cap
counted after decompression, a redirect cap with loop detection, conditional GET, and retries
with exponential backoff, jitter and `Retry-After`.

Details worth knowing:

- Bodies are decoded here from the raw stream (`listener.fetch.decoders`), not by httpx, so a
  gzip bomb is stopped at the cap and the aiohttp transport (which we ask not to decompress)
  and the httpx one behave identically.
- Redirects are followed here, not by httpx, so each hop is counted against the host's limits,
  loops are reported as loops, and credentials are not forwarded to another origin.
- Alert channels post through `Fetcher.http`, an `httpx.AsyncClient` over the same transport,
  with the same User-Agent and timeouts.
- Requests go straight to the transport as `httpx.Request`s, not through `httpx.AsyncClient`:
  with redirects, decoding and retries done here, what the client adds per request (merging
  defaults, a cookie jar re-parsing every response's headers) cost more CPU than the request
  itself on an unchanged poll (bench/fetch_probe.py). A poller keeps no cookies.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import random
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx

from listener import __version__
from listener.models import FetchLimits, Response, Validators
from listener.secrets import basic_credentials, mask_url
from listener.units import parse_retry_after

from .decoders import ACCEPT_ENCODING, BodyError, check_declared_size, read_body
from .guard import AddressGuard, BlockedAddress
from .transport import DEFAULT_TRANSPORT, TransportKind, make_transport

log = logging.getLogger(__name__)

__all__ = [
    "FEED_ACCEPT",
    "Fetcher",
    "PollBudget",
    "current_budget",
    "default_user_agent",
    "poll_budget",
]

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/json;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
PROJECT_URL = "https://github.com/listener-dev/listener"

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
# Request headers not forwarded when a redirect leaves the origin they were meant for.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


def default_user_agent() -> str:
    return f"listener/{__version__} (+{PROJECT_URL}; social listening monitor)"


# -- how long one poll may wait ------------------------------------------------------------------


class PollBudget:
    """The network time one source poll may spend (`fetch: poll_budget`), over all its requests:
    every attempt, the waits between them, redirects and the thread reads after the feed.

    Time spent waiting for a free connection slot or for a host's pacing interval is not
    counted: that is other sources' time, not this source's slowness.
    """

    __slots__ = ("seconds", "spent")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.spent = 0.0

    @property
    def remaining(self) -> float:
        return self.seconds - self.spent

    @property
    def exhausted(self) -> bool:
        return self.remaining <= 0

    def message(self) -> str:
        return f"the poll's time budget of {self.seconds:g} s is used up"


_BUDGET: ContextVar[PollBudget | None] = ContextVar("listener_poll_budget", default=None)


@contextlib.contextmanager
def poll_budget(seconds: float | None) -> Iterator[PollBudget | None]:
    """Requests made inside (in this task) share one `PollBudget` of `seconds`; None: no budget."""
    budget = PollBudget(seconds) if seconds is not None else None
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def current_budget() -> PollBudget | None:
    """The budget of the poll this code runs in, if any."""
    return _BUDGET.get()


class _Failure(Exception):
    """One exchange failed; `retryable` says whether trying again could help."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int = 0,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        final_url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status
        self.headers = headers or {}
        self.body = body
        self.final_url = final_url


@dataclass(frozen=True)
class _Exchange:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    url: str


class _Borrowed(httpx.AsyncBaseTransport):
    """The fetcher's transport lent to its `http` client: closing the client leaves it open."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        pass


class Fetcher:
    """A shared async HTTP client with the guarantees described in the module docstring.

    Use as `async with Fetcher(limits) as f: r = await f.get(url, validators=v)`. One Fetcher per
    process (per event loop): the connection pool, the limits and the host intervals are shared by
    everything that uses it.
    """

    def __init__(
        self,
        limits: FetchLimits | None = None,
        *,
        user_agent: str | None = None,
        transport: httpx.AsyncBaseTransport | TransportKind | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        guard: AddressGuard | None = None,
    ) -> None:
        self.limits = limits or FetchLimits()
        self.user_agent = user_agent or default_user_agent()
        # None: any address may be reached (a library user's choice); the service always has one
        # built from its config (`listener.runtime`). A transport passed in ready-made checks
        # names only if it was made with the same guard (`make_transport`).
        self.guard = guard
        if transport is None or isinstance(transport, str):
            transport = make_transport(transport or DEFAULT_TRANSPORT, self.limits, guard)
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        lim = self.limits
        self._transport = transport
        # httpx's transports take their timeouts per request, as this extension.
        self._timeouts = {
            "connect": lim.connect_timeout_s,
            "read": lim.read_timeout_s,
            "write": lim.read_timeout_s,
            "pool": lim.connect_timeout_s,
        }
        self._global = asyncio.Semaphore(lim.concurrency)
        self._http: httpx.AsyncClient | None = None
        self._host_slots: dict[str, asyncio.Semaphore] = {}
        self._intervals: dict[str, float] = {}
        self._next_start: dict[str, float] = {}

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()  # leaves the shared transport to the line below
            self._http = None
        await self._transport.aclose()

    @property
    def http(self) -> httpx.AsyncClient:
        """The client alert channels post through: this fetcher's own transport (its connection
        pool and address guard), its User-Agent and timeouts; redirects are never followed (a POST
        must not turn into a GET elsewhere). Built on first use, closed with the fetcher."""
        if self._http is None:
            t = self._timeouts
            self._http = httpx.AsyncClient(
                transport=_Borrowed(self._transport),
                headers={"User-Agent": self.user_agent},
                timeout=httpx.Timeout(
                    connect=t["connect"], read=t["read"], write=t["write"], pool=t["pool"]
                ),
                follow_redirects=False,
                trust_env=False,
            )
        return self._http

    def set_host_interval(self, host: str, seconds: float) -> None:
        """Space requests to `host` (a hostname, without port) at least `seconds` apart."""
        host = host.lower()
        if seconds > 0:
            self._intervals[host] = seconds
        else:
            self._intervals.pop(host, None)
            self._next_start.pop(host, None)

    async def get(
        self,
        url: str,
        *,
        validators: Validators | None = None,
        headers: Mapping[str, str] | None = None,
        accept: str | None = None,
    ) -> Response:
        """GET `url` as a feed reader would; never raises for network or HTTP problems."""
        return await self.request(
            "GET", url, validators=validators, headers=headers, accept=accept or FEED_ACCEPT
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        accept: str | None = None,
        validators: Validators | None = None,
        retry: bool | None = None,
        follow_redirects: bool = True,
    ) -> Response:
        """Any method, with the same guarantees as `get`.

        Non-idempotent methods (POST, PATCH) are not retried unless `retry=True`: a webhook
        that timed out may still have been delivered. `accept` defaults to `*/*`.
        """
        method = method.upper()
        started = self._clock()
        if retry is None:
            retry = method in _IDEMPOTENT
        max_attempts = 1 + (max(0, self.limits.retries) if retry else 0)
        request_headers = self._request_headers(headers, accept, validators)
        if params:
            # A bad URL is reported as such by the first attempt.
            with contextlib.suppress(httpx.InvalidURL, ValueError, TypeError):
                url = str(httpx.URL(url).copy_merge_params(dict(params)))
        body_kwargs = {"json": json, "data": data, "content": content}
        budget = _BUDGET.get()

        attempt = 0
        while True:
            if budget is not None and budget.exhausted:
                # Earlier requests of this poll used its time (a thread read after a slow feed).
                failure = _Failure(
                    f"not fetched: {budget.message()}", retryable=False, final_url=url
                )
                return self._finish(url, started, attempt, validators, failure)
            attempt += 1
            try:
                exchange = await self._follow(
                    method, url, request_headers, body_kwargs, follow_redirects
                )
            except _Failure as failure:
                outcome: _Exchange | _Failure = failure
            else:
                outcome = exchange
                if not _retryable_status(exchange.status):
                    return self._finish(url, started, attempt, validators, exchange)
            wait, message = self._plan_retry(outcome, attempt, max_attempts)
            if wait is not None and budget is not None and wait >= budget.remaining:
                if attempt > 1:
                    message += f" after {attempt} attempts"
                message += f"; no time left to try again in the poll's {budget.seconds:g} s budget"
                wait = None
            if wait is None:
                return self._finish(url, started, attempt, validators, outcome, message)
            if budget is not None:
                budget.spent += wait
            log.debug(
                "%s %s: %s; attempt %d of %d in %.2f s",
                method,
                _LogURL(url),
                message,
                attempt + 1,
                max_attempts,
                wait,
            )
            await self._sleep(wait)

    # -- one attempt: an exchange plus its redirects ---------------------------------------------

    async def _follow(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body_kwargs: dict[str, Any],
        follow_redirects: bool,
    ) -> _Exchange:
        try:
            current = httpx.URL(url)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise _Failure(f"invalid URL: {exc}", retryable=False) from exc
        visited = [str(current)]
        while True:
            exchange = await self._exchange(method, current, headers, body_kwargs)
            location = exchange.headers.get("location")
            if not (follow_redirects and exchange.status in _REDIRECTS and location):
                return exchange
            try:
                target = current.join(location.strip())
            except (httpx.InvalidURL, ValueError) as exc:
                raise _redirect_failure(exchange, f"bad redirect Location {location!r}") from exc
            if target.scheme not in ("http", "https"):
                raise _redirect_failure(exchange, f"redirect to unsupported URL {location!r}")
            if str(target) in visited:
                chain = " -> ".join(_redact(u) for u in [*visited, str(target)])
                raise _redirect_failure(exchange, f"redirect loop: {chain}")
            if len(visited) > self.limits.max_redirects:
                raise _redirect_failure(
                    exchange, f"too many redirects (more than {self.limits.max_redirects})"
                )
            if exchange.status in (301, 302, 303) and method not in ("GET", "HEAD"):
                # What browsers do, and what RFC 9110 allows: the body is not re-sent.
                method = "GET"
                body_kwargs = {}
                headers = _drop_headers(dict(headers), {"content-type", "content-length"})
            if _origin(target) != _origin(current):
                headers = _drop_headers(dict(headers), _CREDENTIAL_HEADERS)
            visited.append(str(target))
            current = target

    async def _exchange(
        self,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        body_kwargs: dict[str, Any],
    ) -> _Exchange:
        """One request and its whole body, under the host's and the global limits."""
        host = url.host.lower()
        if self.guard is not None:
            try:
                self.guard.check_literal(host)
            except BlockedAddress as exc:
                raise _Failure(str(exc), retryable=False, final_url=str(url)) from exc
        budget = _BUDGET.get()
        async with self._host_slot(host):
            await self._wait_host_interval(host)
            async with self._global:
                started = self._clock()
                limit = self.limits.total_timeout_s
                by_budget = budget is not None and budget.remaining < limit
                if budget is not None and by_budget:
                    limit = max(0.0, budget.remaining)
                deadline = asyncio.timeout(limit)
                try:
                    async with deadline:
                        exchange = await self._send(method, url, headers, body_kwargs)
                except _Failure as failure:
                    if failure.final_url is None:
                        failure.final_url = str(url)
                    log.debug(
                        "%s %s failed after %.0f ms: %s",
                        method,
                        _LogURL(url),
                        (self._clock() - started) * 1000,
                        failure.message,
                    )
                    raise
                except TimeoutError as exc:
                    retryable = True
                    if deadline.expired() and budget is not None and by_budget:
                        message, retryable = f"timed out: {budget.message()}", False
                    elif deadline.expired():
                        message = f"timed out after {self.limits.total_timeout_s:g} s (total)"
                    else:
                        message = self._describe(exc)
                    log.debug("%s %s: %s", method, _LogURL(url), message)
                    raise _Failure(message, retryable=retryable, final_url=str(url)) from exc
                except _NETWORK_ERRORS as exc:
                    message = self._describe(exc)
                    log.debug("%s %s: %s", method, _LogURL(url), message)
                    raise _Failure(
                        message, retryable=_retryable_exception(exc), final_url=str(url)
                    ) from exc
                finally:
                    if budget is not None:
                        budget.spent += self._clock() - started
                log.debug(
                    "%s %s -> %d, %d bytes in %.0f ms",
                    method,
                    _LogURL(url),
                    exchange.status,
                    len(exchange.body),
                    (self._clock() - started) * 1000,
                )
                return exchange

    async def _send(
        self,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        body_kwargs: dict[str, Any],
    ) -> _Exchange:
        if url.userinfo:
            # `https://user:pass@host/`: the credentials go in a header, never in the URL sent,
            # whichever transport sends it.
            if not any(k.lower() == "authorization" for k in headers):
                headers = {**headers, "Authorization": basic_credentials(url.userinfo.decode())}
            url = url.copy_with(username=None, password=None)
        request = httpx.Request(
            method, url, headers=headers, extensions={"timeout": self._timeouts}, **body_kwargs
        )
        response = await self._transport.handle_async_request(request)
        try:
            response_headers: dict[str, str] = {}
            for name, value in response.headers.multi_items():
                seen = response_headers.get(name)
                response_headers[name] = value if seen is None else f"{seen}, {value}"
            status = response.status_code
            cap = self.limits.max_body_bytes
            try:
                check_declared_size(response_headers, cap)
                if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                    body = b""
                else:
                    encoding = response_headers.get("content-encoding", "")
                    body = await read_body(response.aiter_raw(), encoding, cap)
            except BodyError as exc:
                raise _Failure(
                    str(exc), retryable=False, status=status, headers=response_headers
                ) from exc
        finally:
            await response.aclose()
        return _Exchange(status, response.reason_phrase, response_headers, body, str(url))

    # -- limits ----------------------------------------------------------------------------------

    def _host_slot(self, host: str) -> asyncio.Semaphore:
        slot = self._host_slots.get(host)
        if slot is None:
            slot = self._host_slots[host] = asyncio.Semaphore(
                max(1, self.limits.per_host_concurrency)
            )
        return slot

    async def _wait_host_interval(self, host: str) -> None:
        interval = self._intervals.get(host)
        if not interval:
            return
        # Reserve the next start time before sleeping, so concurrent callers queue up one
        # interval apart instead of all waking at once.
        now = self._clock()
        start = max(now, self._next_start.get(host, now))
        self._next_start[host] = start + interval
        if start > now:
            await self._sleep(start - now)

    # -- retries ---------------------------------------------------------------------------------

    def _plan_retry(
        self, outcome: _Exchange | _Failure, attempt: int, max_attempts: int
    ) -> tuple[float | None, str]:
        """(seconds to wait before the next attempt or None to give up, error message)."""
        if isinstance(outcome, _Failure):
            message, retryable = outcome.message, outcome.retryable
            status, headers = outcome.status, outcome.headers
        else:
            status, headers = outcome.status, outcome.headers
            message, retryable = _status_text(status, outcome.reason), True
        retry_after = None
        if status in _RETRY_AFTER_STATUSES and "retry-after" in headers:
            retry_after = parse_retry_after(
                headers["retry-after"], date=headers.get("date"), max_s=math.inf
            )
            if retry_after is not None:
                message += f" (Retry-After: {headers['retry-after']})"
                if retry_after > self.limits.max_retry_after_s:
                    return None, (
                        f"{message}; more than the {self.limits.max_retry_after_s:g} s we wait"
                    )
        if not retryable or attempt >= max_attempts:
            if attempt > 1:
                message += f" after {attempt} attempts"
            return None, message
        if retry_after is not None:
            return retry_after, message
        backoff = self.limits.backoff_s * 2 ** (attempt - 1)
        # Jitter in [0.5, 1.5) x: hosts that failed together do not retry together.
        backoff *= 0.5 + self._rng.random()
        return min(backoff, self.limits.max_retry_after_s), message

    # -- results ---------------------------------------------------------------------------------

    def _finish(
        self,
        url: str,
        started: float,
        attempts: int,
        sent: Validators | None,
        outcome: _Exchange | _Failure,
        error: str | None = None,
    ) -> Response:
        duration_ms = (self._clock() - started) * 1000
        if isinstance(outcome, _Failure):
            status, headers, body = outcome.status, outcome.headers, outcome.body
            final_url = outcome.final_url or url
            error = error or outcome.message
        else:
            status, headers, body, final_url = (
                outcome.status,
                outcome.headers,
                outcome.body,
                outcome.url,
            )
            if error is None and not (200 <= status < 300 or status == 304):
                error = _status_text(status, outcome.reason)
        etag, modified = headers.get("etag"), headers.get("last-modified")
        if error is not None:
            validators = sent or Validators()
        elif status == 304:
            old = sent or Validators()
            validators = Validators(etag or old.etag, modified or old.last_modified)
        else:
            validators = Validators(etag, modified)
        if error is not None:
            log.debug("fetch of %s failed: %s", _LogURL(url), error)
        return Response(
            url=url,
            final_url=final_url,
            status=status,
            headers=headers,
            body=body,
            validators=validators,
            duration_ms=duration_ms,
            attempts=attempts,
            error=error,
        )

    def _request_headers(
        self,
        extra: Mapping[str, str] | None,
        accept: str | None,
        validators: Validators | None,
    ) -> dict[str, str]:
        headers = {
            "User-Agent": self.user_agent,
            "Accept-Encoding": ACCEPT_ENCODING,
            "Accept": accept or "*/*",
        }
        if validators is not None:
            if validators.etag:
                headers["If-None-Match"] = validators.etag
            if validators.last_modified:
                headers["If-Modified-Since"] = validators.last_modified
        if extra:
            _drop_headers(headers, {name.lower() for name in extra})
            headers.update(extra)
        return headers

    def _describe(self, exc: BaseException) -> str:
        return _describe_exception(exc, self.limits)


# -- errors --------------------------------------------------------------------------------------

_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    httpx.HTTPError,
    httpx.InvalidURL,
    aiohttp.ClientError,
    OSError,
)


def _redirect_failure(exchange: _Exchange, message: str) -> _Failure:
    return _Failure(
        message,
        retryable=False,
        status=exchange.status,
        headers=exchange.headers,
        final_url=exchange.url,
    )


def _retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


def _retryable_exception(exc: BaseException) -> bool:
    for e in _chain(exc):
        if isinstance(
            e,
            httpx.UnsupportedProtocol
            | httpx.InvalidURL
            | aiohttp.InvalidURL
            | aiohttp.NonHttpUrlClientError
            | ssl.SSLCertVerificationError
            | aiohttp.ClientConnectorCertificateError
            | BlockedAddress,
        ):
            return False
    return True


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


_DISCONNECTED = "server closed the connection without answering"
_TRUNCATED = "connection closed before the whole body arrived"


def _describe_exception(exc: BaseException, limits: FetchLimits) -> str:
    """A short message a marketing person can act on, from the deepest cause we recognise.

    Causes are inspected rather than the outer type because the aiohttp transport maps several
    aiohttp errors to imprecise httpx ones (a refused connection arrives as ConnectTimeout).
    """
    connect = f"timed out after {limits.connect_timeout_s:g} s (connect)"
    read = f"timed out after {limits.read_timeout_s:g} s (read)"
    chain = list(_chain(exc))
    for e in chain:  # aiohttp wraps it as a DNS failure: found wherever it is in the chain
        if isinstance(e, BlockedAddress):
            return str(e)
    for e in chain:
        if isinstance(e, aiohttp.ConnectionTimeoutError):
            return connect
        if isinstance(e, aiohttp.SocketTimeoutError):
            return read
        if isinstance(e, ConnectionRefusedError) or (
            isinstance(e, OSError) and e.errno == errno.ECONNREFUSED
        ):
            return "connection refused"
        if isinstance(e, socket.gaierror | aiohttp.ClientConnectorDNSError):
            return "DNS lookup failed (no such host?)"
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"TLS certificate not accepted: {e.verify_message or e}"
        if isinstance(e, ssl.SSLError):
            return f"TLS error: {e.reason or e}"
        if isinstance(e, ConnectionResetError):
            return "connection reset by the server"
        if isinstance(e, aiohttp.ServerDisconnectedError):
            return _DISCONNECTED
        if isinstance(e, aiohttp.ClientPayloadError):
            if "ContentLengthError" in str(e) or "not completed" in str(e):
                return _TRUNCATED
            return f"broken response body: {_unquoted(_first_line(e))}"
        if isinstance(e, aiohttp.ClientResponseError):
            # aiohttp's parser errors (bad status line, oversized header) arrive as these.
            return _protocol_error(" ".join(e.message.split()))
    first = chain[0]
    if isinstance(first, httpx.ConnectTimeout):
        return connect
    if isinstance(first, httpx.ReadTimeout):
        return read
    if isinstance(first, httpx.WriteTimeout):
        return f"timed out after {limits.read_timeout_s:g} s (write)"
    if isinstance(first, httpx.PoolTimeout):
        return f"timed out after {limits.connect_timeout_s:g} s (waiting for a connection)"
    if isinstance(first, httpx.TimeoutException | TimeoutError):
        return "timed out"
    if isinstance(first, httpx.RemoteProtocolError):
        text = str(first)
        if "without sending a response" in text:
            return _DISCONNECTED
        if "without sending complete message body" in text:
            return _TRUNCATED
        return _protocol_error(str(first))
    if isinstance(first, httpx.UnsupportedProtocol):
        return f"unsupported URL: {_first_line(first)}"
    if isinstance(first, httpx.InvalidURL | aiohttp.InvalidURL):
        return f"invalid URL: {_first_line(first)}"
    if isinstance(first, httpx.ConnectError):
        return f"could not connect: {_first_line(first)}"
    if isinstance(first, httpx.ReadError):
        return f"connection failed while reading: {_unquoted(_first_line(first))}"
    return f"{type(first).__name__}: {_unquoted(_first_line(first))}"


# Where a parser's message starts quoting what the server sent: `: b'...'`, `bytearray(b'...')`.
_QUOTED = re.compile(r"""[\s:]*(?:bytearray\()?b?['"]""")


def _unquoted(text: str) -> str:
    """`text` up to where it quotes the server's bytes: an error never repeats a response
    (it is stored, shown by `status` and Datasette, and sent in source-health alerts)."""
    return _QUOTED.split(text, maxsplit=1)[0].strip() or "unreadable answer"


def _protocol_error(detail: str) -> str:
    return f"server broke the HTTP protocol: {_unquoted(_first_line(detail))}"


def _first_line(exc: BaseException | str) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if not text:
        return type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


# A reason phrase is the server's to choose: only this much of it is kept.
_REASON_MAX = 40


def _status_text(status: int, reason: str) -> str:
    reason = " ".join("".join(c if c.isprintable() else " " for c in reason).split())
    if len(reason) > _REASON_MAX:
        reason = reason[: _REASON_MAX - 3] + "..."
    return f"HTTP {status} {reason}".rstrip()


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _drop_headers(headers: dict[str, str], names: Collection[str]) -> dict[str, str]:
    """`headers` without the ones named (lower case), whatever case they were given in."""
    for key in [k for k in headers if k.lower() in names]:
        del headers[key]
    return headers


class _LogURL:
    """A URL redacted only if a log record is actually written."""

    __slots__ = ("url",)

    def __init__(self, url: str | httpx.URL) -> None:
        self.url = url

    def __str__(self) -> str:
        return _redact(str(self.url))


def _redact(url: str) -> str:
    """The URL for logs and messages: no password, no values of secret-looking parameters."""
    return mask_url(url)
