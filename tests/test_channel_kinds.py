"""Alert channels behind a registry, like the source kinds: a channel kind defined only in this
test module is validated by `check`, and `alerts test` sends through it, on the process's one
HTTP client (the fetcher's: its User-Agent and timeouts). The alert settings arrive as plain
frozen data, their defaults the ones config validates."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from click.testing import CliRunner
from helpers import write_config
from httpd import LoopbackServer
from pydantic import BaseModel, Field

import listener
from listener.alerts.channels import (
    ChannelOptions,
    Delivery,
    SlackRateLimiter,
    register_channel,
    unregister_channel,
)
from listener.alerts.message import AlertMessage, Digest
from listener.cli import cli
from listener.config import load_config
from listener.models import Retention, Rules

KIND = "chatroom"
AGENT = "AcmeWatch/2.0 (+https://acme.example/bot)"


class ChatroomOptions(ChannelOptions):
    room_url: str = Field(pattern=r"^https?://\S+$")
    digest: None = None


@dataclasses.dataclass(frozen=True)
class ChatroomChannel:
    kind: ClassVar[str] = KIND
    name: str
    room_url: str
    digest: str | None = None


async def send(
    channel: ChatroomChannel,
    message: AlertMessage | Digest,
    *,
    http: httpx.AsyncClient,
    limiter: SlackRateLimiter,
    user_agent: str,
) -> Delivery:
    # No headers of its own: what the shared client sends is what the room sees.
    title = message.title if isinstance(message, AlertMessage) else "digest"
    response = await http.post(channel.room_url, json={"say": title})
    return Delivery(ok=response.is_success, error=f"HTTP {response.status_code}")


def build(options: ChatroomOptions) -> ChatroomChannel:
    return ChatroomChannel(name=options.name, room_url=options.room_url)


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    register_channel(KIND, ChatroomOptions, build, send)
    yield
    unregister_channel(KIND)


def _config(tmp_path: Path, channels: str, fetch: str = "") -> Path:
    cfg = write_config(
        tmp_path, [("blog", "http://127.0.0.1:9/feed")], extra="alerts:\n  channels:\n" + channels
    )
    cfg.write_text(cfg.read_text().replace("fetch:\n", "fetch:\n" + fetch, 1))
    return cfg


def _invoke(cfg: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-c", str(cfg), *args])
    return result.exit_code, result.output


def test_check_knows_the_new_channel_kind(tmp_path: Path, httpd: LoopbackServer) -> None:
    room = f"    - name: ops-room\n      kind: {KIND}\n      room_url: {httpd.url('/room')}\n"
    code, out = _invoke(_config(tmp_path, room), "check")
    assert code == 0, out
    assert "alert channels (1): ops-room (chatroom)" in out
    # Its options are its own model's: an unknown key is named, with the near miss.
    code, out = _invoke(_config(tmp_path, room.replace("room_url", "room_ulr")), "check")
    assert code == 2
    assert "alerts.channels[0].room_ulr: unknown key (did you mean room_url?)" in out
    # And it is among the known kinds when a kind is misspelt.
    code, out = _invoke(_config(tmp_path, room.replace(f"kind: {KIND}", "kind: chatrom")), "check")
    assert code == 2
    assert "unknown channel kind 'chatrom' (did you mean chatroom?); known kinds: " in out
    assert "slack, email, webhook, chatroom" in out
    # Nothing in the package knows this kind.
    package = Path(listener.__file__).parent
    assert not [p for p in package.rglob("*.py") if KIND in p.read_text(encoding="utf-8")]


def test_alerts_test_sends_through_the_new_kind_on_the_fetchers_client(
    tmp_path: Path, httpd: LoopbackServer
) -> None:
    httpd.add("/room", body="{}", content_type="application/json")
    room = f"    - name: ops-room\n      kind: {KIND}\n      room_url: {httpd.url('/room')}\n"
    cfg = _config(tmp_path, room, fetch=f"  user_agent: {AGENT}\n")
    code, out = _invoke(cfg, "alerts", "test")
    assert code == 0, out
    assert re.search(r"^  ok +ops-room$", out, re.M), out
    (sent,) = httpd.requests_for("/room")
    assert json.loads(sent.body) == {"say": "Test alert from listener"}
    # The channel set no header: the User-Agent is the one every source request carries.
    assert sent.headers["user-agent"] == AGENT


def test_a_channel_waits_no_longer_than_the_configured_read_timeout(
    tmp_path: Path, httpd: LoopbackServer
) -> None:
    httpd.add("/hook", body="{}", content_type="application/json", delay=3.0)
    hook = f"    - name: slow-hook\n      kind: webhook\n      url: {httpd.url('/hook')}\n"
    cfg = _config(tmp_path, hook)
    cfg.write_text(cfg.read_text().replace("read_timeout: 5s", "read_timeout: 1s"))
    code, out = _invoke(cfg, "alerts", "test")
    assert code == 1, out
    assert re.search(r"^  FAILED +slow-hook: webhook slow-hook: timed out", out, re.M), out


def test_alert_settings_are_plain_frozen_data_with_the_validated_defaults(tmp_path: Path) -> None:
    hook = "    - name: hook\n      kind: webhook\n      url: http://127.0.0.1:9/hook\n"
    config = load_config(_config(tmp_path, hook), env={})
    alerts = config.alerts
    assert alerts.rules == Rules()  # the dataclasses' defaults are the ones config validates
    assert config.retention == Retention()
    assert not isinstance(alerts.rules.spike, BaseModel)
    (channel,) = alerts.channels
    assert (channel.name, channel.kind, channel.url) == (
        "hook",
        "webhook",
        "http://127.0.0.1:9/hook",
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        alerts.rules.spike.k = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        channel.url = "http://127.0.0.1:9/other"  # type: ignore[misc]


def test_a_webhook_on_this_machine_is_reachable_through_the_guarded_client(
    tmp_path: Path, httpd: LoopbackServer
) -> None:
    """The shared client only reaches the internal addresses the config names: a channel's own
    address is one of them, also when no source lives on this machine."""
    httpd.add("/hook", body="{}", content_type="application/json")
    hook = f"    - name: local-hook\n      kind: webhook\n      url: {httpd.url('/hook')}\n"
    cfg = _config(tmp_path, hook, fetch="  transport: httpx\n")
    cfg.write_text(
        cfg.read_text().replace("http://127.0.0.1:9/feed", "https://blog.example.com/feed")
    )
    code, out = _invoke(cfg, "alerts", "test")
    assert code == 0, out
    assert len(httpd.requests_for("/hook")) == 1
