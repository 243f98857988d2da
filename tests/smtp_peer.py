"""A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it accepts."""

from __future__ import annotations

import email
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword


@dataclass
class SmtpRecorder:
    """aiosmtpd handler: keeps every accepted message; can refuse recipients with a given reply."""

    envelopes: list[Envelope] = field(default_factory=list)
    refuse_rcpt: str | None = None  # e.g. "550 5.1.1 no such user"
    logins: list[tuple[str, str]] = field(default_factory=list)  # (mechanism, user)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if (user, password) == ("alerts", "s3cret"):
                self.logins.append((mechanism, user))
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def received(self) -> EmailMessage:
        assert len(self.envelopes) == 1, f"expected one message, got {len(self.envelopes)}"
        raw = self.envelopes[0].original_content or self.envelopes[0].content
        assert isinstance(raw, bytes)
        msg = email.message_from_bytes(raw, policy=default_policy)
        assert isinstance(msg, EmailMessage)
        return msg


def free_port() -> int:
    # aiosmtpd 1.4's Controller cannot bind port 0 (it connects to its own port to start).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def start_smtp() -> Iterator[Callable[..., tuple[SmtpRecorder, int]]]:
    """Starts real SMTP servers on 127.0.0.1; `auth=True` offers AUTH (minus `exclude`)."""
    controllers: list[Controller] = []

    def start(*, auth: bool = False, exclude: tuple[str, ...] = ()) -> tuple[SmtpRecorder, int]:
        recorder = SmtpRecorder()
        options: dict[str, Any] = {}
        if auth:
            options = {
                "authenticator": recorder.authenticate,
                "auth_require_tls": False,  # no certificates in tests; the client code is the same
                "auth_exclude_mechanism": list(exclude),
            }
        port = free_port()
        controller = Controller(recorder, hostname="127.0.0.1", port=port, **options)
        controller.start()
        controllers.append(controller)
        return recorder, port

    try:
        yield start
    finally:
        for controller in controllers:
            controller.stop()


@pytest.fixture
def smtp_server(start_smtp: Callable[..., tuple[SmtpRecorder, int]]) -> tuple[SmtpRecorder, int]:
    return start_smtp()


def messages(recorder: SmtpRecorder) -> list[EmailMessage]:
    out = []
    for env in list(recorder.envelopes):
        raw = env.original_content or env.content
        assert isinstance(raw, bytes)
        msg = email.message_from_bytes(raw, policy=default_policy)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out
