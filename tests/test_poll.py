"""`listener poll` end to end: sources.yaml -> loopback feeds -> a deduplicated, scored database."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import rows, rss, wait_for, write_config

from listener.cli import cli
from listener.config import load_config
from listener.pipeline import PollSummary, poll_sources
from listener.runtime import open_runtime

NEGATIVE = "Acme support never answered and the app keeps crashing. I want a refund."
POSITIVE = "I love my new Rocket Skates, Acme did a fantastic job. Great product!"
NEUTRAL_GLOBEX = "Globex announced its quarterly results on Tuesday."


def poll(config_path: Path, *names: str) -> PollSummary:
    config = load_config(config_path, env={})

    async def main() -> PollSummary:
        async with open_runtime(config) as rt:
            specs = [s for s in config.sources if not names or s.name in names]
            return await poll_sources(specs, rt)

    return asyncio.run(main())


@pytest.fixture
def blog(httpd):
    entries = [
        {
            "title": "Day one with Acme",
            "link": "https://blog.example.com/2026/acme-one?utm_source=rss",
            "guid": "p1",
            "body": f"<p>{NEGATIVE}</p><script>alert('x')</script>",
        },
        {
            "title": "Skating",
            "link": "https://blog.example.com/2026/skates",
            "guid": "p2",
            "body": f"<p>{POSITIVE}</p>",
        },
        {
            "title": "Markets",
            "link": "https://blog.example.com/2026/markets",
            "guid": "p3",
            "body": f"<p>{NEUTRAL_GLOBEX} Also Acme shipped a patch.</p>",
        },
        {
            "title": "Bricks",
            "link": "https://blog.example.com/2026/bricks",
            "guid": "p4",
            "body": "<p>We bought Acme Brick pavers for the garden.</p>",
        },
        {
            "title": "Unrelated",
            "link": "https://blog.example.com/2026/cats",
            "guid": "p5",
            "body": "<p>Our cat sleeps all day.</p>",
        },
    ]
    httpd.add("/feed", rss(entries), etag='"v1"')
    return httpd


def test_first_poll_builds_the_mention_database(tmp_path, blog):
    cfg = write_config(tmp_path, [("blog", blog.url("/feed"))])
    summary = poll(cfg)
    assert summary.ok == 1 and summary.items == 5 and summary.new_items == 5
    mentions = rows(
        tmp_path,
        "SELECT title, brand, product, label, url, source, snippet, compound FROM mentions ORDER BY title, brand",
    )
    by = {(m[0], m[1]): m for m in mentions}
    # The excluded phrase and the off-topic post are not mentions; two brands give two mentions.
    assert set(by) == {
        ("Day one with Acme", "Acme"),
        ("Skating", "Acme"),
        ("Markets", "Acme"),
        ("Markets", "Globex"),
    }
    assert by[("Day one with Acme", "Acme")][3] == "negative"
    assert (
        by[("Skating", "Acme")][3] == "positive" and by[("Skating", "Acme")][2] == "Rocket Skates"
    )
    assert by[("Markets", "Globex")][3] == "neutral"
    # Canonical URL without tracking parameters; snippet is text, not markup.
    assert by[("Day one with Acme", "Acme")][4] == "https://blog.example.com/2026/acme-one"
    assert (
        "<script>" not in by[("Day one with Acme", "Acme")][6]
        and "alert" not in by[("Day one with Acme", "Acme")][6]
    )
    assert all(-1 <= m[7] <= 1 for m in mentions)


def test_second_poll_adds_nothing_and_uses_conditional_get(tmp_path, blog):
    cfg = write_config(tmp_path, [("blog", blog.url("/feed"))])
    poll(cfg)
    before = rows(tmp_path, "SELECT count(*) FROM mentions")[0][0]
    summary = poll(cfg)
    assert summary.new_items == 0 and summary.reports[0].not_modified
    assert rows(tmp_path, "SELECT count(*) FROM mentions")[0][0] == before
    assert blog.requests_for("/feed")[-1].headers.get("if-none-match") == '"v1"'
    assert rows(tmp_path, "SELECT etag, consecutive_failures FROM sources") == [('"v1"', 0)]


def test_server_without_validators_is_not_reparsed(tmp_path, httpd):
    httpd.add(
        "/plain",
        rss([{"title": "Acme news", "link": "https://x.example/a", "body": "Acme is fine."}]),
    )
    cfg = write_config(tmp_path, [("plain", httpd.url("/plain"))])
    poll(cfg)
    second = poll(cfg)
    assert second.reports[0].not_modified and second.new_items == 0
    assert rows(tmp_path, "SELECT count(*) FROM items") == [(1,)]


def test_syndicated_copies_across_sources_are_one_mention_with_sightings(tmp_path, httpd):
    body = f"<p>{NEGATIVE} " + "More words about the product experience here. " * 6 + "</p>"
    httpd.add(
        "/a",
        rss(
            [
                {
                    "title": "Acme outage",
                    "link": "https://news.example.com/story/1",
                    "guid": "a-1",
                    "body": body,
                }
            ]
        ),
    )
    httpd.add(
        "/b",
        rss(
            [
                {
                    "title": "Acme outage",
                    "link": "http://www.news.example.com/story/1/?utm_source=feed&utm_medium=rss",
                    "guid": "b-77",
                    "body": body,
                }
            ]
        ),
    )
    httpd.add(
        "/c",
        rss(
            [
                {
                    "title": "ACME OUTAGE",
                    "link": "https://mirror.example.org/copy/1",
                    "guid": "c-9",
                    "body": body.replace("  ", " "),
                }
            ]
        ),
    )
    cfg = write_config(
        tmp_path, [("a", httpd.url("/a")), ("b", httpd.url("/b")), ("c", httpd.url("/c"))]
    )
    poll(cfg)
    assert rows(tmp_path, "SELECT count(*) FROM mentions") == [(1,)]
    assert rows(tmp_path, "SELECT count(*) FROM items") == [(1,)]
    assert sorted(r[0] for r in rows(tmp_path, "SELECT source FROM sightings")) == ["a", "b", "c"]
    poll(cfg)
    assert rows(tmp_path, "SELECT count(*) FROM mentions") == [(1,)]


def test_edited_entry_updates_its_row(tmp_path, httpd):
    httpd.add(
        "/f",
        rss(
            [
                {
                    "title": "Acme review",
                    "link": "https://r.example/1",
                    "guid": "r1",
                    "body": "Acme is great, I love it.",
                }
            ]
        ),
        etag='"1"',
    )
    cfg = write_config(tmp_path, [("f", httpd.url("/f"))])
    poll(cfg)
    assert rows(tmp_path, "SELECT label FROM mentions") == [("positive",)]
    httpd.add(
        "/f",
        rss(
            [
                {
                    "title": "Acme review (update)",
                    "link": "https://r.example/1",
                    "guid": "r1",
                    "body": "Update: Acme broke after a week, terrible, awful.",
                }
            ]
        ),
        etag='"2"',
    )
    summary = poll(cfg)
    assert summary.reports[0].updated_items == 1
    assert rows(tmp_path, "SELECT title, label FROM mentions") == [
        ("Acme review (update)", "negative")
    ]
    assert rows(tmp_path, "SELECT count(*) FROM items") == [(1,)]


def test_html_page_instead_of_feed_is_a_source_failure(tmp_path, httpd, blog):
    httpd.add(
        "/login",
        "<!doctype html><html><head><title>Sign in</title></head><body>Log in</body></html>",
        content_type="text/html",
    )
    cfg = write_config(tmp_path, [("login", httpd.url("/login")), ("blog", blog.url("/feed"))])
    summary = poll(cfg)
    by = {r.source: r for r in summary.reports}
    assert not by["login"].ok and "HTML" in by["login"].error
    assert by["blog"].ok and by["blog"].new_items == 5
    (status,) = rows(
        tmp_path, "SELECT consecutive_failures, last_error FROM sources WHERE name='login'"
    )
    assert status[0] == 1 and "HTML" in status[1]


def test_failures_are_recorded_and_the_rest_goes_on(tmp_path, httpd, blog):
    httpd.add("/gone", "nope", status=404, content_type="text/plain")
    httpd.add("/broken", "<rss><channel><item><title>Acme & co", content_type="application/rss+xml")
    cfg = write_config(
        tmp_path,
        [
            ("gone", httpd.url("/gone")),
            ("broken", httpd.url("/broken")),
            ("blog", blog.url("/feed")),
        ],
    )
    summary = poll(cfg)
    by = {r.source: r for r in summary.reports}
    assert not by["gone"].ok and "404" in by["gone"].error
    assert by["blog"].ok
    log = rows(tmp_path, "SELECT source, status, error FROM fetches WHERE source='gone'")
    assert log and log[0][1] == 404


def test_cli_poll_summary_and_stats(tmp_path, blog):
    cfg = write_config(tmp_path, [("blog", blog.url("/feed"))])
    runner = CliRunner()
    result = runner.invoke(cli, ["-c", str(cfg), "poll"])
    assert result.exit_code == 0, result.output
    assert "sources: 1 ok, 0 failed" in result.output
    assert "new mentions: 4 (1 negative, 2 neutral, 1 positive)" in result.output
    stats = runner.invoke(cli, ["-c", str(cfg), "stats"])
    assert stats.exit_code == 0 and "Acme" in stats.output and "blog" in stats.output


def test_cli_bad_config_exits_2_naming_the_key(tmp_path):
    cfg = write_config(tmp_path, [("blog", "https://example.com/feed")])
    cfg.write_text(cfg.read_text().replace("every: 15m", "evry: 15m"))
    result = CliRunner().invoke(cli, ["-c", str(cfg), "check"])
    assert result.exit_code == 2
    assert "sources[0].evry: unknown key" in result.output


def test_cli_init_writes_a_config_that_checks(tmp_path):
    target = tmp_path / "sources.yaml"
    runner = CliRunner()
    assert runner.invoke(cli, ["init", str(target)]).exit_code == 0
    again = runner.invoke(cli, ["init", str(target)])
    assert again.exit_code == 2 and "already exists" in again.output
    check = runner.invoke(cli, ["-c", str(target), "check"])
    assert check.exit_code == 0 and "acme-blog" in check.output


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0"><channel><title>&lol9;</title><item><title>Acme &lol9;</title>
<link>https://laughs.example/1</link><description>Acme is great &lol9;</description></item></channel></rss>"""


