"""A source's options are validated once, when the config is read: the kind polls with the very
options object config built (no second validation per poll), and `check` still shows them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
from click.testing import CliRunner
from helpers import kind_source, write_config
from httpd import LoopbackServer
from pydantic import AfterValidator

from listener.cli import cli
from listener.config import load_config
from listener.models import SourcePoll
from listener.sources import PollContext, SourceKind, register, unregister
from listener.sources.base import KindOptions, WebUrl, load_options
from listener.sources.hackernews import HackerNewsOptions

KIND = "countedforum"
VALIDATED: list[str] = []
SEEN: list[object] = []


def _counted(value: str) -> str:
    VALIDATED.append(value)
    return value


class CountedOptions(KindOptions):
    base_url: WebUrl
    query: Annotated[str, AfterValidator(_counted)]


async def poll(ctx: PollContext) -> SourcePoll:
    opts = load_options(CountedOptions, ctx)
    SEEN.append(opts)
    response = await ctx.fetcher.get(f"{opts.base_url}/search.json?q={opts.query}")
    return SourcePoll(items=[], responses=[response], cursor={})


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    VALIDATED.clear()
    SEEN.clear()
    register(SourceKind(name=KIND, options_model=CountedOptions, poll=poll))
    yield
    unregister(KIND)


def test_a_poll_uses_the_options_config_validated(tmp_path: Path, httpd: LoopbackServer) -> None:
    httpd.add("/forum/search.json", json.dumps({"posts": []}), content_type="application/json")
    cfg = write_config(
        tmp_path, [], extra=kind_source("forum", KIND, base_url=httpd.url("/forum/"), query="acme")
    )
    (spec,) = load_config(cfg, env={}).sources
    assert isinstance(spec.options, CountedOptions) and spec.options.query == "acme"
    VALIDATED.clear()

    for _ in range(2):
        result = CliRunner().invoke(cli, ["-c", str(cfg), "poll"])
        assert result.exit_code == 0, result.output
    # Each `listener poll` reads the config (one validation) and polls with what it built.
    assert VALIDATED == ["acme", "acme"]
    assert [type(o) for o in SEEN] == [CountedOptions, CountedOptions]
    assert len(httpd.requests_for("/forum/search.json")) == 2


def test_a_package_kind_reads_its_typed_options(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        [],
        extra=kind_source("hn", "hackernews", query="acme", base_url="http://127.0.0.1:9/"),
    )
    (spec,) = load_config(cfg, env={}).sources
    assert isinstance(spec.options, HackerNewsOptions)
    assert spec.options.query == "acme" and spec.options.base_url == "http://127.0.0.1:9"
    result = CliRunner().invoke(cli, ["-c", str(cfg), "check"])
    assert result.exit_code == 0, result.output
    assert "query=acme" in result.output and "base_url=http://127.0.0.1:9" in result.output
