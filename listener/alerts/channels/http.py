"""How the HTTP channel kinds (Slack, webhook) post: one JSON POST on the process's shared
client, and what its answer means for the outbox (`Delivery`: sent, retry later, or a person
must fix the channel). A receiver's reply is never quoted; a kind names the error codes it
knows (`hints`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from ...fetch import BlockedAddress
from ...units import clamp_wait, parse_retry_after
from .base import Delivery, _redact, _short


def _json_safe(value: Any) -> Any:
    """NaN / infinity (a mean over nothing) are not JSON: send them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


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


# A kind that knows no error codes of its receiver.
NO_HINTS: Mapping[str, str] = {}


def _http_outcome(
    kind: str,
    channel_name: str,
    response: httpx.Response,
    hints: Mapping[str, str] = NO_HINTS,
) -> Delivery:
    status = response.status_code
    if 200 <= status < 300:
        return Delivery(ok=True)
    # The receiver's reply is never quoted (it is the server's text, and the error is stored and
    # shown): only an error code the kind knows (`hints`) is named, the rest is said in our words.
    body = _short(response.text)
    code = body if body in hints else None
    where = f"{kind} {channel_name}: HTTP {status}" + (f", {code}" if code else "")
    if status == 429:
        retry_after = retry_after_of(response)
        wait = f" (retry after {retry_after:g} s)" if retry_after is not None else ""
        return Delivery(False, f"{kind} {channel_name}: rate limited, HTTP 429{wait}", retry_after)
    if status >= 500 or status in (408, 425):
        return Delivery(False, where + " (server side, will retry)", retry_after_of(response))
    if 300 <= status < 400:
        return Delivery(False, where + " (redirect: update the URL to its new home)", None, True)
    hint = hints.get(code) if code else None
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
    hints: Mapping[str, str] = NO_HINTS,
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
    return _http_outcome(kind, channel_name, response, hints)
