"""Fetcher against a real loopback HTTP server, over both transports (aiohttp and httpcore)."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import json
import logging
import random
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from httpd import LoopbackServer, RequestInfo, http_date, unused_port_url

from listener.fetch import (
    FEED_ACCEPT,
    AddressGuard,
    Fetcher,
    is_internal,
    make_transport,
    poll_budget,
)
from listener.models import FetchLimits, Response, Validators

FEED = "<?xml version='1.0'?><rss version='2.0'><channel><title>Acme news</title></channel></rss>"
LAST_MODIFIED = "Wed, 01 Jan 2025 10:00:00 GMT"


class FakeTime:
    """An injected clock that only moves when the Fetcher sleeps: waits are recorded, not spent."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(params=["aiohttp", "httpx"])
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


def run(
    transport: str,
    body: Callable[[Fetcher], Awaitable[Any]],
    limits: FetchLimits | None = None,
    fake: FakeTime | None = None,
    **kwargs: Any,
) -> Any:
    async def main() -> Any:
        timing: dict[str, Any] = {}
        if fake is not None:
            timing = {"sleep": fake.sleep, "clock": fake.clock}
        async with Fetcher(limits, transport=transport, **timing, **kwargs) as fetcher:
            return await body(fetcher)

    return asyncio.run(main())


def get(transport: str, url: str, limits: FetchLimits | None = None, **kwargs: Any) -> Response:
    fake = kwargs.pop("fake", None) or FakeTime()
    return run(transport, lambda f: f.get(url, **kwargs), limits, fake)


# -- conditional GET ------------------------------------------------------------------------------