def test_hostile_and_broken_sources_are_recorded_and_the_rest_goes_on(tmp_path, httpd, blog):
    import gzip

    httpd.add(
        "/bomb",
        gzip.compress(b"\0" * (30 * 1024 * 1024)),
        raw_body=True,
        headers={"content-encoding": "gzip"},
    )
    httpd.add("/huge", b"<rss>" + b"x" * (3 * 1024 * 1024), content_type="application/rss+xml")
    httpd.add("/laughs", BILLION_LAUGHS)
    httpd.add("/loop-a", redirect_to="/loop-b", status=302)
    httpd.add("/loop-b", redirect_to="/loop-a", status=302)
    httpd.add(
        "/slow", rss([{"title": "Acme", "link": "https://s.example/1", "body": "Acme"}]), delay=3
    )
    httpd.add(
        "/busy",
        rss([{"title": "Acme busy", "link": "https://b.example/1", "body": "Acme is fine."}]),
        fail_times=1,
        fail_status=429,
        retry_after="1",
    )
    httpd.add("/down", "oops", status=500, content_type="text/plain")
    names = ["bomb", "huge", "laughs", "loop-a", "slow", "busy", "down"]
    cfg = write_config(
        tmp_path, [(n, httpd.url(f"/{n}")) for n in names] + [("blog", blog.url("/feed"))]
    )
    cfg.write_text(
        cfg.read_text()
        .replace("fetch:\n", "fetch:\n  max_body: 1MB\n  max_redirects: 4\n")
        .replace("read_timeout: 5s", "read_timeout: 1s")
    )
    summary = poll(cfg)
    by = {r.source: r for r in summary.reports}
    assert by["blog"].ok and by["blog"].new_items == 5
    assert by["busy"].ok and by["busy"].new_items == 1  # waited for Retry-After, then fetched
    assert "larger than" in by["bomb"].error and "larger than" in by["huge"].error
    assert "redirect" in by["loop-a"].error
    assert "timed out" in by["slow"].error
    assert "500" in by["down"].error
    # Entity expansion is never performed: either refused or parsed without the expansion.
    laughs = rows(
        tmp_path, "SELECT length(title) FROM items WHERE url LIKE 'https://laughs.example%'"
    )
    assert by["laughs"].error or (laughs and laughs[0][0] < 1000)
    failing = dict(
        rows(
            tmp_path, "SELECT name, consecutive_failures FROM sources WHERE last_error IS NOT NULL"
        )
    )
    assert {"bomb", "huge", "loop-a", "slow", "down"} <= set(failing)


