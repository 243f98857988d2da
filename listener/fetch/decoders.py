"""Response bodies: `Content-Encoding` decoding and the size cap, counted after decompression.

We decode `Content-Encoding` ourselves from the raw stream instead of letting httpx do it: httpx
inflates each network chunk in one go, so a 64 KiB chunk of a gzip bomb can become 64 MB in
memory before any cap sees it; here zlib's `max_length` bounds every step, so a bomb costs at
most the cap plus one small piece.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterable, Iterator, Mapping

__all__ = ["ACCEPT_ENCODING", "BodyError", "check_declared_size", "format_size", "read_body"]

# Only what we can decode ourselves; never br/zstd.
ACCEPT_ENCODING = "gzip, deflate"
# Output step for inflating: bounds the memory one step of a gzip bomb can take.
_INFLATE_STEP = 64 * 1024


class BodyError(Exception):
    """A body that is not kept: larger than the cap, or not decodable. Not worth retrying."""


def check_declared_size(headers: Mapping[str, str], cap: int) -> None:
    """BodyError when the response's own Content-Length is over `cap` (nothing is read)."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise BodyError(f"body larger than {format_size(cap)} (Content-Length {int(declared)})")


async def read_body(raw: AsyncIterable[bytes], content_encoding: str, cap: int) -> bytes:
    """The decoded body from the `raw` stream, aborting (BodyError) as soon as more than `cap`
    decoded bytes arrive."""
    try:
        decoder = _Decoder.for_encoding(content_encoding)
    except ValueError as exc:
        raise BodyError(str(exc)) from exc
    chunks: list[bytes] = []
    size = 0

    def keep(piece: bytes) -> None:
        nonlocal size
        size += len(piece)
        if size > cap:
            raise BodyError(f"body larger than {format_size(cap)}")
        chunks.append(piece)

    try:
        async for data in raw:
            for piece in decoder.feed(data):
                keep(piece)
        for piece in decoder.finish():
            keep(piece)
    except zlib.error as exc:
        raise BodyError(f"could not decode {decoder.encoding} body: {exc}") from exc
    return b"".join(chunks)


class _Decoder:
    """Incremental Content-Encoding decoder whose every step yields at most _INFLATE_STEP bytes."""

    def __init__(self, encodings: list[str]) -> None:
        self.encoding = ", ".join(encodings) or "identity"
        # Applied in reverse: the last encoding listed was applied last by the server.
        self._stages = [_Inflater(e) for e in reversed(encodings)]

    @classmethod
    def for_encoding(cls, header: str) -> _Decoder:
        encodings = []
        for token in header.lower().split(","):
            token = token.strip()
            if token in ("", "identity"):
                continue
            if token not in ("gzip", "x-gzip", "deflate"):
                raise ValueError(f"unsupported Content-Encoding {token!r}")
            encodings.append(token)
        return cls(encodings)

    def feed(self, data: bytes) -> Iterator[bytes]:
        return self._run(data, final=False)

    def finish(self) -> Iterator[bytes]:
        return self._run(b"", final=True)

    def _run(self, data: bytes, *, final: bool) -> Iterator[bytes]:
        pieces: Iterator[bytes] = iter((data,)) if data or final else iter(())
        for stage in self._stages:
            pieces = stage.run(pieces, final=final)
        for piece in pieces:
            if piece:
                yield piece


class _Inflater:
    def __init__(self, encoding: str) -> None:
        self._gzip = encoding in ("gzip", "x-gzip")
        self._new()
        self._started = False

    def _new(self, wbits: int | None = None) -> None:
        if wbits is None:
            wbits = 16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS
        self._wbits = wbits
        self._z = zlib.decompressobj(wbits)

    def run(self, pieces: Iterator[bytes], *, final: bool) -> Iterator[bytes]:
        for data in pieces:
            yield from self._inflate(data)
        if final and not self._z.eof:
            yield self._z.flush()

    def _inflate(self, data: bytes) -> Iterator[bytes]:
        if not self._started and data:
            self._started = True
            if not self._gzip:
                # "deflate" is zlib-wrapped by the RFC but raw deflate from many servers.
                try:
                    zlib.decompressobj(zlib.MAX_WBITS).decompress(data[:2])
                except zlib.error:
                    self._new(-zlib.MAX_WBITS)
        while True:
            out = self._z.decompress(data, _INFLATE_STEP)
            if out:
                yield out
            data = self._z.unconsumed_tail
            if self._z.eof:
                rest = self._z.unused_data
                if not (self._gzip and rest.strip(b"\0")):
                    return  # trailing padding or garbage after the stream: ignored
                self._new()  # a multi-member gzip: the next member follows
                data = rest
                continue
            if not data and len(out) < _INFLATE_STEP:
                return


def format_size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            value = n / factor
            return f"{value:g} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"
