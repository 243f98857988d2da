"""Secrets: what is never logged, stored, shown or sent, except in the request it is for.

A secret is
- every value `${VAR}` took from the environment (`listener.config` records them in
  `Config.secrets`), wherever it ends up: a URL, an option, an error message;
- the password of a URL's userinfo (`https://user:pass@host/`), written in the file or not;
- the value of a query parameter with a secret-looking name (`?token=`, `key`, `api_key`, ...).

`mask_url()` and `mask()` are the one way to show a URL or a text that may hold one: the store
(sources, fetches), `check`, `status`, `poll` and the logs go through them, so
`https://feeds.example.com/x?token=s3cret` is shown as `https://feeds.example.com/x?token=***`
and `https://user:s3cret@host/` as `https://user:***@host/`. The real value only goes into the
request (the fetcher turns a URL's userinfo into an Authorization header).
"""

from __future__ import annotations

import base64
import logging
import re
from collections import Counter
from collections.abc import Collection, Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit, urlunsplit

MASK = "***"

# Query parameters whose values are secrets, by (lower-case) name.
SECRET_PARAMS = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "auth",
        "client_secret",
        "key",
        "password",
        "secret",
        "sig",
        "signature",
        "token",
    }
)

# An environment value shorter than this is not searched for in free text: `587`, `15m` or `1`
# would mask unrelated words and numbers. Short values are still masked where they are secret by
# position (a URL's password, a secret-looking parameter, a secret option).
MIN_SEARCHED = 4

_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
_QUERY_PAIR = re.compile(r"(^|[&;])([^=&;]*)=([^&;]*)")
# `scheme://user:password@`: the password runs to the last `@` before the path.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#:@]*):([^/?#]*)@")


def _secret_name(name: str) -> bool:
    return unquote_plus(name).strip().lower() in SECRET_PARAMS


@lru_cache(maxsize=32)
def _values_pattern(secrets: frozenset[str]) -> re.Pattern[str] | None:
    """One pattern for every searched secret, as written and as it appears inside URLs."""
    forms: set[str] = set()
    for value in secrets:
        if len(value) >= MIN_SEARCHED:
            forms.update((value, quote(value, safe=""), quote(value), quote_plus(value)))
    if not forms:
        return None
    return re.compile("|".join(map(re.escape, sorted(forms, key=len, reverse=True))))


def _mask_values(text: str, secrets: Collection[str]) -> str:
    if not secrets:
        return text
    pattern = _values_pattern(frozenset(secrets))
    return pattern.sub(MASK, text) if pattern is not None else text


def mask_url(url: str, secrets: Collection[str] = ()) -> str:
    """`url` as it may be stored, shown or logged: the password of its userinfo, the values of
    secret-looking query parameters and every value in `secrets` replaced by `***`.

    Done on the text, not on a parsed URL, so that a URL no parser accepts is masked too."""
    if "@" in url:
        url = _USERINFO.sub(rf"\1\2:{MASK}@", url, count=1)
    if "=" in url:
        head, sep, query = url.partition("?")
        if sep:
            query, hash_, fragment = query.partition("#")
            query = _QUERY_PAIR.sub(_mask_pair, query)
            url = f"{head}?{query}{hash_}{fragment}"
    return _mask_values(url, secrets)


def _mask_pair(m: re.Match[str]) -> str:
    if m.group(3) and _secret_name(m.group(2)):
        return f"{m.group(1)}{m.group(2)}={MASK}"
    return m.group(0)


def mask(text: str, secrets: Collection[str] = ()) -> str:
    """Free text (an error message, a log line) with every URL in it masked by `mask_url` and
    every value in `secrets` replaced by `***`."""
    if "://" in text:
        text = _URL_IN_TEXT.sub(_mask_url_in_text, text)
    return _mask_values(text, secrets)


def _mask_url_in_text(m: re.Match[str]) -> str:
    found = m.group(0)
    url = found.rstrip(".,;:!?)]}")  # the sentence's punctuation, not the URL's
    return mask_url(url) + found[len(url) :]


def mask_option(value: Any, secrets: Collection[str] = (), *, secret: bool = False) -> str:
    """An option's value as `check` shows it: `***` for an option its kind marks `Secret`
    (`listener.sources.base`), else the text with any secret in it masked."""
    if secret:
        return MASK
    return mask(str(value), secrets)


def link_base(url: str) -> str:
    """The URL a fetched document's relative links resolve against: without userinfo and
    without secret-looking query parameters, so links built from it carry no credentials."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(
        pair for pair in parts.query.split("&") if not _secret_name(pair.partition("=")[0])
    )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def with_credentials_of(url: str, source_url: str | None) -> str:
    """`url` with the userinfo of `source_url` when both are on the same origin and `url` has
    none: a comment feed linked from a password-protected feed needs the same password."""
    if not source_url or "@" not in source_url:
        return url
    try:
        target, source = urlsplit(url), urlsplit(source_url)
        same_origin = (target.scheme, target.hostname, target.port) == (
            source.scheme,
            source.hostname,
            source.port,
        )
    except ValueError:  # not a URL, or a port out of range
        return url
    userinfo, at, _ = source.netloc.rpartition("@")
    if not at or "@" in target.netloc or not same_origin:
        return url
    return urlunsplit(
        (target.scheme, f"{userinfo}@{target.netloc}", target.path, target.query, target.fragment)
    )


def basic_credentials(userinfo: str) -> str:
    """An Authorization header value from a URL's (percent-encoded) `user:password`."""
    user, _, password = userinfo.partition(":")
    raw = f"{unquote(user)}:{unquote(password)}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


# --- logs ----------------------------------------------------------------------------------

_logged: Counter[str] = Counter()
_installed = False


def _mask_record(record: logging.LogRecord) -> None:
    secrets = frozenset(_logged)
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: the handler reports it as usual
        return
    masked = mask(message, secrets)
    if masked != message:
        record.msg, record.args = masked, None
    if record.exc_info and record.exc_info[1] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        masked = mask(text, secrets)
        if masked != text:
            record.exc_text = masked


def install_log_masking() -> None:
    """Mask secrets in every log record from now on, whichever handler writes it."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _mask_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


class masked_in_logs:  # used like a function: `with masked_in_logs(values):`
    """Within the block (`with` or `async with`), these values and URL credentials never appear
    in a log record."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.values = list(secrets)

    def __enter__(self) -> None:
        install_log_masking()
        _logged.update(self.values)

    def __exit__(self, *exc: object) -> None:
        _logged.subtract(self.values)
        for value in [v for v, n in _logged.items() if n <= 0]:
            del _logged[value]

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()
