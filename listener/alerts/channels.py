"""Deliver one alert (or digest) to one channel: Slack incoming webhook, SMTP email, JSON webhook.

`send_alert` never raises for a delivery problem: it answers a `Delivery` that tells the outbox
whether the alert went out, and if not whether trying again can help (`permanent`) and when
(`retry_after_s`). Error texts name the channel, never its secrets (webhook URLs carry a token,
and errors end up in the outbox table that Datasette shows).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import smtplib
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Annotated, Any, ClassVar, Literal, Protocol

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from listener.alerts.message import AlertMessage, Digest, digest_to_dict, message_to_dict
from listener.alerts.render import clean_text, render_email, render_slack, truncate
from listener.fetch import BlockedAddress, default_user_agent
from listener.units import clamp_wait, parse_retry_after

log = logging.getLogger(__name__)

ERROR_BODY_MAX = 200


@dataclass(frozen=True)
class SlackChannel:
    kind: ClassVar[str] = "slack"
    name: str
    webhook_url: str = field(repr=False)  # the URL is the credential
    digest: str | None = None  # None (send at once) | "hourly" | "daily"


@dataclass(frozen=True)
class EmailChannel:
    kind: ClassVar[str] = "email"
    name: str
    host: str
    port: int
    from_addr: str
    to: tuple[str, ...]
    starttls: bool = False
    ssl: bool = False  # implicit TLS (port 465); wins over starttls
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 20
    digest: str | None = None


@dataclass(frozen=True)
class WebhookChannel:
    kind: ClassVar[str] = "webhook"
    name: str
    url: str = field(repr=False)  # may carry a token in its query
    headers: Mapping[str, str] = field(default_factory=dict, hash=False, repr=False)
    digest: str | None = None


class Channel(Protocol):
    """What every channel object is (whatever its kind's builder returns): a name, the kind it
    was registered under, and its digest setting (None: send at once, "hourly", "daily")."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def digest(self) -> str | None: ...


@dataclass(frozen=True)
class Delivery:
    ok: bool
    error: str | None = None
    retry_after_s: float | None = None  # what the receiver asked for (429 Retry-After)
    # Retrying the same message will not help (bad credentials, webhook gone, address rejected):
    # the outbox should stop and a person must fix the channel.
    permanent: bool = False


# ------------------------------------------------------------------------------ rate limiting


# Slack documents "1 per second, short bursts >1 allowed" for posting messages, incoming webhooks
# included (https://api.slack.com/docs/rate-limits). A burst this size goes out at once; past it,
# messages are spaced one a second, so a sustained stream stays within the documented rate.
SLACK_BURST = 5


class SlackRateLimiter:
    """A token bucket per webhook URL: up to `burst` messages at once, refilled one every
    `interval_s` (Slack allows about 1/s with short bursts). `burst=1` is strict pacing.

    Each caller reserves its slot before it sleeps (the bucket is kept as the time its next
    token is "paid off", as in GCRA), so concurrent senders queue up in order without a lock and
    the limiter is not tied to one event loop. `hold` empties a bucket until a time the receiver
    asked for (a 429's Retry-After). `clock` and `sleep` are injectable so tests need not wait.
    """

    def __init__(
        self,
        interval_s: float = 1.0,
        *,
        burst: int = SLACK_BURST,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.interval_s = interval_s
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        # Per key: when the bucket would be full again if nothing more were sent.
        self._full_at: dict[str, float] = {}

    def _slot(self, key: str, now: float) -> tuple[float, float]:
        """(when `key`'s next message may go, the bucket's "full again" time after it)."""
        full_at = max(now, self._full_at.get(key, now))
        # A message may go once at most `burst - 1` earlier ones are still being paid off.
        slot = max(now, full_at - (self.burst - 1) * self.interval_s)
        return slot, full_at + self.interval_s

    def delay(self, key: str) -> float:
        """Seconds until `key` may send (0 when a message could go now); reserves nothing."""
        now = self._clock()
        return self._slot(key, now)[0] - now

    async def wait(self, key: str) -> float:
        """Wait for `key`'s next slot; returns the seconds waited (0 when the slot was free)."""
        now = self._clock()
        slot, self._full_at[key] = self._slot(key, now)
        delay = slot - now
        if delay > 0:
            await self._sleep(delay)
        return delay

    def hold(self, key: str, seconds: float) -> None:
        """Send nothing more on `key` for `seconds` (what a 429 asked for), and then no burst:
        one message per `interval_s` until the bucket has refilled."""
        until = self._clock() + max(seconds, 0.0)
        full_at = until + (self.burst - 1) * self.interval_s
        self._full_at[key] = max(self._full_at.get(key, full_at), full_at)


# Used when the caller does not pass one, so the limit holds across calls in one process.
DEFAULT_SLACK_LIMITER = SlackRateLimiter()


# ---------------------------------------------------------------------------------- send_alert


async def send_alert(
    channel: Channel,
    message: AlertMessage | Digest,
    *,
    http: httpx.AsyncClient,
    limiter: SlackRateLimiter | None = None,
    user_agent: str | None = None,
) -> Delivery:
    """Deliver `message` on `channel`. Never raises for delivery problems.

    `http` is used for Slack and webhooks (redirects are never followed: a POST must not turn into
    a GET elsewhere); email goes through stdlib smtplib in a worker thread. `limiter` spaces Slack
    messages per webhook URL (default: one shared process-wide limiter). `user_agent` is the one
    the fetcher sends (default: listener's own), on HTTP posts and as the email's User-Agent.
    """
    if isinstance(message, Digest) and not message.messages:
        log.debug("channel %s: empty digest, nothing to send", channel.name)
        return Delivery(ok=True)
    user_agent = user_agent or default_user_agent()
    kind = _CHANNEL_KINDS.get(channel.kind)
    if kind is None:
        return Delivery(False, f"unknown channel kind {channel.kind!r}", permanent=True)
    try:
        result = await kind.send(
            channel,
            message,
            http=http,
            limiter=limiter or DEFAULT_SLACK_LIMITER,
            user_agent=user_agent,
        )
    except Exception as exc:
        # A bug in rendering or an unexpected library error: keep the outbox loop alive and the
        # alert pending (a fixed version can deliver it), and leave the traceback in the log.
        log.exception("channel %s: unexpected error while sending", channel.name)
        return Delivery(False, f"{channel.name}: unexpected {type(exc).__name__} (see log)")
    if result.ok:
        log.debug("channel %s: delivered %s", channel.name, _message_key(message))
    else:
        log.log(
            logging.WARNING if result.permanent else logging.INFO,
            "channel %s: not delivered (%s): %s",
            channel.name,
            "permanent" if result.permanent else "will retry",
            result.error,
        )
    return result


def _message_key(message: AlertMessage | Digest) -> str:
    return message.digest_id if isinstance(message, Digest) else message.alert_id


def _short(text: str | bytes | None, limit: int = ERROR_BODY_MAX) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return truncate(clean_text(text), limit)


def _redact(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<url>")
    return text


def _json_safe(value: Any) -> Any:
    """NaN / infinity (a mean over nothing) are not JSON: send them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


# --------------------------------------------------------------------------------------- HTTP


def retry_after_of(response: httpx.Response, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (seconds or HTTP date) or a JSON
    `retry_after` field (`units.parse_retry_after`, `units.clamp_wait`): finite, at most
    `units.RETRY_AFTER_MAX_S` (so one odd header cannot park an alert for years); None when
    the receiver did not say, or said something unusable (the outbox's backoff applies)."""
    wait = parse_retry_after(response.headers.get("retry-after"), now=now)
    if wait is not None:
        return wait
    try:
        data = json.loads(response.content[:10_000])
    except (ValueError, RecursionError):
        return None
    return clamp_wait(data.get("retry_after")) if isinstance(data, dict) else None


# What Slack's incoming webhooks answer, and what a person should do about it.
_SLACK_HINTS = {
    "invalid_token": "authentication failed: the webhook's token is invalid or was revoked; "
    "create a new incoming webhook and update webhook_url",
    "no_service": "the webhook was removed or disabled; create a new one and update webhook_url",
    "no_team": "the Slack workspace no longer exists or the app was removed",
    "team_disabled": "the Slack workspace is disabled",
    "channel_not_found": "the webhook's channel no longer exists",
    "channel_is_archived": "the webhook's channel is archived",
    "action_prohibited": "a workspace admin restricted posting to this channel",
    "posting_to_general_channel_denied": "only admins may post to this channel",
    "invalid_payload": "Slack rejected the message format (a listener bug: please report it)",
    "user_not_found": "the webhook's user no longer exists",
}


def _http_outcome(kind: str, channel_name: str, response: httpx.Response) -> Delivery:
    status = response.status_code
    if 200 <= status < 300:
        return Delivery(ok=True)
    # The receiver's reply is never quoted (it is the server's text, and the error is stored and
    # shown): only a Slack error code we know is named, the rest is said in our words.
    body = _short(response.text)
    code = body if kind == "Slack" and body in _SLACK_HINTS else None
    where = f"{kind} {channel_name}: HTTP {status}" + (f", {code}" if code else "")
    if status == 429:
        retry_after = retry_after_of(response)
        wait = f" (retry after {retry_after:g} s)" if retry_after is not None else ""
        return Delivery(False, f"{kind} {channel_name}: rate limited, HTTP 429{wait}", retry_after)
    if status >= 500 or status in (408, 425):
        return Delivery(False, where + " (server side, will retry)", retry_after_of(response))
    if 300 <= status < 400:
        return Delivery(False, where + " (redirect: update the URL to its new home)", None, True)
    hint = _SLACK_HINTS.get(code) if code else None
    if hint is None and status in (401, 403):
        hint = "authentication failed: check the URL's token / the configured headers"
    if hint is None and status in (404, 410):
        hint = "the receiver does not exist (any more): check the URL"
    if hint is None:
        hint = "the receiver refused the message"
    return Delivery(False, where + (f" — {hint}" if hint else ""), None, True)


def _transport_failure(
    kind: str, channel_name: str, exc: Exception, secret_url: str | None
) -> Delivery:
    what = _redact(_short(str(exc)) or type(exc).__name__, secret_url)
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return Delivery(False, f"{kind} {channel_name}: bad URL in config ({what})", None, True)
    if isinstance(exc, httpx.TimeoutException):
        # The receiver may have got it: webhooks dedupe on Idempotency-Key, Slack cannot.
        return Delivery(False, f"{kind} {channel_name}: timed out ({type(exc).__name__})")
    return Delivery(False, f"{kind} {channel_name}: {type(exc).__name__}: {what}")


async def _post(
    kind: str,
    channel_name: str,
    http: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    user_agent: str,
) -> Delivery:
    content = json.dumps(_json_safe(body), ensure_ascii=False, allow_nan=False).encode()
    try:
        response = await http.post(
            url,
            content=content,
            headers={
                "User-Agent": user_agent,
                **headers,
                "Content-Type": "application/json; charset=utf-8",
            },
            follow_redirects=False,
        )
    except BlockedAddress as exc:  # the shared client's address guard: a config matter
        return Delivery(False, f"{kind} {channel_name}: {_redact(str(exc), url)}", None, True)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return _transport_failure(kind, channel_name, exc, url)
    return _http_outcome(kind, channel_name, response)


async def _send_slack(
    channel: SlackChannel,
    message: AlertMessage | Digest,
    http: httpx.AsyncClient,
    limiter: SlackRateLimiter,
    user_agent: str,
) -> Delivery:
    payload = render_slack(message)
    await limiter.wait(channel.webhook_url)
    # Slack's incoming webhooks ignore Idempotency-Key today; a relay or proxy in front may not.
    headers = {"Idempotency-Key": _message_key(message)}
    result = await _post(
        "Slack", channel.name, http, channel.webhook_url, payload, headers, user_agent
    )
    if not result.ok and result.retry_after_s is not None:
        # Slack asked for a pause (429 Retry-After): the other alerts waiting for this webhook
        # keep it too, not just the one that was refused (Slack disables apps that push on).
        limiter.hold(channel.webhook_url, result.retry_after_s)
    return result


def _bad_header(name: str, value: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in name + value) or not name.strip()


async def _send_webhook(
    channel: WebhookChannel,
    message: AlertMessage | Digest,
    http: httpx.AsyncClient,
    user_agent: str,
) -> Delivery:
    if isinstance(message, Digest):
        body = {"type": "listener.digest", **digest_to_dict(message)}
    else:
        body = {"type": "listener.alert", **message_to_dict(message)}
    ours = {"content-type", "idempotency-key"}
    headers = {k: v for k, v in channel.headers.items() if k.lower() not in ours}
    bad = [k for k, v in headers.items() if _bad_header(k, v)]
    if bad:
        return Delivery(
            False,
            f"webhook {channel.name}: header {_short(bad[0], 60)!r} has control characters",
            permanent=True,
        )
    # Same key on every attempt: a receiver that honours it ignores the retry of a send that
    # timed out after it had already arrived.
    headers["Idempotency-Key"] = _message_key(message)
    return await _post("webhook", channel.name, http, channel.url, body, headers, user_agent)


# -------------------------------------------------------------------------------------- email


# An RFC 3463 enhanced status code at the start of a reply ("5.1.1"): a fixed format, ours to show.
_ENHANCED_CODE = re.compile(rb"\s*([245]\.\d{1,3}\.\d{1,3})(?!\S)")


def _smtp_text(message: bytes | str) -> str:
    """What of an SMTP reply's text may be shown: its enhanced status code, if any. The rest is
    the server's own words, never quoted (errors are stored and shown)."""
    raw = message.encode("utf-8", "replace") if isinstance(message, str) else message
    match = _ENHANCED_CODE.match(raw or b"")
    return match.group(1).decode("ascii") if match else ""


def _smtp_reply(where: str, what: str, code: int, text: bytes | str) -> Delivery:
    """4xx (and unknown codes) are transient by RFC 5321; 5xx are final."""
    error = f"{where}: {what} refused with {code} {_smtp_text(text)}".rstrip()
    return Delivery(False, error, permanent=500 <= code < 600)


def _send_email(channel: EmailChannel, msg: EmailMessage) -> Delivery:
    """Blocking: one SMTP session. Run it in a thread."""
    where = f"email {channel.name} ({channel.host}:{channel.port})"
    smtp: smtplib.SMTP | None = None
    sent = False
    try:
        if channel.ssl:
            smtp = smtplib.SMTP_SSL(
                channel.host,
                channel.port,
                timeout=channel.timeout_s,
                context=ssl.create_default_context(),
            )
        else:
            smtp = smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout_s)
        if channel.starttls and not channel.ssl:
            smtp.starttls(context=ssl.create_default_context())
        if channel.username:
            smtp.login(channel.username, channel.password or "")
        refused = smtp.send_message(msg, from_addr=channel.from_addr, to_addrs=list(channel.to))
        sent = True
    except smtplib.SMTPNotSupportedError as exc:
        hint = (
            "the server does not offer STARTTLS: set ssl: true for port 465 or check the port"
            if "STARTTLS" in str(exc)
            else "the server does not offer AUTH (often only after STARTTLS: set starttls: true)"
        )
        return Delivery(False, f"{where}: {hint}", permanent=True)
    except smtplib.SMTPAuthenticationError as exc:
        reply = f"{exc.smtp_code} {_smtp_text(exc.smtp_error)}".rstrip()
        if 400 <= exc.smtp_code < 500:
            return Delivery(False, f"{where}: authentication temporarily failed: {reply}")
        return Delivery(
            False,
            f"{where}: authentication failed for user {channel.username!r}: {reply}"
            " — check username and password",
            permanent=True,
        )
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        listed = "; ".join(
            f"{_short(rcpt, 80)}: {code} {_smtp_text(text)}".rstrip()
            for rcpt, (code, text) in exc.recipients.items()
        )
        permanent = all(500 <= code < 600 for code in codes)
        return Delivery(False, f"{where}: every recipient refused ({listed})", permanent=permanent)
    except smtplib.SMTPSenderRefused as exc:
        return _smtp_reply(where, f"sender {_short(exc.sender, 80)}", exc.smtp_code, exc.smtp_error)
    except smtplib.SMTPDataError as exc:
        return _smtp_reply(where, "message", exc.smtp_code, exc.smtp_error)
    except smtplib.SMTPResponseException as exc:  # connect / HELO / other command replies
        return _smtp_reply(where, "session", exc.smtp_code, exc.smtp_error)
    except ssl.SSLCertVerificationError as exc:
        return Delivery(
            False,
            f"{where}: TLS certificate check failed: {_short(exc.verify_message)}",
            None,
            True,
        )
    except ssl.SSLError as exc:
        # Usually TLS spoken to a plain port or the reverse: a config problem, not a blip.
        return Delivery(
            False,
            f"{where}: TLS failed ({_short(exc.reason or str(exc))}): check port, ssl and starttls",
            permanent=True,
        )
    except (smtplib.SMTPException, OSError) as exc:
        # Refused, reset, timed out, DNS failure, server hung up: the server may be back later.
        reason = _short(str(exc)) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            reason = f"timed out after {channel.timeout_s:g} s"
        return Delivery(False, f"{where}: {type(exc).__name__}: {reason}")
    finally:
        if smtp is not None:
            _end_session(smtp, polite=sent)
    if refused:
        # The others have it: retrying would send them a second copy.
        listed = "; ".join(
            f"{_short(r, 80)}: {c} {_smtp_text(t)}".rstrip() for r, (c, t) in refused.items()
        )
        log.warning("%s: some recipients refused: %s", where, listed)
        return Delivery(True, f"some recipients refused ({listed})")
    return Delivery(ok=True)


def _end_session(smtp: smtplib.SMTP, *, polite: bool) -> None:
    """QUIT after a sent message (a failing QUIT must not turn a sent mail into a retry); after a
    failure just close, as the connection may be the thing that is broken."""
    if polite:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError) as exc:
            log.debug("SMTP QUIT failed after the message was accepted: %s", exc)
    smtp.close()


# ------------------------------------------------------------------------------ channel kinds
#
# A channel kind is registered like a source kind: its options model (validated once, by
# `listener.config`, at the edge), a builder that turns validated options into the plain channel
# object the outbox keeps, and the coroutine that sends one message on such a channel. A new
# channel kind is one module that calls `register_channel`.


class ChannelSender(Protocol):
    def __call__(
        self,
        channel: Any,
        message: AlertMessage | Digest,
        *,
        http: httpx.AsyncClient,
        limiter: SlackRateLimiter,
        user_agent: str,
    ) -> Awaitable[Delivery]: ...


@dataclass(frozen=True)
class ChannelKind:
    kind: str
    options_model: type[BaseModel]
    build: Callable[[Any], Channel]
    send: ChannelSender


_CHANNEL_KINDS: dict[str, ChannelKind] = {}


def register_channel(
    kind: str,
    options_model: type[BaseModel],
    builder: Callable[[Any], Channel],
    send: ChannelSender,
) -> ChannelKind:
    """Make `kind: <kind>` usable under `alerts.channels` in sources.yaml."""
    registered = _CHANNEL_KINDS[kind] = ChannelKind(kind, options_model, builder, send)
    return registered


def unregister_channel(kind: str) -> None:
    """Forget the channel kind `kind` (a test's own kind, once the test is done)."""
    _CHANNEL_KINDS.pop(kind, None)


def channel_kind(kind: str) -> ChannelKind | None:
    return _CHANNEL_KINDS.get(kind)


def channel_kind_names() -> list[str]:
    """The registered channel kinds, in the order they were registered."""
    return list(_CHANNEL_KINDS)


Digest_ = Literal["hourly", "daily"] | None

# A plain address, as SMTP's envelope takes it: something@domain, no display name, no spaces.
_EMAIL = re.compile(r"^[^\s@<>(),;:\"\[\]\\]+@(?:[^\W_]|-)+(?:\.(?:[^\W_]|-)+)*$")


def _email_address(value: str) -> str:
    value = value.strip()
    if not _EMAIL.match(value):
        raise ValueError(f"{value!r} is not an email address (like marketing@example.com)")
    return value


EmailAddress = Annotated[str, AfterValidator(_email_address)]


class ChannelOptions(BaseModel):
    """The base of every channel kind's options: unknown keys are an error, the options are
    frozen; `name:` and `kind:` are every channel's."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )

    name: str
    kind: str


class SlackOptions(ChannelOptions):
    webhook_url: str = Field(pattern=r"^https?://\S+$", repr=False)
    digest: Digest_ = None


class EmailOptions(ChannelOptions):
    host: str
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: str | None = Field(None, repr=False)
    from_: EmailAddress = Field(alias="from")
    to: list[EmailAddress] = Field(min_length=1)
    digest: Digest_ = None

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _tls(self) -> EmailOptions:
        if self.ssl and self.starttls:
            raise ValueError("choose one of ssl (implicit TLS, port 465) and starttls (port 587)")
        return self


class WebhookOptions(ChannelOptions):
    url: str = Field(pattern=r"^https?://\S+$", repr=False)
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    digest: Digest_ = None


async def _slack(
    channel: SlackChannel,
    message: AlertMessage | Digest,
    *,
    http: httpx.AsyncClient,
    limiter: SlackRateLimiter,
    user_agent: str,
) -> Delivery:
    return await _send_slack(channel, message, http, limiter, user_agent)


async def _webhook(
    channel: WebhookChannel,
    message: AlertMessage | Digest,
    *,
    http: httpx.AsyncClient,
    limiter: SlackRateLimiter,
    user_agent: str,
) -> Delivery:
    return await _send_webhook(channel, message, http, user_agent)


async def _email(
    channel: EmailChannel,
    message: AlertMessage | Digest,
    *,
    http: httpx.AsyncClient,
    limiter: SlackRateLimiter,
    user_agent: str,
) -> Delivery:
    msg = render_email(message, channel.from_addr, channel.to)
    if "User-Agent" not in msg:
        msg["User-Agent"] = user_agent
    return await asyncio.to_thread(_send_email, channel, msg)


def _build_slack(o: SlackOptions) -> SlackChannel:
    return SlackChannel(name=o.name, webhook_url=o.webhook_url, digest=o.digest)


def _build_email(o: EmailOptions) -> EmailChannel:
    return EmailChannel(
        name=o.name,
        host=o.host,
        port=o.port,
        from_addr=o.from_,
        to=tuple(o.to),
        starttls=o.starttls,
        ssl=o.ssl,
        username=o.username or None,
        password=o.password or None,
        digest=o.digest,
    )


def _build_webhook(o: WebhookOptions) -> WebhookChannel:
    return WebhookChannel(name=o.name, url=o.url, headers=dict(o.headers), digest=o.digest)


register_channel("slack", SlackOptions, _build_slack, _slack)
register_channel("email", EmailOptions, _build_email, _email)
register_channel("webhook", WebhookOptions, _build_webhook, _webhook)
