"""An error message never quotes text a remote server chose (issue 15, point 4).

Loopback APIs answer with error bodies carrying a hostile string, and a loopback Slack receiver
refuses with one; the string is looked for in the whole SQLite file (`sources.last_error`,
`fetches.error`, the outbox), in what `poll`, `status` and `alerts flush` print, and in the
source-health alert a loopback webhook receives. It is nowhere: the errors are in our words.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import kind_source, write_config
from httpd import LoopbackServer, RequestInfo

from listener.cli import cli
from listener.sources import reddit as reddit_module

MARK = "SECRET-BODY-TEXT"
HOSTILE = f"<script>{MARK}</script> call 555-0100"
ENV = {"API_SECRET": "s3cret-value"}
JSON = "application/json"


class Receiver:
    """A webhook receiver on the loopback server: keeps every body it was sent."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def __call__(self, request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        self.bodies.append(request.body.decode())
        return 200, {}, b"ok"


def _json(status: int, doc: object) -> Callable[[RequestInfo], tuple[int, dict[str, str], bytes]]:
    body = json.dumps(doc).encode()
    return lambda info: (status, {"Content-Type": JSON}, body)


def github(httpd: LoopbackServer) -> str:
    doc = {"message": HOSTILE, "errors": [{"message": HOSTILE, "code": "invalid"}]}
    httpd.add("/search/issues", handler=_json(422, doc))
    return kind_source("api", "github", query="acme", base_url=httpd.base_url, request_interval=0)


def stackexchange(httpd: LoopbackServer) -> str:
    doc = {"error_id": 400, "error_name": HOSTILE, "error_message": HOSTILE}
    httpd.add("/2.3/search/excerpts", handler=_json(400, doc))
    return kind_source(
        "api", "stackexchange", query="acme", base_url=httpd.base_url, request_interval=0
    )


def lemmy(httpd: LoopbackServer) -> str:
    httpd.add("/api/v3/search", handler=_json(400, {"error": HOSTILE}))
    return kind_source("api", "lemmy", query="acme", base_url=httpd.base_url, request_interval=0)


def bluesky(httpd: LoopbackServer) -> str:
    doc = {"error": HOSTILE, "message": HOSTILE}
    httpd.add("/xrpc/com.atproto.server.createSession", handler=_json(400, doc))
    return kind_source(
        "api",
        "bluesky",
        query="acme",
        identifier="bot.example.com",
        app_password="${API_SECRET}",
        base_url=httpd.url("/xrpc"),
        request_interval=0,
    )


def gdelt(httpd: LoopbackServer) -> str:
    # GDELT says no in plain text, with 200 OK.
    httpd.add("/api/v2/doc/doc", f"Denied: {HOSTILE}\n", content_type="text/html")
    return kind_source("api", "gdelt", query="acme", base_url=httpd.url("/api/v2"))


def reddit(httpd: LoopbackServer) -> str:
    # A refused grant is a 200 with {"error": ...}.
    httpd.add("/api/v1/access_token", handler=_json(200, {"error": HOSTILE}))
    return kind_source(
        "api",
        "reddit",
        query="acme",
        client_id="app-id",
        client_secret="${API_SECRET}",
        base_url=httpd.base_url,
        oauth_base_url=httpd.base_url,
    )


def run(cfg: Path) -> Callable[..., str]:
    runner = CliRunner()

    def invoke(*args: str) -> str:
        result = runner.invoke(cli, ["-c", str(cfg), *args], env=ENV)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        return result.output

    return invoke


def database_bytes(tmp_path: Path) -> bytes:
    """The SQLite file and its WAL, as a reader of the disk would see them."""
    return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("mentions.db*")))


@pytest.mark.parametrize(
    "serve", [github, stackexchange, lemmy, bluesky, gdelt, reddit], ids=lambda f: f.__name__
)
def test_an_api_error_body_is_never_stored_shown_or_sent(
    tmp_path: Path, httpd: LoopbackServer, serve: Callable[[LoopbackServer], str]
) -> None:
    reddit_module._tokens.clear()
    hook = Receiver()
    httpd.add("/hook", handler=hook)
    channels = (
        "alerts:\n  channels:\n"
        f"    - name: ops\n      kind: webhook\n      url: {httpd.url('/hook')}\n"
        "  rules:\n    source_health:\n      failures: 1\n"
    )
    cfg = write_config(tmp_path, [], extra=serve(httpd) + channels)
    invoke = run(cfg)

    polled = invoke("poll")
    assert "every source failed (1 of 1)" in polled
    status = invoke("status")
    assert "failing" in status
    flushed = invoke("alerts", "flush")
    assert "1 sent" in flushed
    (alert,) = [json.loads(body) for body in hook.bodies]
    assert alert["rule"] == "source_health"

    # The error is there, in our words ...
    (error,) = [r for r in status.splitlines() if "refused" in r or "did not accept" in r]
    assert error
    # ... and what the server wrote is nowhere.
    for where, text in [
        ("poll", polled),
        ("status", status),
        ("alerts flush", flushed),
        ("webhook", "\n".join(hook.bodies)),
    ]:
        assert MARK not in text, f"the server's text in {where}"
        assert "555-0100" not in text, f"the server's text in {where}"
    assert MARK.encode() not in database_bytes(tmp_path)


def test_a_slack_refusal_body_is_never_stored_or_shown(
    tmp_path: Path, httpd: LoopbackServer
) -> None:
    httpd.add("/feed", "gone", status=404, content_type="text/plain")
    httpd.add("/slack", HOSTILE, status=400, content_type="text/plain")
    channels = (
        "alerts:\n  channels:\n"
        f"    - name: team\n      kind: slack\n      webhook_url: {httpd.url('/slack')}\n"
        "  rules:\n    source_health:\n      failures: 1\n"
    )
    cfg = write_config(tmp_path, [("blog", httpd.url("/feed"))], extra=channels)
    invoke = run(cfg)

    invoke("poll")
    flushed = invoke("alerts", "flush")
    status = invoke("status")
    assert httpd.hits["/slack"] == 1  # the receiver got it and said no
    for where, text in [("alerts flush", flushed), ("status", status)]:
        assert MARK not in text, f"the receiver's reply in {where}"
    assert MARK.encode() not in database_bytes(tmp_path)
    # The outbox says what happened in our words: the status, and that the receiver refused.
    assert "Slack team: HTTP 400 — the receiver refused the message" in status
