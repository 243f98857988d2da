"""The verbs a user runs to look after the service: `check` (masking), `status`, `alerts test`,
`alerts flush` and `serve`, each through the command line against loopback peers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import BASE_TIME, Clock, poll_once, rss, write_config
from httpd import LoopbackServer, RequestInfo

from listener.cli import cli
from listener.units import parse_iso

ROOT = Path(__file__).resolve().parent.parent
ANGRY = "Acme is a scam, the worst company ever. Horrible, useless, I hate it. Never again."
CALM = "Acme shipped a patch on Tuesday."


def invoke(cfg: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-c", str(cfg), *args], env=env)
    return result.exit_code, result.output


def blog(httpd: LoopbackServer, body: str = CALM) -> None:
    httpd.add(
        "/feed",
        rss([{"title": "Acme this week", "link": "https://blog.example.com/a", "body": body}]),
    )


# -- check: every value taken from the environment is shown as *** ------------------------------


def test_check_shows_values_from_the_environment_as_stars_wherever_they_appear(
    tmp_path: Path,
) -> None:
    cfg = write_config(tmp_path, [("blog", "http://127.0.0.1:9/feeds/${FEED_KEY}/rss")])
    cfg.write_text(
        cfg.read_text().replace("database: mentions.db", "database: ${DATA_DIR}/mentions.db")
    )
    env = {"DATA_DIR": str(tmp_path / "tenant-Qx7w"), "FEED_KEY": "key-Zr81"}
    code, out = invoke(cfg, "check", env=env)
    assert code == 0, out
    assert "database: ***/mentions.db" in out
    assert "http://127.0.0.1:9/feeds/***/rss" in out
    assert "tenant-Qx7w" not in out and "key-Zr81" not in out


# -- status ---------------------------------------------------------------------------------------


def test_status_before_any_poll_says_how_to_start(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, [("blog", "http://127.0.0.1:9/feed")])
    code, out = invoke(cfg, "status")
    assert code == 0, out
    assert f"no database yet at {tmp_path / 'mentions.db'}" in out and "poll" in out


def test_status_shows_each_sources_health_next_poll_and_the_outbox(
    tmp_path: Path, httpd: LoopbackServer
) -> None:
    blog(httpd)
    httpd.add("/gone", "nope", status=404, content_type="text/plain")
    cfg = write_config(
        tmp_path,
        [("blog", httpd.url("/feed")), ("gone", httpd.url("/gone")), ("later", httpd.url("/x"))],
    )
    clock = Clock(BASE_TIME)
    config_text = cfg.read_text()
    # Poll the first two only: `later` is in the config but was never polled.
    cfg.write_text(config_text.split("  - name: later")[0])
    poll_once(cfg, now=clock)
    cfg.write_text(config_text)

    code, out = invoke(cfg, "status")
    assert code == 0, out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    polled_at = BASE_TIME.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert lines["blog"].split()[1:4] == ["ok", polled_at, "0"]
    # The next poll: its interval (15 minutes) and at most a minute of jitter after this one,
    # whatever the hour (near midnight it falls on the next day).
    next_poll = parse_iso(lines["blog"].split()[4])
    assert next_poll is not None
    assert timedelta(minutes=15) <= next_poll - BASE_TIME <= timedelta(minutes=16)
    assert lines["gone"].split()[1:4] == ["failing", "never", "1"]
    assert lines["gone"].endswith("HTTP 404 Not Found")
    assert lines["later"].split()[1:5] == ["new", "-", "0", "now"]
    assert "outbox: 0 pending, 0 sent, 0 failed" in out

    # The blog breaks: failing now, its last success still shown.
    httpd.add("/feed", "gone", status=404, content_type="text/plain")
    cfg.write_text(config_text.split("  - name: gone")[0])
    clock.now = BASE_TIME + timedelta(hours=1)
    poll_once(cfg, now=clock)
    cfg.write_text(config_text)
    line = next(x for x in invoke(cfg, "status")[1].splitlines() if x.startswith("blog "))
    assert line.split()[1:4] == ["failing", polled_at, "1"] and line.endswith("HTTP 404 Not Found")


# -- alerts test ----------------------------------------------------------------------------------


def channels(httpd: LoopbackServer, *names: str) -> str:
    return "alerts:\n  channels:\n" + "".join(
        f"    - name: {n}\n      kind: webhook\n      url: {httpd.url('/' + n)}\n" for n in names
    )


def test_alerts_test_sends_on_each_channel_and_names_the_one_that_failed(
    tmp_path: Path, httpd: LoopbackServer
) -> None:
    httpd.add("/ops", body="{}", content_type="application/json")
    httpd.add("/down", body="down", status=500, content_type="text/plain")
    cfg = write_config(
        tmp_path, [("blog", httpd.url("/feed"))], extra=channels(httpd, "ops", "down")
    )
    code, out = invoke(cfg, "alerts", "test")
    assert code == 1, out  # a channel failed
    assert re.search(r"^  ok +ops$", out, re.M), out
    assert re.search(r"^  FAILED +down: .*500", out, re.M), out
    (sent,) = httpd.requests_for("/ops")
    assert json.loads(sent.body)["title"] == "Test alert from listener"


def test_alerts_test_without_channels_exits_2(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, [("blog", "http://127.0.0.1:9/feed")])
    code, out = invoke(cfg, "alerts", "test")
    assert code == 2 and "no alert channels" in out


# -- alerts flush ---------------------------------------------------------------------------------


def test_alerts_flush_delivers_what_the_outbox_holds_once(
    tmp_path: Path, httpd: LoopbackServer
) -> None:
    got: list[dict[str, object]] = []

    def receiver(request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        got.append(json.loads(request.body))
        return 200, {}, b"{}"

    httpd.add("/ops", handler=receiver)
    blog(httpd, ANGRY)
    rules = "  rules:\n    very_negative_mention:\n      sources: [blog]\n"
    cfg = write_config(
        tmp_path, [("blog", httpd.url("/feed"))], extra=channels(httpd, "ops") + rules
    )
    poll_once(cfg, now=Clock(BASE_TIME))  # queues the alert; nothing is sent yet
    assert got == []
    assert "outbox: 1 pending" in invoke(cfg, "status")[1]

    code, out = invoke(cfg, "alerts", "flush")
    assert code == 0, out
    assert "alerts: 1 sent, 0 still pending, 0 failed" in out
    assert len(got) == 1 and got[0]["brand"] == "Acme"

    code, out = invoke(cfg, "alerts", "flush")  # delivered once: nothing left to send
    assert code == 0 and "alerts: 0 sent, 0 still pending, 0 failed" in out
    assert len(got) == 1


# -- serve ----------------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path, httpd: LoopbackServer) -> Iterator[str]:
    """`listener serve --port 0` on a database polled from a loopback blog; yields its base URL."""
    blog(httpd, ANGRY)
    cfg = write_config(tmp_path, [("blog", httpd.url("/feed"))])
    poll_once(cfg, now=Clock(BASE_TIME))
    proc = subprocess.Popen(
        [sys.executable, "-m", "listener", "-c", str(cfg), "serve", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if found := re.search(r"(http://127\.0\.0\.1:[1-9][0-9]*)/-/dashboard", line):
                break
        else:
            raise AssertionError(f"serve exited {proc.wait()}:\n{''.join(seen)}")
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()


def test_serve_answers_the_canned_questions_on_the_configs_database(served: str) -> None:
    url = f"{served}/mentions/negative_mentions.json?hours=10000&_shape=objects"
    with urllib.request.urlopen(url, timeout=30) as page:
        found = json.load(page)["rows"]
    assert [(r["brand"], r["title"]) for r in found] == [("Acme", "Acme this week")]


def test_serve_without_a_database_says_to_poll_first(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, [("blog", "http://127.0.0.1:9/feed")])
    result = CliRunner().invoke(cli, ["-c", str(cfg), "serve"])
    assert result.exit_code == 1
    assert "no database yet" in result.output and "poll" in result.output