def test_etag_then_304_carries_validators(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/feed", FEED, etag='"v1"', last_modified=LAST_MODIFIED)

    async def twice(f: Fetcher) -> tuple[Response, Response]:
        first = await f.get(httpd.url("/feed"))
        second = await f.get(httpd.url("/feed"), validators=first.validators)
        return first, second

    first, second = run(transport, twice)
    assert first.ok and first.status == 200 and first.body == FEED.encode()
    assert first.validators == Validators(etag='"v1"', last_modified=LAST_MODIFIED)
    assert second.ok and second.not_modified and second.body == b""
    assert second.validators == first.validators
    sent = httpd.requests_for("/feed")[1].headers
    assert sent["if-none-match"] == '"v1"'
    assert sent["if-modified-since"] == LAST_MODIFIED


def test_last_modified_only(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/feed", FEED, last_modified=LAST_MODIFIED)
    first = get(transport, httpd.url("/feed"))
    assert first.validators == Validators(etag=None, last_modified=LAST_MODIFIED)
    second = get(transport, httpd.url("/feed"), validators=first.validators)
    assert second.not_modified and second.ok
    assert second.validators == first.validators
    assert "if-none-match" not in httpd.requests[1].headers


def test_304_without_validators_keeps_the_old_ones(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/feed", handler=lambda req: (304, {}, b""))
    old = Validators(etag='"abc"', last_modified=LAST_MODIFIED)
    r = get(transport, httpd.url("/feed"), validators=old)
    assert r.not_modified and r.validators == old


def test_changed_feed_replaces_validators(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/feed", FEED, etag='"v2"')
    r = get(transport, httpd.url("/feed"), validators=Validators(etag='"v1"'))
    assert r.status == 200 and r.body == FEED.encode()
    assert r.validators == Validators(etag='"v2"', last_modified=None)


# -- encodings ------------------------------------------------------------------------------------


def test_gzip_body_is_decoded(httpd: LoopbackServer, transport: str) -> None:
    body = FEED * 200
    httpd.add("/feed", body, gzip=True)
    r = get(transport, httpd.url("/feed"))
    assert r.ok and r.body == body.encode()
    assert r.headers["content-encoding"] == "gzip"
    assert "gzip" in httpd.requests[0].headers["accept-encoding"]


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib", "raw"])
def test_deflate_body_is_decoded(httpd: LoopbackServer, transport: str, wbits: int) -> None:
    z = zlib.compressobj(wbits=wbits)
    payload = z.compress(FEED.encode() * 50) + z.flush()
    httpd.add("/feed", handler=lambda req: (200, {"Content-Encoding": "deflate"}, payload))
    r = get(transport, httpd.url("/feed"))
    assert r.ok and r.body == FEED.encode() * 50


def test_multi_member_gzip(httpd: LoopbackServer, transport: str) -> None:
    payload = gzip.compress(b"<rss>") + gzip.compress(b"</rss>")
    httpd.add("/feed", payload, gzip=True, raw_body=True)
    assert get(transport, httpd.url("/feed")).body == b"<rss></rss>"


def test_corrupt_gzip_is_an_error(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/feed", b"this is not gzip at all", gzip=True, raw_body=True)
    r = get(transport, httpd.url("/feed"))
    assert not r.ok and "could not decode gzip" in (r.error or "")
    assert httpd.hits["/feed"] == 1


# -- redirects ------------------------------------------------------------------------------------


def test_redirect_sets_final_url(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/old", status=301, redirect_to="/new")
    httpd.add("/new", FEED)
    r = get(transport, httpd.url("/old"))
    assert r.ok and r.status == 200 and r.body == FEED.encode()
    assert r.url == httpd.url("/old") and r.final_url == httpd.url("/new")


def test_redirect_loop_is_reported(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/a", status=302, redirect_to="/b")
    httpd.add("/b", status=302, redirect_to="/a")
    r = get(transport, httpd.url("/a"))
    assert not r.ok and "redirect loop" in (r.error or "")
    assert httpd.hits["/a"] == 1 and httpd.hits["/b"] == 1  # not retried


def test_too_many_redirects(httpd: LoopbackServer, transport: str) -> None:
    for i in range(8):
        httpd.add(f"/r{i}", status=307, redirect_to=f"/r{i + 1}")
    httpd.add("/r8", FEED)
    r = get(transport, httpd.url("/r0"), FetchLimits(max_redirects=5))
    assert not r.ok and "too many redirects (more than 5)" in (r.error or "")
    assert httpd.hits["/r6"] == 0
    assert get(transport, httpd.url("/r3"), FetchLimits(max_redirects=5)).ok


def test_credentials_not_forwarded_to_another_origin(httpd: LoopbackServer, transport: str) -> None:
    with LoopbackServer() as other:
        other.add("/feed", FEED)
        httpd.add("/feed", status=302, redirect_to=other.url("/feed"))
        r = get(transport, httpd.url("/feed"), headers={"Authorization": "Bearer s3cret"})
        assert r.ok and r.final_url == other.url("/feed")
        assert httpd.requests[0].headers["authorization"] == "Bearer s3cret"
        assert "authorization" not in other.requests[0].headers


# -- statuses and retries -------------------------------------------------------------------------


def test_404_is_an_error_without_retry(httpd: LoopbackServer, transport: str) -> None:
    r = get(transport, httpd.url("/missing"))
    assert not r.ok and r.status == 404 and r.error == "HTTP 404 Not Found"
    assert r.attempts == 1 and httpd.hits["/missing"] == 1


def test_500_twice_then_ok_after_backoff(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/feed", FEED, fail_times=2)
    fake = FakeTime()
    r = get(transport, httpd.url("/feed"), FetchLimits(retries=2, backoff_s=0.5), fake=fake)
    assert r.ok and r.body == FEED.encode() and r.attempts == 3
    assert httpd.hits["/feed"] == 3
    # Exponential backoff with jitter in [0.5, 1.5) x: 0.5 s then 1 s nominal.
    assert len(fake.sleeps) == 2
    assert 0.25 <= fake.sleeps[0] < 0.75 and 0.5 <= fake.sleeps[1] < 1.5


def test_500_every_time_gives_up(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/feed", FEED, fail_times=99)
    r = get(transport, httpd.url("/feed"), FetchLimits(retries=2))
    assert not r.ok and r.status == 500
    assert r.error == "HTTP 500 Internal Server Error after 3 attempts"
    assert httpd.hits["/feed"] == 3


def test_429_retry_after_seconds_is_honoured(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/feed", FEED, fail_times=1, fail_status=429, retry_after="2")
    fake = FakeTime()
    r = get(transport, httpd.url("/feed"), fake=fake)
    assert r.ok and r.attempts == 2
    assert fake.sleeps == [2.0]
    assert r.duration_ms == 2000.0  # measured with the injected clock


def test_an_unusable_retry_after_falls_back_to_the_backoff(
    httpd: LoopbackServer, transport: str
) -> None:
    # Negative: not "retry at once", which would hammer a host that is already struggling.
    httpd.add("/feed", FEED, fail_times=1, fail_status=503, retry_after="-5")
    fake = FakeTime()
    r = get(transport, httpd.url("/feed"), FetchLimits(retries=1, backoff_s=0.5), fake=fake)
    assert r.ok and r.attempts == 2
    assert len(fake.sleeps) == 1 and 0.25 <= fake.sleeps[0] < 0.75


def test_503_retry_after_http_date_is_honoured(httpd: LoopbackServer, transport: str) -> None:
    calls = []

    def handler(req: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        calls.append(req)
        if len(calls) == 1:
            # The server's own Date header is the reference for the wait.
            return 503, {"Retry-After": http_date(_server_now() + 3)}, b"busy"
        return 200, {}, FEED.encode()

    httpd.add("/feed", handler=handler)
    fake = FakeTime()
    r = get(transport, httpd.url("/feed"), fake=fake)
    assert r.ok and len(fake.sleeps) == 1
    assert 2.0 <= fake.sleeps[0] <= 3.0  # whole seconds, so a second may tick in between


def _server_now() -> float:
    import time

    return time.time()


def test_retry_after_beyond_cap_is_not_waited(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/feed", "slow down", status=429, retry_after="3600")
    fake = FakeTime()
    r = get(transport, httpd.url("/feed"), FetchLimits(max_retry_after_s=120), fake=fake)
    assert not r.ok and r.status == 429
    assert "3600" in (r.error or "") and r.headers["retry-after"] == "3600"
    assert fake.sleeps == [] and httpd.hits["/feed"] == 1


def test_post_is_not_retried_and_body_is_sent(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/hook", fail_times=5)

    async def post(f: Fetcher) -> Response:
        return await f.request("POST", httpd.url("/hook"), json={"text": "Acme is down"})

    r = run(transport, post, fake=FakeTime())
    assert not r.ok and r.status == 500 and r.attempts == 1
    assert httpd.hits["/hook"] == 1
    sent = httpd.requests[0]
    assert sent.method == "POST" and json.loads(sent.body) == {"text": "Acme is down"}
    assert sent.headers["content-type"] == "application/json"


def test_post_answer_body_is_returned(httpd: LoopbackServer, transport: str) -> None:
    def echo(req: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        return (
            201,
            {"Content-Type": "application/json"},
            json.dumps({"got": len(req.body)}).encode(),
        )

    httpd.add("/api", handler=echo)

    async def post(f: Fetcher) -> Response:
        return await f.request("POST", httpd.url("/api"), content=b"12345", accept="text/plain")

    r = run(transport, post)
    assert r.ok and r.status == 201 and json.loads(r.body) == {"got": 5}
    assert r.content_type == "application/json"
    assert httpd.requests[0].headers["accept"] == "text/plain"


def test_head_request(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/feed", FEED)
    r = run(transport, lambda f: f.request("HEAD", httpd.url("/feed")))
    assert r.ok and r.body == b"" and r.headers["content-length"] == str(len(FEED))


# -- timeouts, sizes, connection errors -----------------------------------------------------------


def test_slow_host_times_out_on_read(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/slow", FEED, delay=2.0)
    r = get(transport, httpd.url("/slow"), FetchLimits(read_timeout_s=0.3, retries=0))
    assert not r.ok and r.status == 0
    assert r.error == "timed out after 0.3 s (read)"


def test_trickling_host_hits_the_total_timeout(httpd: LoopbackServer, transport: str) -> None:
    # Each piece comes well within the read timeout, but the whole body takes ~2 s.
    httpd.add("/trickle", "x" * 2000, chunk_delay=0.1, chunk_size=100)
    limits = FetchLimits(read_timeout_s=1.0, total_timeout_s=0.4, retries=0)
    r = get(transport, httpd.url("/trickle"), limits)
    assert not r.ok and r.error == "timed out after 0.4 s (total)"


def test_timeout_is_retried(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/slow", FEED, delay=2.0)
    r = get(transport, httpd.url("/slow"), FetchLimits(read_timeout_s=0.2, retries=1))
    assert not r.ok and r.attempts == 2 and httpd.hits["/slow"] == 2
    assert r.error == "timed out after 0.2 s (read) after 2 attempts"


def test_declared_oversized_body_is_refused(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/big", b"x" * 5000)
    r = get(transport, httpd.url("/big"), FetchLimits(max_body_bytes=1024))
    assert not r.ok and r.error == "body larger than 1 KiB (Content-Length 5000)"
    assert r.body == b"" and httpd.hits["/big"] == 1


def test_oversized_decoded_body_is_refused(httpd: LoopbackServer, transport: str) -> None:
    # Small on the wire, too big once inflated: only counting decoded bytes catches it.
    httpd.add("/big", b"x" * 100_000, gzip=True)
    r = get(transport, httpd.url("/big"), FetchLimits(max_body_bytes=50_000))
    assert int(r.headers["content-length"]) < 50_000
    assert not r.ok and r.error == "body larger than 48.8 KiB"


def test_gzip_bomb_stops_early_with_little_memory(httpd: LoopbackServer, transport: str) -> None:
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 100_000
    httpd.add("/bomb", bomb, gzip=True, raw_body=True)
    tracemalloc.start()
    try:
        r = get(transport, httpd.url("/bomb"), FetchLimits(max_body_bytes=1024 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not r.ok and r.error == "body larger than 1 MiB"
    assert peak < 8 * 1024 * 1024  # the cap plus small pieces, never the 50 MB


def test_connection_refused(transport: str) -> None:
    fake = FakeTime()
    r = get(transport, unused_port_url("/feed"), FetchLimits(retries=1), fake=fake)
    assert not r.ok and r.status == 0
    assert r.error == "connection refused after 2 attempts"
    assert len(fake.sleeps) == 1


RAW_ANSWERS = {
    "hangup": (b"", "server closed the connection without answering"),
    "truncated": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n<rss>",
        "connection closed before the whole body arrived",
    ),
    "garbage": (b"garbage\r\n\r\n", "server broke the HTTP protocol"),
}


@pytest.mark.parametrize("case", sorted(RAW_ANSWERS))
def test_broken_servers_give_clear_errors(transport: str, case: str) -> None:
    answer, expected = RAW_ANSWERS[case]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    async def body(f: Fetcher) -> Response:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await f.get(f"http://127.0.0.1:{port}/feed")

    r = run(transport, body, FetchLimits(retries=1), FakeTime())
    assert not r.ok and r.status == 0 and r.attempts == 2
    assert (r.error or "").startswith(expected)
    assert (r.error or "").endswith("after 2 attempts")


def test_bad_urls_do_not_raise(transport: str) -> None:
    r = get(transport, "ftp://example.invalid/feed")
    assert not r.ok and "unsupported URL" in (r.error or "") and r.attempts == 1
    r = get(transport, "not a url")
    assert not r.ok and r.error


# -- headers --------------------------------------------------------------------------------------


def test_user_agent_and_accept_sent(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/feed", FEED, headers={"X-Powered-By": "Acme"})
    r = get(transport, httpd.url("/feed"))
    sent = httpd.requests[0].headers
    assert sent["user-agent"].startswith("listener/")
    assert (
        "(+https://github.com/listener-dev/listener; social listening monitor)"
        in sent["user-agent"]
    )
    assert sent["accept"] == FEED_ACCEPT
    assert sent["accept-encoding"] == "gzip, deflate"
    assert r.headers["x-powered-by"] == "Acme"  # lower-case names
    assert r.content_type == "application/rss+xml; charset=utf-8"


def test_user_agent_override_and_extra_headers(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/api", "{}", content_type="application/json")

    async def body(f: Fetcher) -> Response:
        return await f.get(
            httpd.url("/api?q=acme"), accept="application/json", headers={"X-Api-Key": "k"}
        )

    r = run(transport, body, user_agent="acme-monitor/1.0")
    sent = httpd.requests[0]
    assert r.ok and sent.path == "/api?q=acme"
    assert sent.headers["user-agent"] == "acme-monitor/1.0"
    assert sent.headers["accept"] == "application/json" and sent.headers["x-api-key"] == "k"


def test_logs_hold_no_secrets(
    httpd: LoopbackServer, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    httpd.add("/api", "secret body text")
    caplog.set_level(logging.DEBUG, logger="listener.fetch")
    url = httpd.url("/api?token=t0psecret&q=acme")
    r = get(transport, url, headers={"Authorization": "Bearer hunter2"})
    assert r.ok
    assert "/api" in caplog.text and "q=acme" in caplog.text
    for secret in ("t0psecret", "hunter2", "secret body text"):
        assert secret not in caplog.text


# -- limits ---------------------------------------------------------------------------------------


def test_per_host_concurrency_is_respected(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/feed", FEED, delay=0.1)
    limits = FetchLimits(per_host_concurrency=3, concurrency=32)

    async def many(f: Fetcher) -> list[Response]:
        return await asyncio.gather(*(f.get(httpd.url(f"/feed?n={i}")) for i in range(7)))

    responses = run(transport, many, limits)
    assert all(r.ok for r in responses)
    assert httpd.hits["/feed"] == 7
    assert 1 <= httpd.max_in_flight <= 3


def test_global_concurrency_is_respected(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/feed", FEED, delay=0.1)
    limits = FetchLimits(per_host_concurrency=8, concurrency=2)

    async def many(f: Fetcher) -> list[Response]:
        return await asyncio.gather(*(f.get(httpd.url("/feed")) for _ in range(5)))

    assert all(r.ok for r in run(transport, many, limits))
    assert 1 <= httpd.max_in_flight <= 2


def test_per_host_interval_spaces_requests(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/feed", FEED)
    fake = FakeTime()

    async def body(f: Fetcher) -> list[Response]:
        f.set_host_interval("127.0.0.1", 6.0)
        first = [await f.get(httpd.url("/feed")) for _ in range(3)]
        # Concurrent callers queue up one interval apart too.
        together = await asyncio.gather(*(f.get(httpd.url("/feed")) for _ in range(2)))
        return first + list(together)

    responses = run(transport, body, fake=fake)
    assert all(r.ok for r in responses) and httpd.hits["/feed"] == 5
    # Five starts 6 s apart: the fake clock only moves while the Fetcher waits, so the last
    # request started at 24 s whether the waits came in sequence or queued up together.
    assert fake.sleeps == [6.0, 6.0, 6.0, 6.0] and fake.now == 24.0


def test_interval_applies_to_one_host_only(httpd: LoopbackServer, transport: str) -> None:
    httpd.add("/feed", FEED)
    fake = FakeTime()

    async def body(f: Fetcher) -> None:
        f.set_host_interval("www.reddit.com", 6.0)
        for _ in range(3):
            await f.get(httpd.url("/feed"))

    run(transport, body, fake=fake)
    assert fake.sleeps == []


def test_make_transport_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown transport"):
        make_transport("curl", FetchLimits())  # type: ignore[arg-type]


def test_jitter_is_seeded_by_the_injected_rng(httpd: LoopbackServer) -> None:
    httpd.add("/feed", FEED, fail_times=99)
    sleeps = []
    for _ in range(2):
        httpd.reset()
        fake = FakeTime()
        run("aiohttp", lambda f: f.get(httpd.url("/feed")), fake=fake, rng=random.Random(7))
        sleeps.append(fake.sleeps)
    assert sleeps[0] == sleeps[1] and len(sleeps[0]) == 2


def test_hosts_that_fail_together_do_not_retry_together(httpd: LoopbackServer) -> None:
    # Each retry waits its nominal backoff (0.5 s, then 1 s) times a factor in [0.5, 1.5):
    # two fetchers that failed at the same moment wait different times.
    httpd.add("/feed", FEED, fail_times=99)
    sleeps = []
    for seed in range(2):
        httpd.reset()
        fake = FakeTime()
        limits = FetchLimits(retries=2, backoff_s=0.5)
        run("aiohttp", lambda f: f.get(httpd.url("/feed")), limits, fake, rng=random.Random(seed))
        sleeps.append(fake.sleeps)
    assert sleeps[0] != sleeps[1]
    for first, second in sleeps:
        assert 0.25 <= first < 0.75 and 0.5 <= second < 1.5


# -- where requests may go: the config's own addresses, and the public internet -----------------

SECRET = "TOP-SECRET-metadata-token"


@pytest.fixture
def internal() -> Iterator[LoopbackServer]:
    """A server on 127.0.0.2: an internal address a config on 127.0.0.1 does not name."""
    with LoopbackServer("127.0.0.2") as server:
        server.add("/latest/meta-data", f"<html><title>{SECRET}</title>{SECRET}</html>")
        yield server


def test_redirect_to_an_internal_address_is_refused_before_connecting(
    httpd: LoopbackServer, internal: LoopbackServer, transport: str
) -> None:
    httpd.add("/feed", redirect_to=internal.url("/latest/meta-data"))
    guard = AddressGuard([httpd.url("/feed")])
    r = run(transport, lambda f: f.get(httpd.url("/feed")), guard=guard)
    assert not r.ok and r.body == b"" and r.attempts == 1  # refused, and not retried
    assert r.error is not None and "internal address" in r.error and SECRET not in r.error
    assert sum(internal.hits.values()) == 0  # not one request reached it


def test_a_name_resolving_to_an_internal_address_is_refused(
    httpd: LoopbackServer, transport: str
) -> None:
    # The config lives on 127.0.0.2; a redirect names "localhost", which resolves to 127.0.0.1:
    # the check is on the address the name resolves to, in the transport that then connects.
    with LoopbackServer("127.0.0.2") as configured:
        httpd.add("/secret", SECRET)
        port = httpd.base_url.rsplit(":", 1)[1]
        configured.add("/feed", redirect_to=f"http://localhost:{port}/secret")
        guard = AddressGuard([configured.url("/feed")])
        r = run(transport, lambda f: f.get(configured.url("/feed")), guard=guard)
    assert not r.ok and r.error is not None
    assert r.error.startswith("not fetched: localhost (127.0.0.1) is an internal address")
    assert httpd.hits["/secret"] == 0


def test_the_configs_own_address_may_be_reached_under_another_name(
    httpd: LoopbackServer, transport: str
) -> None:
    # A feed on 127.0.0.1 linking to "localhost" (the same address) is followed: the config's
    # own sources live there.
    port = httpd.base_url.rsplit(":", 1)[1]
    httpd.add("/feed", redirect_to=f"http://localhost:{port}/moved")
    httpd.add("/moved", FEED)
    guard = AddressGuard([httpd.url("/feed")])
    r = run(transport, lambda f: f.get(httpd.url("/feed")), guard=guard)
    assert r.ok and r.body == FEED.encode() and httpd.hits["/moved"] == 1


@pytest.mark.parametrize(
    ("address", "internal_"),
    [
        ("169.254.169.254", True),  # cloud metadata
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("172.31.255.255", True),
        ("192.168.1.1", True),
        ("100.64.0.1", True),  # carrier-grade NAT
        ("0.0.0.0", True),
        ("224.0.0.1", True),  # multicast
        ("::1", True),
        ("::", True),
        ("fd00::1", True),
        ("fe80::1", True),
        ("::ffff:10.0.0.1", True),  # IPv4-mapped
        ("64:ff9b::a9fe:a9fe", True),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", True),  # 6to4 of 127.0.0.1
        ("93.184.215.14", False),
        ("172.32.0.1", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_internal_addresses(address: str, internal_: bool) -> None:
    assert is_internal(ipaddress.ip_address(address)) is internal_
    assert AddressGuard().permits("example.com", address) is not internal_


def test_an_error_never_quotes_what_the_server_sent(transport: str) -> None:
    answers = [
        b"SECRET status line\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX SECRET: y\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nSECRETZZ\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 500 " + b"x" * 60 + b"SECRET\r\nContent-Length: 0\r\n\r\n",
    ]

    async def body(f: Fetcher) -> list[Response]:
        out = []
        for answer in answers:

            async def serve(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: bytes = answer
            ) -> None:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(answer)
                await writer.drain()
                writer.close()

            server = await asyncio.start_server(serve, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            async with server:
                out.append(await f.get(f"http://127.0.0.1:{port}/feed"))
        return out

    responses = run(transport, body, FetchLimits(retries=0))
    for r in responses:
        assert r.error is not None and "SECRET" not in r.error, r.error
    assert responses[0].error.startswith("server broke the HTTP protocol")
    assert responses[3].error.startswith("HTTP 500 xxx")


# -- one time budget for a whole poll ---------------------------------------------------------------


def test_a_trickling_server_costs_the_polls_budget_not_every_attempt(
    httpd: LoopbackServer, transport: str
) -> None:
    # Each attempt would take the whole total timeout (0.5 s), and three attempts 1.5 s; the
    # poll's budget of 0.8 s ends the second attempt and allows no third.
    httpd.add("/trickle", "x" * 2000, chunk_delay=0.1, chunk_size=100)
    limits = FetchLimits(read_timeout_s=1.0, total_timeout_s=0.5, retries=2, backoff_s=0.01)

    async def body(f: Fetcher) -> tuple[Response, Response]:
        with poll_budget(0.8):
            first = await f.get(httpd.url("/trickle"))
            later = await f.get(httpd.url("/trickle"))  # e.g. a thread read: nothing left
        return first, later

    first, later = run(transport, body, limits)
    assert not first.ok and first.attempts == 2
    assert first.error == "timed out: the poll's time budget of 0.8 s is used up after 2 attempts"
    assert later.error == "not fetched: the poll's time budget of 0.8 s is used up"
    assert later.attempts == 0 and httpd.hits["/trickle"] == 2


def test_no_retry_is_started_that_the_budget_cannot_wait_for(
    httpd: LoopbackServer, transport: str
) -> None:
    httpd.add("/feed", FEED, fail_times=5, fail_status=503, retry_after="30")
    limits = FetchLimits(retries=2)

    async def body(f: Fetcher) -> Response:
        with poll_budget(10.0):
            return await f.get(httpd.url("/feed"))

    r = run(transport, body, limits)
    assert r.status == 503 and r.attempts == 1 and httpd.hits["/feed"] == 1
    assert r.error == (
        "HTTP 503 Service Unavailable (Retry-After: 30); "
        "no time left to try again in the poll's 10 s budget"
    )