def test_worker_processes_give_the_same_database_as_inline(tmp_path, httpd, blog):
    """Big polls parse and score in worker processes; the result must not depend on it."""
    body = "<p>Acme outage again. Terrible support, I want a refund.</p>"
    httpd.add(
        "/other",
        rss([{"title": "Acme down", "link": "https://o.example/1", "guid": "o1", "body": body}]),
    )
    results = {}
    for workers in (0, 1):
        run_dir = tmp_path / f"w{workers}"
        run_dir.mkdir()
        cfg = write_config(run_dir, [("blog", blog.url("/feed")), ("other", httpd.url("/other"))])
        config = load_config(cfg, env={})

        async def main(config=config, workers=workers) -> PollSummary:
            async with open_runtime(config, workers=workers) as rt:
                summary = await poll_sources(list(config.sources), rt)
                assert (rt.cpu is not None) == bool(workers)
                return summary

        asyncio.run(main())
        conn = sqlite3.connect(run_dir / "mentions.db")
        results[workers] = conn.execute(
            "SELECT url, brand, product, label, compound, snippet, explanation FROM mentions ORDER BY url, brand"
        ).fetchall()
        conn.close()
    assert results[0] == results[1] and len(results[0]) == 5


def test_a_worker_that_dies_does_not_fail_the_rest_of_the_poll(tmp_path, httpd):
    """A worker killed mid-run (OOM killer, an operator): the poll goes on in-process."""
    for name in ("first", "second"):
        body = f"<p>Acme lost my {name} order. Terrible support.</p>"
        httpd.add(
            f"/{name}",
            rss([{"title": f"Acme {name}", "link": f"https://{name}.example/1", "body": body}]),
        )
    cfg = write_config(tmp_path, [("first", httpd.url("/first")), ("second", httpd.url("/second"))])
    config = load_config(cfg, env={})
    first, second = config.sources

    async def main() -> tuple[PollSummary, PollSummary, bool]:
        async with open_runtime(config, workers=1) as rt:
            assert rt.cpu is not None
            before = await poll_sources([first], rt)
            for process in list(rt.cpu._executor()._processes.values()):
                process.kill()
                process.join(10)
            after = await poll_sources([second], rt)
            return before, after, rt.cpu.broken

    before, after, broken = asyncio.run(main())
    assert broken
    assert before.ok == after.ok == 1
    assert [m.score.label for r in after.reports for m in r.new_mentions] == ["negative"]
    assert rows(tmp_path, "SELECT source, label FROM mentions ORDER BY source") == [
        ("first", "negative"),
        ("second", "negative"),
    ]


