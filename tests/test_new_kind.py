"""A new source kind is one module: this one is defined here, in the test, and nowhere in the
package. Registered through the public registry, it is validated by `check` (its secret shown
as ***), polled by `listener poll` against the loopback server (its secret masked in the fetch
log), and its mentions are stored, with no change to any other module (`listener/sources/base.py` is the contract it follows)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from helpers import kind_source, query_params, rows, write_config
from httpd import LoopbackServer
from pydantic import Field

import listener
from listener.cli import cli
from listener.models import Item, SourcePoll
from listener.sources import PollContext, SourceKind, register, unregister
from listener.sources.base import (
    Duration,
    KindOptions,
    Secret,
    WebUrl,
    load_options,
    oldest_first,
    pace,
    thread_key,
    with_thread_title,
)

KIND = "acmeforum"
PASSPHRASE = "open-sesame-4711"  # written into sources.yaml itself, not taken from ${VAR}

# ----------------------------------------------------------------------------------------------
# The kind: everything a new kind module would hold.
# ----------------------------------------------------------------------------------------------


class AcmeForumOptions(KindOptions):
    base_url: WebUrl
    query: str = Field(min_length=1)
    # A name no list of secret-looking words knows: only the `Secret` mark hides it.
    passphrase: Annotated[str | None, Secret] = None
    request_interval: Duration = 0.0


def _item(source: str, base_url: str, post: dict[str, Any]) -> Item:
    topic = post["topic"]
    return Item(
        source=source,
        native_id=str(post["id"]),
        url=f"{base_url}/t/{topic['id']}/{post['id']}",
        title=post.get("title") or "",
        text=post["text"],
        author=post.get("author"),
        published_at=datetime.fromtimestamp(post["created"], UTC),
        thread_key=thread_key(KIND, topic["id"]),
        is_reply=not post.get("title"),
        extra=with_thread_title({}, topic["title"]),
    )


async def poll(ctx: PollContext) -> SourcePoll:
    opts = load_options(AcmeForumOptions, ctx)
    # This API wants its key in the query string, under a name no list of secret words knows.
    query = {"q": opts.query, **({"pass": opts.passphrase} if opts.passphrase else {})}
    url = f"{opts.base_url}/search.json?{urlencode(query)}"
    pace(ctx, url, opts.request_interval)
    response = await ctx.fetcher.get(url, accept="application/json")
    if response.error or not response.ok:  # never raise: say what happened
        return SourcePoll(items=[], responses=[response], error=f"forum: {response.error}")
    try:
        posts = json.loads(response.body)["posts"]
    except (ValueError, KeyError, TypeError) as exc:
        return SourcePoll(items=[], responses=[response], error=f"forum sent no posts: {exc}")
    items = oldest_first([_item(ctx.spec.name, opts.base_url, p) for p in posts])
    seen = max((p["id"] for p in posts), default=ctx.state.cursor.get("seen", 0))
    return SourcePoll(items=items, responses=[response], cursor={"seen": seen})


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    """What the module's last line would do, `register(SourceKind(...))`; undone after each test
    so other tests see only the package's kinds."""
    register(SourceKind(name=KIND, options_model=AcmeForumOptions, poll=poll))
    yield
    unregister(KIND)


# ----------------------------------------------------------------------------------------------
# What a user sees
# ----------------------------------------------------------------------------------------------

NOW = int(datetime.now(UTC).timestamp())
# Two replies in one forum topic, newest first as the API sends them; the topic's first post
# (the only one with a title) is not among them.
POSTS = {
    "posts": [
        {
            "id": 13,
            "text": "Same here, Acme support never answered my refund request. Awful.",
            "author": "bob",
            "created": NOW - 600,
            "topic": {"id": 7, "title": "Refunds are broken"},
        },
        {
            "id": 12,
            "text": "I returned my Acme skates a month ago and I am still waiting, terrible.",
            "author": "alice",
            "created": NOW - 3600,
            "topic": {"id": 7, "title": "Refunds are broken"},
        },
    ]
}


def _config(tmp_path: Path, httpd: LoopbackServer, **extra: object) -> Path:
    source = kind_source(
        "acme-forum",
        KIND,
        base_url=httpd.url("/forum/"),  # a trailing slash, as users write it
        query="acme",
        passphrase=PASSPHRASE,
        **extra,
    )
    return write_config(tmp_path, [], extra=source)


def test_check_accepts_the_kind_and_masks_its_secret(tmp_path: Path, httpd: LoopbackServer) -> None:
    cfg = _config(tmp_path, httpd)
    result = CliRunner().invoke(cli, ["-c", str(cfg), "check"])
    assert result.exit_code == 0, result.output
    (line,) = [ln for ln in result.output.splitlines() if "acme-forum" in ln]
    assert KIND in line and "query=acme" in line
    assert "passphrase=***" in line
    assert PASSPHRASE not in result.output
    # The options' repr (what a log line or a traceback would show) hides it too.
    opts = AcmeForumOptions(base_url=httpd.url("/"), query="acme", passphrase=PASSPHRASE)
    assert PASSPHRASE not in repr(opts) and "passphrase='***'" in repr(opts)


def test_check_names_an_unknown_option_of_the_kind(tmp_path: Path, httpd: LoopbackServer) -> None:
    cfg = _config(tmp_path, httpd, pasphrase="typo")
    result = CliRunner().invoke(cli, ["-c", str(cfg), "check"])
    assert result.exit_code == 2
    assert "pasphrase" in result.stderr


def test_poll_polls_the_kind_and_stores_its_mentions(tmp_path: Path, httpd: LoopbackServer) -> None:
    httpd.add("/forum/search.json", json.dumps(POSTS), content_type="application/json")
    cfg = _config(tmp_path, httpd)

    result = CliRunner().invoke(cli, ["-c", str(cfg), "poll"])

    assert result.exit_code == 0, result.output
    (request,) = httpd.requests_for("/forum/search.json")  # base_url lost its trailing slash
    assert query_params(request) == {"q": "acme", "pass": PASSPHRASE}  # sent where it is for
    stored = rows(tmp_path, "SELECT brand, source, url, label FROM mentions ORDER BY published_at")
    assert stored == [
        ("Acme", "acme-forum", httpd.url("/forum/t/7/12"), "negative"),
        ("Acme", "acme-forum", httpd.url("/forum/t/7/13"), "negative"),
    ]
    # One conversation, under the title the kind gave its replies (`with_thread_title`).
    assert rows(tmp_path, "SELECT key, title FROM threads") == [(f"{KIND}:7", "Refunds are broken")]
    assert "1 ok, 0 failed" in result.output and "new mentions: 2 (2 negative" in result.output
    # ... and nowhere else: the fetch log keeps the URL with the secret masked.
    ((url,),) = rows(tmp_path, "SELECT url FROM fetches")
    assert url == httpd.url("/forum/search.json?q=acme&pass=***")
    # Nothing in the package knows this kind: it lives in this module only.
    package = Path(listener.__file__).parent
    assert not [p for p in package.rglob("*.py") if KIND in p.read_text(encoding="utf-8")]
