"""A value from the environment is a secret everywhere it goes (issue 15, point 6).

Loopback feeds configured with `?token=${FEED_TOKEN}`, `http://reader:${FEED_PASS}@127.0.0.1/...`
and a secret in the path are polled through the command line, succeeding and then failing; the
secret values are looked for in the whole SQLite file, in what `check`, `status`, `poll` and
`alerts flush` print, in the logs, and in the source-health alerts a loopback webhook receives.
They are nowhere, while the loopback server saw every one of them in its requests.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import rss, write_config
from httpd import LoopbackServer, RequestInfo

from listener.cli import cli
from listener.config import ConfigError, load_config
from listener.secrets import mask, mask_url

TOKEN = "tok-Zq81fWm"
PASSWORD = "pw-Kx52vRb"
PATH_KEY = "pk-Lw73nTc"
ENV = {"FEED_TOKEN": TOKEN, "FEED_PASS": PASSWORD, "FEED_PATH_KEY": PATH_KEY}
SECRETS = (TOKEN, PASSWORD, PATH_KEY)


class Receiver:
    """A webhook receiver on the loopback server: keeps every body it was sent."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def __call__(self, request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        self.bodies.append(request.body.decode())
        return 200, {}, b"ok"


def feeds(httpd: LoopbackServer) -> None:
    """Feeds without a link of their own and with relative links: resolved against the feed's
    URL, the links would carry its password or token into the stored items."""

    def feed(title: str, link: str, comments: str = "") -> str:
        entry = {"title": title, "link": link, "body": f"{title}: Acme opened a new shop."}
        return rss([{**entry, "comments": comments} if comments else entry], link="")

    httpd.add("/feed", feed("Acme skates", "#post-1"))
    httpd.add("/private", feed("Acme news", "/posts/2", comments="/private-comments"))
    httpd.add("/private-comments", feed("Re: Acme news", "/posts/2#c1"))
    httpd.add(f"/k/{PATH_KEY}/rss", feed("Acme", "/p/3"))


def config(tmp_path: Path, httpd: LoopbackServer) -> Path:
    base = httpd.url("")
    private = base.replace("http://", "http://reader:${FEED_PASS}@") + "private"
    channels = (
        "alerts:\n  channels:\n"
        f"    - name: ops\n      kind: webhook\n      url: {httpd.url('/hook')}\n"
        "  rules:\n    source_health:\n      failures: 1\n"
    )
    return write_config(
        tmp_path,
        [
            ("tokened", base + "feed?token=${FEED_TOKEN}&q=acme"),
            ("protected", private),
            ("pathed", base + "k/${FEED_PATH_KEY}/rss"),
        ],
        extra=channels,
    )


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} in {where}"


def test_secrets_from_the_environment_are_never_stored_shown_logged_or_sent(
    tmp_path: Path, httpd: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hook = Receiver()
    httpd.add("/hook", handler=hook)
    feeds(httpd)
    cfg = config(tmp_path, httpd)
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, ["-vv", "-c", str(cfg), *args], env=ENV)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        return result.output

    check = run("check")
    assert "feed?token=***&q=acme" in check and "http://reader:***@127.0.0.1" in check
    assert "/k/***/rss" in check
    first = run("poll")
    assert "sources: 3 ok, 0 failed" in first

    # The real values went into the requests, and only there.
    (feed_request,) = httpd.requests_for("/feed")
    assert f"token={TOKEN}" in feed_request.path
    basic = "Basic " + base64.b64encode(f"reader:{PASSWORD}".encode()).decode()
    assert httpd.requests_for("/private")[0].headers["authorization"] == basic
    # The comment feed linked from the protected feed is read with the same password.
    assert httpd.requests_for("/private-comments")[0].headers["authorization"] == basic
    assert httpd.hits[f"/k/{PATH_KEY}/rss"] == 1

    # Now every source fails: redirect loops whose errors quote the URLs, and a 401.
    httpd.add("/feed", redirect_to=httpd.url(f"/feed?token={TOKEN}&q=acme"))
    httpd.add("/private", "who are you?", status=401, content_type="text/plain")
    httpd.add(f"/k/{PATH_KEY}/rss", redirect_to=httpd.url(f"/k/{PATH_KEY}/rss"))
    second = run("poll")
    assert "every source failed (3 of 3)" in second and "redirect loop" in second
    status = run("status")
    assert "redirect loop" in status and "failing" in status
    flushed = run("alerts", "flush")
    assert "3 sent" in flushed

    alerts = [json.loads(body) for body in hook.bodies]
    assert sorted(a["rule"] for a in alerts) == ["source_health"] * 3
    assert any("token=***" in body for body in hook.bodies)

    # What listener logged (the loopback server's own log lines are the peer's, not ours).
    logged = "\n".join(
        caplog.handler.format(r) for r in caplog.records if r.name.startswith("listener")
    )
    for where, text in [
        ("check", check),
        ("poll", first + second),
        ("status", status),
        ("alerts flush", flushed),
        ("logs", logged),
        ("webhook", "\n".join(hook.bodies)),
    ]:
        assert_no_secret(where, text)
    assert "GET http://127.0.0.1" in logged and "redirect loop" in logged  # they did speak of it
    database = b"".join(
        p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("mentions.db")
    )
    assert b"token=***" in database  # the sources and fetch log show the masked URL
    for secret in SECRETS:
        assert secret.encode() not in database, secret


