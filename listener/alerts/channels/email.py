"""The email channel kind: one message per alert (or digest) over SMTP (stdlib smtplib, in a
worker thread), with STARTTLS or implicit TLS and login; a refusal is read from its reply code
(4xx: retry later, 5xx: a person must fix the channel)."""

from __future__ import annotations

import asyncio
import logging
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Annotated, Any, ClassVar

import httpx
from pydantic import AfterValidator, Field, field_validator, model_validator

from ..message import AlertMessage, Digest
from ..render import render_email
from .base import ChannelOptions, Delivery, Digest_, SlackRateLimiter, _short, register_channel

log = logging.getLogger(__name__)


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


# A plain address, as SMTP's envelope takes it: something@domain, no display name, no spaces.
_EMAIL = re.compile(r"^[^\s@<>(),;:\"\[\]\\]+@(?:[^\W_]|-)+(?:\.(?:[^\W_]|-)+)*$")


def _email_address(value: str) -> str:
    value = value.strip()
    if not _EMAIL.match(value):
        raise ValueError(f"{value!r} is not an email address (like marketing@example.com)")
    return value


EmailAddress = Annotated[str, AfterValidator(_email_address)]


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


register_channel("email", EmailOptions, _build_email, _email)