UNGUARDED_SCRIPT = """
import asyncio, sys
from listener.config import load_config
from listener.pipeline import poll_sources
from listener.runtime import open_runtime

config = load_config(sys.argv[1], env={})


async def main():
    async with open_runtime(config, workers=1) as rt:
        summary = await poll_sources(list(config.sources), rt)
    print(__name__, summary.ok, summary.failed, sum(len(r.new_mentions) for r in summary.reports))


asyncio.run(main())
"""


def test_workers_that_cannot_start_leave_the_work_to_the_polling_process(tmp_path, httpd):
    """A user's own script without the `if __name__ == "__main__":` guard cannot spawn workers."""
    body = "<p>Acme lost my order. Terrible support.</p>"
    httpd.add("/f", rss([{"title": "Acme", "link": "https://f.example/1", "body": body}]))
    cfg = write_config(tmp_path, [("f", httpd.url("/f"))])
    script = tmp_path / "poll_script.py"
    script.write_text(UNGUARDED_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # (Without the guard, "spawn" runs the script again in the would-be worker: "__mp_main__".)
    # That second run may store the mention first; either way there is one, and no failure.
    ours = [line.split()[1:3] for line in done.stdout.splitlines() if line.startswith("__main__ ")]
    assert ours == [["1", "0"]]
    assert "could not start worker processes" in done.stderr
    assert rows(tmp_path, "SELECT source, label FROM mentions") == [("f", "negative")]


def test_thread_replies_are_followed_without_disturbing_the_schedule(tmp_path, httpd):
    comments = rss(
        [
            {
                "title": "By: sam",
                "link": "https://blog.example.com/p#comment-1",
                "guid": "c1",
                "body": "It crashed twice today, awful.",
            },
        ]
    )
    httpd.add("/comments", comments)
    httpd.add(
        "/feed",
        rss(
            [
                {
                    "title": "We tried Acme",
                    "link": "https://blog.example.com/p",
                    "guid": "p",
                    "body": "Notes from our first week with Acme.",
                    "comments": httpd.url("/comments"),
                }
            ]
        ),
    )
    cfg = write_config(tmp_path, [("blog", httpd.url("/feed"))])
    poll(cfg)
    # The reply does not name the brand, but its thread does: kept and scored as context.
    # Its "By: sam" title is a byline: the author, not words of the comment.
    assert rows(
        tmp_path, "SELECT title, author, relevant, label FROM items WHERE is_reply = 1"
    ) == [("", "sam", 1, "negative")]
    assert rows(tmp_path, "SELECT posts, negative_posts FROM threads") == [(2, 1)]
    (next_poll,) = rows(tmp_path, "SELECT next_poll_at FROM sources")[0]
    assert next_poll is not None  # reading the replies left the source's own schedule alone


def _children(pid: int) -> list[int]:
    """The live processes whose parent is `pid`."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
            state, ppid = stat.rpartition(")")[2].split()[:2]
            if int(ppid) == pid and state != "Z":
                out.append(int(entry.name))
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    """Running, not a zombie (a reaped or unreaped corpse both count as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_worker_processes_exit_when_the_poll_is_killed_9(tmp_path, httpd):
    """kill -9 of a `listener poll` with workers: no orphaned worker is left running."""
    release = threading.Event()

    def slow(_request):
        release.wait(60)
        return 200, {"content-type": "application/rss+xml"}, rss([]).encode()

    body = "<p>Acme lost my order. Terrible support.</p>"
    httpd.add("/fast", rss([{"title": "Acme", "link": "https://f.example/1", "body": body}]))
    httpd.add("/slow", handler=slow)
    cfg = write_config(tmp_path, [("fast", httpd.url("/fast")), ("slow", httpd.url("/slow"))])
    cfg.write_text(
        cfg.read_text()
        .replace("read_timeout: 5s", "read_timeout: 60s")
        .replace("total_timeout: 10s", "total_timeout: 60s")
        + "workers: 2\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "listener", "-c", str(cfg), "poll"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    pids: list[int] = []
    try:
        wait_for(lambda: httpd.requests_for("/slow"), "the poll to wait on the slow feed")

        def workers() -> list[int]:
            # The fork server the poll started, and the two workers it forked.
            server = [pid for pid in _children(proc.pid) if b"forkserver" in _cmdline(pid)]
            found = [*server, *(pid for s in server for pid in _children(s))]
            return found if len(found) == 3 else []

        pids = wait_for(workers, "a fork server and two worker processes")
        assert proc.poll() is None  # still polling: the workers' parent is alive
        proc.kill()
        proc.wait(10)
        wait_for(lambda: not any(_alive(p) for p in pids), "the orphaned workers to exit", 10)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in pids:  # whatever the outcome, leave no orphan behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_log_says_which_polls_found_something_and_stays_quiet_about_the_rest(tmp_path, httpd):
    """`listener -v` (what a service logs at info): one line for a poll that found new items;
    none for one that found nothing new, the common case of a service polling every source
    every few minutes. -vv shows those too."""
    body = "<p>Acme lost my order. Terrible support.</p>"
    httpd.add("/f", rss([{"title": "Acme", "link": "https://f.example/1", "body": body}]))
    cfg = write_config(tmp_path, [("f", httpd.url("/f"))])

    def run(*flags: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "listener", *flags, "-c", str(cfg), "poll"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=True,
        )
        return done.stderr

    first = run("-v")
    assert "f: 1 items, 1 new, 0 updated, 1 new mentions" in first
    again = run("-v")
    assert "f: " not in again  # the same feed again: nothing new, nothing said at info
    assert "f: unchanged" in run("-vv")
