"""The connection layer under the Fetcher: httpx's transport API over aiohttp (the default) or
over httpcore's pool (`transport: httpx`).

Neither transport retries, decompresses, follows redirects nor keeps cookies: the Fetcher
(`listener.fetch.fetcher`) does all of that, identically for either. Given an `AddressGuard`,
both connect only to resolved addresses it allows.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from collections.abc import AsyncIterator, Iterable
from typing import Any, Literal

import aiohttp
import aiohttp.abc
import aiohttp.resolver
import httpcore
import httpx
import yarl

from listener.models import FetchLimits

from .guard import AddressGuard

__all__ = ["DEFAULT_TRANSPORT", "AiohttpTransport", "TransportKind", "make_transport"]

TransportKind = Literal["aiohttp", "httpx"]

# aiohttp under httpx's API: ~10x less client CPU per request than httpcore's pool at
# concurrency 50 (BASELINE.md "httpx"; bench/fetch_probe.py), and it passes the same tests.
DEFAULT_TRANSPORT: TransportKind = "aiohttp"


class _GuardedResolver(aiohttp.abc.AbstractResolver):
    """aiohttp's resolver, keeping only the addresses the guard allows: the connector connects
    to exactly what this returns (and caches it, per host)."""

    def __init__(self, guard: AddressGuard) -> None:
        self._guard = guard
        self._inner = aiohttp.resolver.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = set(self._guard.allowed(host, [r["host"] for r in results]))
        return [r for r in results if r["host"] in allowed]

    async def close(self) -> None:
        await self._inner.close()


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend resolving names itself, so that the guard sees the address
    and the connection goes to that same address (TLS still verifies the URL's host name)."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, guard: AddressGuard) -> None:
        self._inner = inner
        self._guard = guard

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"DNS lookup of {host} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        last: Exception | None = None
        for address in self._guard.allowed(host, addresses):
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"no address for {host}")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def make_transport(
    kind: TransportKind = DEFAULT_TRANSPORT,
    limits: FetchLimits | None = None,
    guard: AddressGuard | None = None,
) -> httpx.AsyncBaseTransport:
    """The connection layer under the shared client: "aiohttp" (default) or "httpx" (httpcore).

    Neither retries nor decompresses: the Fetcher does both, identically for either. With a
    `guard`, both connect only to addresses it allows, checked after resolving.
    """
    limits = limits or FetchLimits()
    if kind == "httpx":
        pool = httpx.Limits(
            max_connections=limits.concurrency,
            max_keepalive_connections=limits.concurrency,
            keepalive_expiry=30.0,
        )
        transport = httpx.AsyncHTTPTransport(
            verify=_ssl_context(), limits=pool, http1=True, http2=False, retries=0
        )
        if guard is not None:
            # httpx does not take a network backend; its pool (httpcore's) does.
            pool_impl = transport._pool
            pool_impl._network_backend = _GuardedBackend(pool_impl._network_backend, guard)
        return transport
    if kind == "aiohttp":
        return AiohttpTransport(limits.concurrency, guard=guard)
    raise ValueError(f"unknown transport {kind!r}: use 'aiohttp' or 'httpx'")


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx's transport interface over one aiohttp session: a lean bridge for the Fetcher.

    It neither decompresses, follows redirects nor keeps cookies (the Fetcher decodes and
    follows itself, and a poller has no session to keep). aiohttp errors are raised as the httpx
    errors they correspond to, with the aiohttp error as their cause.
    """

    def __init__(self, max_connections: int = 50, *, guard: AddressGuard | None = None) -> None:
        self._max_connections = max_connections
        self._guard = guard
        self._resolver: _GuardedResolver | None = None
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[Any, ...], aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop.
        self._resolver = _GuardedResolver(self._guard) if self._guard is not None else None
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            keepalive_timeout=30.0,
            # aiohttp's own verifying context, built when aiohttp is imported: a second one
            # (loading a CA bundle, ~0.1 s) would be paid by every poll, HTTPS or not.
            ssl=True,
            ttl_dns_cache=300,
            # IP literals skip the resolver: the Fetcher checks those itself.
            resolver=self._resolver,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            # aiohttp's default 8 KiB header limit rejects what httpx (and browsers) accept.
            max_line_size=65536,
            max_field_size=65536,
            auto_decompress=False,
            trust_env=False,
        )
        return self._session

    def _timeout(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        t = request.extensions.get("timeout") or {}
        key = (t.get("connect"), t.get("read"), t.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            # aiohttp's `connect` covers waiting for a pooled connection, as httpx's `pool` does.
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None, sock_connect=key[0], sock_read=key[1], connect=key[2]
            )
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        try:
            response = await session.request(
                request.method,
                yarl.URL(str(request.url), encoded=True),
                headers=headers,
                data=request.content or None,
                allow_redirects=False,
                timeout=self._timeout(request),
                server_hostname=request.extensions.get("sni_hostname"),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx_error(exc, request) from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_AiohttpBody(response, request),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:  # a resolver given to a connector is not closed by it
            await self._resolver.close()
            self._resolver = None


class _AiohttpBody(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx_error(exc, self._request) from exc

    async def aclose(self) -> None:
        # Returns the connection to the pool only when the body was read to its end.
        self._response.release()


def _as_httpx_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    kind: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        kind = httpx.ConnectTimeout
    elif isinstance(exc, aiohttp.SocketTimeoutError):
        kind = httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        kind = httpx.TimeoutException
    elif isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        kind = httpx.ProxyError
    elif isinstance(exc, aiohttp.NonHttpUrlClientError | aiohttp.InvalidUrlClientError):
        kind = httpx.UnsupportedProtocol
    elif isinstance(exc, aiohttp.ClientConnectorError):
        kind = httpx.ConnectError
    elif isinstance(exc, aiohttp.ClientPayloadError):
        kind = httpx.ReadError
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        kind = httpx.RemoteProtocolError
    else:
        kind = httpx.NetworkError
    return kind(str(exc) or type(exc).__name__, request=request)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~60-100 ms; one context serves every transport and connection.
    return httpx.create_ssl_context()