def test_a_password_in_a_url_and_secret_parameters_are_masked_even_when_written_in_the_file(
    tmp_path: Path, httpd: LoopbackServer
) -> None:
    feeds(httpd)
    base = httpd.url("")
    cfg = write_config(
        tmp_path,
        [
            ("protected", base.replace("http://", "http://reader:hunter22@") + "private"),
            ("signed", base + "feed?sig=abc123&api_key=k9&page=2"),
        ],
    )
    runner = CliRunner()
    check = runner.invoke(cli, ["-c", str(cfg), "check"], env={}).output
    assert "http://reader:***@127.0.0.1" in check
    assert "feed?sig=***&api_key=***&page=2" in check
    assert runner.invoke(cli, ["-c", str(cfg), "poll"], env={}).exit_code == 0
    database = (tmp_path / "mentions.db").read_bytes()
    for secret in (b"hunter22", b"abc123", b"=k9"):
        assert secret not in database
    # With the httpx transport too, the password reaches the server as Basic credentials.
    cfg.write_text(cfg.read_text().replace("fetch:\n", "fetch:\n  transport: httpx\n"))
    httpd.reset()
    assert runner.invoke(cli, ["-c", str(cfg), "poll"], env={}).exit_code == 0
    sent = httpd.requests_for("/private")[0].headers.get("authorization")
    assert sent == "Basic " + base64.b64encode(b"reader:hunter22").decode()


def test_a_config_error_does_not_quote_a_value_from_the_environment(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, [("blog", "https://blog.example.com/feed")])
    cfg.write_text(cfg.read_text().replace("every: 15m", "every: ${POLL_EVERY}"))
    with pytest.raises(ConfigError) as caught:
        load_config(cfg, env={"POLL_EVERY": "sometimes-Qv93"})
    assert "sources[0].every" in str(caught.value)
    assert "sometimes-Qv93" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://feeds.example.com/x?token=abc", "https://feeds.example.com/x?token=***"),
        ("https://user:pa%40ss@host/", "https://user:***@host/"),
        (
            "https://host/a?Access_Token=t&q=acme+co#top",
            "https://host/a?Access_Token=***&q=acme+co#top",
        ),
        ("https://host/a?key=&q=1", "https://host/a?key=&q=1"),
        ("https://user@host/feed", "https://user@host/feed"),
        ("http://[bad/x?token=t1", "http://[bad/x?token=***"),  # no parser takes it: still masked
    ],
)
def test_masked_url_forms(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_values_are_masked_as_written_and_as_url_encoded() -> None:
    secret = "p@ss word/1"
    text = "GET https://h/?q=p%40ss%20word%2F1 failed; p@ss word/1 refused"
    assert mask(text, {secret}) == "GET https://h/?q=*** failed; *** refused"
    assert mask("port 587 open", {"587"}) == "port 587 open"  # too short to search for
    said = "failed at http://u:pw@h/x?sig=zz, see (http://h/?token=a)."
    assert mask(said) == "failed at http://u:***@h/x?sig=***, see (http://h/?token=***)."


def test_check_shows_which_options_are_set_but_never_their_secret_values(tmp_path: Path) -> None:
    source = (
        "  - name: gh\n    kind: github\n    query: acme\n    token: ghp_Ux84qLs\n"
        "    base_url: http://127.0.0.1:9/${GH_PATH}\n"
    )
    cfg = write_config(tmp_path, [], extra=source)
    env = {"GH_PATH": "mirror-Pd61kHz"}  # the token is written in the file: a secret by name
    output = CliRunner().invoke(cli, ["-c", str(cfg), "check"], env=env).output
    assert "query=acme" in output and "token=***" in output
    assert "base_url=http://127.0.0.1:9/***" in output
    assert "ghp_Ux84qLs" not in output and "mirror-Pd61kHz" not in output


def test_status_masks_secrets_a_database_of_an_earlier_version_still_holds(
    tmp_path: Path, httpd: LoopbackServer
) -> None:
    feeds(httpd)
    cfg = config(tmp_path, httpd)
    runner = CliRunner()
    assert runner.invoke(cli, ["-c", str(cfg), "poll"], env=ENV).exit_code == 0
    conn = sqlite3.connect(tmp_path / "mentions.db")
    with conn:  # as an earlier version wrote it: the URL in the error, unmasked
        conn.execute(
            "UPDATE sources SET last_error = ?, consecutive_failures = 1 WHERE name = 'pathed'",
            (f"redirect loop: {httpd.url(f'/k/{PATH_KEY}/rss')}",),
        )
    conn.close()
    status = runner.invoke(cli, ["-c", str(cfg), "status"], env=ENV).output
    assert "redirect loop: http://127.0.0.1" in status and "/k/***/rss" in status
    assert PATH_KEY not in status
