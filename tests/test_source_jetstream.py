"""`kind: jetstream` against a loopback Jetstream (tests/wsd.py): what is kept from the firehose,
threads, disconnects, resuming from the stored cursor, and `kill -9` of a real `listener run`."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import kind_source, poll_once, rows, source_cursor, wait_for, write_config
from httpd import LoopbackServer, unused_port_url
from wsd import Jetstream, delete, identity, like, post, uri

from listener.cli import cli
from listener.config import load_config
from listener.runtime import open_runtime
from listener.sources import jetstream
from listener.sources.jetstream import JetstreamOptions, backoff_delay, resume_point
from listener.stream import run_stream

ALICE = "did:plc:alice4jetstream"
BOB = "did:plc:bob4jetstream"
CAROL = "did:plc:carol4jetstream"


@pytest.fixture
def server() -> Iterator[Jetstream]:
    with Jetstream() as js:
        yield js


def config(tmp_path: Path, server_url: str, **options: object) -> Path:
    opts = {"flush_every": "100ms", "reconnect_min": "50ms", "reconnect_max": "200ms", **options}
    return write_config(
        tmp_path, [], extra=kind_source("bsky-live", "jetstream", base_url=server_url, **opts)
    )


def stream_while(cfg: Path, script: Callable[[], None], done: Callable[[], object]) -> None:
    """`listener run`'s stream of the config's one source, in this process: `script` runs (in a
    thread) once it is started, then the stream is stopped as soon as `done()` holds."""
    config_ = load_config(cfg, env={})

    async def main() -> None:
        async with open_runtime(config_) as rt:
            rt.store.ensure_sources(config_.sources)
            stop = asyncio.Event()
            task = asyncio.create_task(run_stream(config_.sources[0], rt, stop))
            try:
                await asyncio.to_thread(script)
                await asyncio.to_thread(wait_for, done, "the stream to store what was published")
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)

    asyncio.run(main())


def mention_count(tmp_path: Path) -> int:
    try:
        return rows(tmp_path, "SELECT count(*) FROM mentions")[0][0]
    except Exception:
        return 0


def test_keeps_brand_posts_and_their_replies_and_nothing_else(
    tmp_path: Path, server: Jetstream
) -> None:
    cfg = config(tmp_path, server.url)
    root = uri(ALICE, "3kroot")
    other = uri(CAROL, "3kother")

    def publish() -> None:
        server.wait_connections(1)
        server.publish(
            post(ALICE, "3kroot", "Acme deleted my data and support never answered. Awful."),
            post(CAROL, "3kother", "Lovely weather for a walk today"),
            post(BOB, "3kreply", "Same thing happened to me last week", root=root),
            post(BOB, "3kbrick", "Acme Brick makes nice bricks", root=other),
            post(CAROL, "3kcasual", "no brand here either", root=other),
            like(BOB, root),
            identity(BOB, "bob.example.com"),
            delete(CAROL, "3kother"),
        )

    stream_while(cfg, publish, lambda: len(rows(tmp_path, "SELECT id FROM items")) >= 2)
    # Only the brand's post and the reply in its thread are stored; the rest of the firehose
    # (other posts, an excluded phrase, replies elsewhere, likes, identity events) is not.
    assert rows(tmp_path, "SELECT url, thread_key FROM items ORDER BY url") == [
        (f"https://bsky.app/profile/{ALICE}/post/3kroot", f"bsky:{root}"),
        (f"https://bsky.app/profile/{BOB}/post/3kreply", f"bsky:{root}"),
    ]
    assert rows(tmp_path, "SELECT brand, label FROM mentions") == [("Acme", "negative")]
    # The wire: the post collection only, and the cursor kept is the last event read.
    assert server.connections[0] == {"wantedCollections": "app.bsky.feed.post"}
    assert source_cursor(tmp_path, "bsky-live") == {
        "protocol": "v1",
        "time_us": server.events[-1]["time_us"],
    }

    # A later reply, in another batch and after a restart, still finds its brand thread.
    def reply_later() -> None:
        server.wait_connections(2)
        server.publish(post(CAROL, "3klate", "did they ever fix it?", root=root))

    stream_while(cfg, reply_later, lambda: len(rows(tmp_path, "SELECT id FROM items")) >= 3)
    assert (f"https://bsky.app/profile/{CAROL}/post/3klate",) in rows(
        tmp_path, "SELECT url FROM items"
    )


def test_resumes_from_the_stored_cursor_after_a_restart_without_gap_or_duplicate(
    tmp_path: Path, server: Jetstream
) -> None:
    cfg = config(tmp_path, server.url, rewind="1s")

    def first() -> None:
        server.wait_connections(1)
        server.publish(*(post(ALICE, f"3ka{i}", f"Acme post {i}") for i in range(3)))

    stream_while(cfg, first, lambda: mention_count(tmp_path) >= 3)
    stored = source_cursor(tmp_path, "bsky-live")["time_us"]
    assert stored == server.events[-1]["time_us"]
    # Published while nobody listens: only a resume from the cursor can see these.
    server.publish(*(post(BOB, f"3kb{i}", f"Acme while away {i}") for i in range(3)))

    def second() -> None:
        server.wait_connections(2)
        server.publish(post(CAROL, "3kc0", "Acme after the restart"))

    stream_while(cfg, second, lambda: mention_count(tmp_path) >= 7)
    # Resumed a second before the stored position: the last posts are read again (at least
    # once) and stored once.
    assert server.connections[1]["cursor"] == str(stored - 1_000_000)
    assert rows(tmp_path, "SELECT count(*), count(DISTINCT url) FROM items") == [(7, 7)]
    assert mention_count(tmp_path) == 7


def test_a_dropped_connection_is_resumed_where_it_stopped(
    tmp_path: Path, server: Jetstream
) -> None:
    cfg = config(tmp_path, server.url, batch_size=1)
    server.drop_after(4)  # the first connection goes away after 4 events

    def publish() -> None:
        server.wait_connections(1)
        server.publish(*(post(ALICE, f"3kd{i}", f"Acme number {i}") for i in range(10)))

    stream_while(cfg, publish, lambda: mention_count(tmp_path) >= 10)
    assert len(server.connections) >= 2
    resumed = int(server.connections[1]["cursor"])
    # From (a rewind before) the last event it had read: the 4th.
    assert resumed == server.events[3]["time_us"] - 2_000_000
    assert rows(tmp_path, "SELECT count(*), count(DISTINCT url) FROM items") == [(10, 10)]


def test_a_post_delivered_twice_is_stored_once(tmp_path: Path, server: Jetstream) -> None:
    cfg = config(tmp_path, server.url, flush_every="1s")
    again = post(ALICE, "3ktwice", "Acme at least once")

    def publish() -> None:
        server.wait_connections(1)
        server.publish(again, post(BOB, "3kother", "Acme other"), again)  # one batch

    stream_while(cfg, publish, lambda: mention_count(tmp_path) >= 2)
    assert rows(tmp_path, "SELECT count(*), count(DISTINCT url) FROM items") == [(2, 2)]


def test_poll_reads_from_the_cursor_until_caught_up(
    tmp_path: Path, server: Jetstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jetstream, "POLL_IDLE_S", 0.3)
    cfg = config(tmp_path, server.url)

    def first() -> None:
        server.wait_connections(1)
        server.publish(post(ALICE, "3kp0", "Acme first"))

    stream_while(cfg, first, lambda: mention_count(tmp_path) >= 1)
    server.publish(*(post(BOB, f"3kp{i}", f"Acme meanwhile {i}") for i in range(1, 4)))
    summary = poll_once(cfg, now=lambda: datetime.now(UTC))
    (report,) = summary.reports
    assert report.error is None
    assert report.new_items == 3
    assert mention_count(tmp_path) == 4


def test_an_unreachable_jetstream_is_reported_on_the_source(tmp_path: Path) -> None:
    url = unused_port_url().replace("http://", "ws://").rstrip("/")
    cfg = config(tmp_path, url)
    summary = poll_once(cfg, now=lambda: datetime.now(UTC))
    (report,) = summary.reports
    assert report.error is not None and "Jetstream unreachable" in report.error
    assert rows(tmp_path, "SELECT consecutive_failures FROM sources") == [(1,)]


def test_reconnect_backoff_grows_is_capped_and_jittered() -> None:
    opts = JetstreamOptions(reconnect_min=1.0, reconnect_max=60.0)
    first = [backoff_delay(opts, 1) for _ in range(50)]
    late = [backoff_delay(opts, 40) for _ in range(50)]
    assert all(1.0 <= d <= 2.0 for d in first)
    assert all(30.0 <= d <= 60.0 for d in late)  # capped: never more than reconnect_max
    assert len(set(late)) > 1  # jittered: clients do not reconnect in step


def test_base_url_must_be_a_websocket_host(tmp_path: Path) -> None:
    from listener.config import ConfigError

    cfg = config(tmp_path, "https://jetstream2.us-east.bsky.network")
    with pytest.raises(ConfigError, match="base_url"):
        load_config(cfg, env={})
    # A pasted /subscribe is the host's.
    cfg = config(tmp_path, "wss://jetstream2.us-east.bsky.network/subscribe")
    (spec,) = load_config(cfg, env={}).sources
    assert spec.options.base_url == "wss://jetstream2.us-east.bsky.network"


# --- kill -9 of a real `listener run` ---------------------------------------------------------


@pytest.fixture
def processes() -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(cfg: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "listener", "-c", str(cfg), "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_kill_9_mid_stream_then_restart_has_no_gap_and_no_duplicate(
    tmp_path: Path,
    server: Jetstream,
    processes: Callable[[Path], subprocess.Popen[str]],
    protocol: str,
) -> None:
    cfg = config(tmp_path, server.url, flush_every="300ms", batch_size=5, protocol=protocol)
    first = processes(cfg)
    server.wait_connections(1)
    for i in range(30):
        server.publish(post(ALICE, f"3kk{i:02d}", f"Acme post number {i}"))
        time.sleep(0.01)
    wait_for(lambda: mention_count(tmp_path) >= 5, "some posts stored before the kill")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    # While it is down, the firehose goes on.
    server.publish(*(post(BOB, f"3kk{i:02d}", f"Acme while down {i}") for i in range(30, 35)))
    processes(cfg)
    server.wait_connections(2)
    assert "cursor" in server.connections[1]
    server.publish(*(post(CAROL, f"3kk{i:02d}", f"Acme after restart {i}") for i in range(35, 40)))
    wait_for(lambda: mention_count(tmp_path) >= 40, "every post stored after the restart")
    assert rows(tmp_path, "SELECT count(*), count(DISTINCT url) FROM items") == [(40, 40)]
    assert mention_count(tmp_path) == 40


def test_check_lists_the_source_as_a_stream(tmp_path: Path) -> None:
    cfg = config(tmp_path, "wss://jetstream2.us-east.bsky.network")
    out = subprocess.run(
        [sys.executable, "-m", "listener", "-c", str(cfg), "check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (line,) = [line for line in out.splitlines() if "bsky-live" in line]
    assert "a stream" in line and "every 15m" not in line


def test_run_sends_a_streamed_posts_alert_at_once(
    tmp_path: Path,
    server: Jetstream,
    httpd: LoopbackServer,
    processes: Callable[[Path], subprocess.Popen[str]],
) -> None:
    httpd.add("/slack", body=b"ok", content_type="text/plain")
    cfg = write_config(
        tmp_path,
        [],
        extra=kind_source("bsky-live", "jetstream", base_url=server.url, flush_every="100ms")
        + f"""\
