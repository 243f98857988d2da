"""The one HTTP client of the process: every source kind and alert channel sends through it.

- `fetcher`: the `Fetcher` (timeouts, limits, pacing, redirects, conditional GET, retries with
  backoff and `Retry-After`, the poll's time budget) and `default_user_agent`;
- `transport`: the connection layer under it (aiohttp by default, or httpcore's pool);
- `decoders`: body decoding (gzip, deflate) and the size cap, counted after decompression;
- `guard`: which internal addresses requests may reach (`AddressGuard`, `is_internal`).

Import from here: `from listener.fetch import Fetcher`.
"""

from __future__ import annotations

from .decoders import ACCEPT_ENCODING, BodyError
from .fetcher import (
    FEED_ACCEPT,
    Fetcher,
    PollBudget,
    current_budget,
    default_user_agent,
    poll_budget,
)
from .guard import AddressGuard, BlockedAddress, is_internal
from .transport import DEFAULT_TRANSPORT, AiohttpTransport, TransportKind, make_transport

__all__ = [
    "ACCEPT_ENCODING",
    "DEFAULT_TRANSPORT",
    "FEED_ACCEPT",
    "AddressGuard",
    "AiohttpTransport",
    "BlockedAddress",
    "BodyError",
    "Fetcher",
    "PollBudget",
    "TransportKind",
    "current_budget",
    "default_user_agent",
    "is_internal",
    "make_transport",
    "poll_budget",
]