alerts:
  flush_every: 1h
  channels:
    - name: slack
      kind: slack
      webhook_url: {httpd.url("/slack")}
  rules:
    very_negative_mention: {{compound_at_most: -0.5, sources: [bsky-live]}}
""",
    )
    processes(cfg)
    server.wait_connections(1)
    # The outbox's own round is an hour away: only a send right after the batch gets this out.
    server.publish(
        post(ALICE, "3kangry", "Acme lost all my data. Terrible, awful, worst service ever.")
    )
    wait_for(lambda: httpd.requests_for("/slack"), "the alert at Slack")
    (request,) = httpd.requests_for("/slack")
    assert f"bsky.app/profile/{ALICE}/post/3kangry" in request.body.decode()


# --- v2: network.bsky.jetstream.subscribeEvents, seq cursors, at least once -------------------

V2_PATH = "/xrpc/network.bsky.jetstream.subscribeEvents"


def test_v2_resumes_from_the_stored_seq_after_a_restart_without_gap_or_duplicate(
    tmp_path: Path, server: Jetstream
) -> None:
    cfg = config(tmp_path, server.url, protocol="v2")

    def first() -> None:
        server.wait_connections(1)
        server.publish(*(post(ALICE, f"3ka{i}", f"Acme post {i}") for i in range(3)))

    stream_while(cfg, first, lambda: mention_count(tmp_path) >= 3)
    # The cursor names its protocol and is the seq of the last event read.
    assert source_cursor(tmp_path, "bsky-live") == {"protocol": "v2", "seq": 3}
    # Published while nobody listens: only a resume from the cursor can see these.
    server.publish(*(post(BOB, f"3kb{i}", f"Acme while away {i}") for i in range(3)))

    def second() -> None:
        server.wait_connections(2)
        server.publish(post(CAROL, "3kc0", "Acme after the restart"))

    stream_while(cfg, second, lambda: mention_count(tmp_path) >= 7)
    # The XRPC endpoint, its parameter names and subprotocol; resumed at the stored seq itself
    # (the server replays inclusively and the client drops what it had).
    assert server.paths == [V2_PATH, V2_PATH]
    assert server.connections == [
        {"kinds": "commit", "collections": "app.bsky.feed.post"},
        {"kinds": "commit", "collections": "app.bsky.feed.post", "cursor": "3"},
    ]
    assert server.subprotocols == ["xrpc.v1.json", "xrpc.v1.json"]
    assert rows(tmp_path, "SELECT count(*), count(DISTINCT url) FROM items") == [(7, 7)]
    assert source_cursor(tmp_path, "bsky-live") == {"protocol": "v2", "seq": 7}


def test_v2_redelivered_events_are_dropped_by_the_seq_floor_and_stored_once(
    tmp_path: Path, server: Jetstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jetstream, "POLL_IDLE_S", 0.3)
    cfg = config(tmp_path, server.url, protocol="v2")

    def first() -> None:
        server.wait_connections(1)
        server.publish(*(post(ALICE, f"3kr{i}", f"Acme first {i}") for i in range(3)))

    stream_while(cfg, first, lambda: mention_count(tmp_path) >= 3)
    server.publish(*(post(BOB, f"3kr{i}", f"Acme later {i}") for i in range(3, 5)))
    # At least once: this server resumes three events before the cursor it was given.
    server.rewind_next(3)
    (report,) = poll_once(cfg, now=lambda: datetime.now(UTC)).reports
    assert server.connections[1]["cursor"] == "3"
    # `listener poll` counts what was new on the stream, not the redelivered events again.
    assert (report.error, report.items, report.new_items) == (None, 2, 2)
    assert rows(tmp_path, "SELECT count(*), count(DISTINCT url) FROM items") == [(5, 5)]
    assert source_cursor(tmp_path, "bsky-live")["seq"] == 5


def test_a_cursor_of_the_other_protocol_is_never_replayed(
    tmp_path: Path, server: Jetstream
) -> None:
    def one_post(n: int, rkey: str) -> Callable[[], None]:
        def publish() -> None:
            server.wait_connections(n)
            server.publish(post(ALICE, rkey, f"Acme {rkey}"))

        return publish

    stream_while(
        config(tmp_path, server.url), one_post(1, "3kv1"), lambda: mention_count(tmp_path) >= 1
    )
    assert source_cursor(tmp_path, "bsky-live")["protocol"] == "v1"
    server.publish(post(BOB, "3kaway", "Acme while the source is switched"))

    # Now v2: the stored time_us is not sent as a cursor; the stream starts at the live tip.
    cfg = config(tmp_path, server.url, protocol="v2")
    stream_while(cfg, one_post(2, "3kv2"), lambda: mention_count(tmp_path) >= 2)
    assert server.paths[1] == V2_PATH and "cursor" not in server.connections[1]
    urls = [url for (url,) in rows(tmp_path, "SELECT url FROM items")]
    assert not any(url.endswith("/3kaway") for url in urls)  # the gap the warning names
    cursor = source_cursor(tmp_path, "bsky-live")
    assert (cursor["protocol"], cursor["seq"]) == ("v2", 3)
    # The user is told, on the source, not only in the log.
    (note,) = rows(tmp_path, "SELECT last_note FROM sources")[0]
    assert "ProtocolChanged" in note and "not replayed" in note
    out = CliRunner().invoke(cli, ["-c", str(cfg), "status"]).output
    assert "stored cursor is Jetstream v1's" in out

    # And back to v1: the seq is not sent to v1 (as a time it would be 1970).
    stream_while(
        config(tmp_path, server.url), one_post(3, "3kv1b"), lambda: mention_count(tmp_path) >= 3
    )
    assert server.paths[2] == "/subscribe" and "cursor" not in server.connections[2]
    assert source_cursor(tmp_path, "bsky-live")["protocol"] == "v1"


def test_a_cursor_stored_before_v2_existed_is_a_v1_cursor() -> None:
    v1, v2 = JetstreamOptions(), JetstreamOptions(protocol="v2")
    assert resume_point(v1, {"time_us": 1_700_000_000_000_000}) == (1_700_000_000_000_000, None)
    position, warning = resume_point(v2, {"time_us": 1_700_000_000_000_000})
    assert position is None and warning is not None and "live tip" in warning
    assert resume_point(v2, {"protocol": "v2", "seq": 42}) == (42, None)


def test_v2_outdated_cursor_advisory_is_recorded_and_the_stream_goes_on(
    tmp_path: Path, server: Jetstream, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(tmp_path, server.url, protocol="v2")
    server.advise_next(
        "OutdatedCursor", "requested timestamp cursor below retention floor; starting at seq 1"
    )

    def publish() -> None:
        server.wait_connections(1)
        server.publish(*(post(ALICE, f"3ko{i}", f"Acme post {i}") for i in range(2)))

    stream_while(cfg, publish, lambda: mention_count(tmp_path) >= 2)
    # Not an error and not the end of the stream: the posts after it were read on the same
    # connection, and the advisory is kept on the source for `status` and `check`.
    assert len(server.connections) == 1
    (error, failures, note) = rows(
        tmp_path, "SELECT last_error, consecutive_failures, last_note FROM sources"
    )[0]
    assert (error, failures) == (None, 0)
    assert "OutdatedCursor" in note and "retention floor" in note
    assert source_cursor(tmp_path, "bsky-live")["advisory"]["name"] == "OutdatedCursor"
    assert "Jetstream advisory OutdatedCursor" in caplog.text
    out = CliRunner().invoke(cli, ["-c", str(cfg), "check"]).output
    assert "warning: bsky-live: OutdatedCursor" in out


def test_v2_error_frame_is_a_source_error_and_the_stream_resumes_from_its_cursor(
    tmp_path: Path, server: Jetstream, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(tmp_path, server.url, protocol="v2")
    server.error_after(2, "ConsumerTooSlow", "too far behind")

    def publish() -> None:
        server.wait_connections(1)
        server.publish(*(post(ALICE, f"3ke{i}", f"Acme post {i}") for i in range(5)))

    stream_while(cfg, publish, lambda: mention_count(tmp_path) >= 5)
    assert "ended the stream: ConsumerTooSlow;" in caplog.text
    assert "too far behind" not in caplog.text  # the server's words are not quoted
    # Reconnected from the last event read before the error frame; nothing lost or doubled.
    assert server.connections[1]["cursor"] == "2"
    assert rows(tmp_path, "SELECT count(*), count(DISTINCT url) FROM items") == [(5, 5)]


def test_v2_future_cursor_error_drops_the_cursor_and_restarts_live(
    tmp_path: Path, server: Jetstream
) -> None:
    cfg = config(tmp_path, server.url, protocol="v2")

    def first() -> None:
        server.wait_connections(1)
        server.publish(post(ALICE, "3kf0", "Acme first"))

    stream_while(cfg, first, lambda: mention_count(tmp_path) >= 1)
    server.error_after(0, "FutureCursor", "cursor in the future")
    (report,) = poll_once(cfg, now=lambda: datetime.now(UTC)).reports
    assert report.error is not None and "FutureCursor" in report.error
    assert "live tip" in report.error
    assert rows(tmp_path, "SELECT consecutive_failures FROM sources") == [(1,)]
    # Resuming from it again would fail again: the stored cursor is dropped.
    assert "seq" not in source_cursor(tmp_path, "bsky-live")

    def later() -> None:
        server.wait_connections(3)
        server.publish(post(BOB, "3kf1", "Acme after"))

    stream_while(cfg, later, lambda: mention_count(tmp_path) >= 2)
    assert "cursor" not in server.connections[2]


def test_v2_cursor_too_old_is_reported_and_resumes_at_the_servers_oldest_event(
    tmp_path: Path, server: Jetstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jetstream, "POLL_IDLE_S", 0.3)
    cfg = config(tmp_path, server.url, protocol="v2")

    def first() -> None:
        server.wait_connections(1)
        server.publish(post(ALICE, "3kt0", "Acme first"))

    stream_while(cfg, first, lambda: mention_count(tmp_path) >= 1)
    server.publish(*(post(BOB, f"3kt{i}", f"Acme while away {i}") for i in range(1, 6)))
    server.forget_before(4)  # seqs 2 and 3 are past the server's retention
    (report,) = poll_once(cfg, now=lambda: datetime.now(UTC)).reports
    # Refused before the upgrade (HTTP 400, XRPC body CursorTooOld): the gap is named ...
    assert report.error is not None
    assert "CursorTooOld" in report.error and "missed" in report.error
    # ... and the stream goes on at once from the oldest event the server has, that one kept.
    assert [c.get("cursor") for c in server.connections[1:]] == ["1", "4"]
    assert report.new_items == 3
    stored = {url.rsplit("/", 1)[1] for (url,) in rows(tmp_path, "SELECT url FROM items")}
    assert stored == {"3kt0", "3kt3", "3kt4", "3kt5"}
