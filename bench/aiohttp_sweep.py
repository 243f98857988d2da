#!/usr/bin/env python3
"""The fetch limit of an unchanged poll on this box: a bare aiohttp conditional-GET sweep.

Used by `bench/run.py` as the yardstick for listener's second (unchanged, mostly 304) poll. One
aiohttp session at concurrency C:

1. GET every feed URL once to collect its ETag / Last-Modified (not timed);
2. GET `<base>/_farm/reset` so the farm re-arms its per-cycle faults (500 / 429), as it does
   before each of listener's polls;
3. timed: GET every feed once more with If-None-Match / If-Modified-Since, retrying once on
   429 / 5xx after `Retry-After` (else 0.5 s), as a sane client would. Bodies are read, not parsed.

Prints one JSON line: wall_s (the timed sweep only: interpreter start, imports and the untimed
first pass are excluded), the final status counts, retries and the process CPU of the sweep.

    .venv/bin/python bench/aiohttp_sweep.py --urls urls.json --base-url http://127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

DEFAULT_RETRY_S = 0.5


@dataclass
class Sweep:
    statuses: Counter[int] = field(default_factory=Counter)
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    bytes: int = 0


def retry_delay(value: str | None) -> float:
    """Seconds from a delta-seconds Retry-After (the farm sends those), else a short default."""
    try:
        return max(0.0, float(value or ""))
    except (TypeError, ValueError):
        return DEFAULT_RETRY_S


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    sweep: Sweep,
) -> tuple[int, dict[str, str]]:
    """GET with one retry on 429 / 5xx; returns the final status and its validators."""
    for attempt in (1, 2):
        try:
            async with session.get(url, headers=headers) as resp:
                body = await resp.read()
                status = resp.status
                if (status == 429 or status >= 500) and attempt == 1:
                    sweep.retries += 1
                    delay = retry_delay(resp.headers.get("Retry-After"))
                else:
                    sweep.bytes += len(body)
                    validators = {}
                    if "ETag" in resp.headers:
                        validators["If-None-Match"] = resp.headers["ETag"]
                    if "Last-Modified" in resp.headers:
                        validators["If-Modified-Since"] = resp.headers["Last-Modified"]
                    return status, validators
        except (aiohttp.ClientError, TimeoutError) as exc:
            if attempt == 2:
                sweep.errors.append(f"{url}: {exc!r}")
                return 0, {}
            sweep.retries += 1
            delay = DEFAULT_RETRY_S
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def sweep_all(
    session: aiohttp.ClientSession,
    urls: list[str],
    validators: dict[str, dict[str, str]],
    concurrency: int,
) -> tuple[Sweep, dict[str, dict[str, str]]]:
    sweep = Sweep()
    gate = asyncio.Semaphore(concurrency)
    found: dict[str, dict[str, str]] = {}

    async def one(url: str) -> None:
        async with gate:
            status, got = await fetch(session, url, validators.get(url, {}), sweep)
        sweep.statuses[status] += 1
        if status == 200:
            found[url] = got

    await asyncio.gather(*(one(u) for u in urls))
    return sweep, found


async def main_async(urls: list[str], base_url: str, concurrency: int) -> dict[str, object]:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        first, validators = await sweep_all(session, urls, {}, concurrency)
        async with session.get(base_url.rstrip("/") + "/_farm/reset") as resp:
            await resp.read()
        cpu0, t0 = time.process_time(), time.perf_counter()
        sweep, _ = await sweep_all(session, urls, validators, concurrency)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    return {
        "name": "aiohttp-sweep",
        "feeds": len(urls),
        "concurrency": concurrency,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "statuses": {str(k): v for k, v in sorted(sweep.statuses.items())},
        "retries": sweep.retries,
        "bytes": sweep.bytes,
        "errors": sweep.errors[:10],
        "first_pass_statuses": {str(k): v for k, v in sorted(first.statuses.items())},
        "with_validators": len(validators),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--urls", required=True, help="JSON file: a list of feed URLs")
    ap.add_argument("--base-url", required=True, help="the farm's base URL (for /_farm/reset)")
    ap.add_argument("--concurrency", type=int, default=50)
    a = ap.parse_args(argv)
    with open(a.urls, encoding="utf-8") as fh:
        urls = json.load(fh)
    result = asyncio.run(main_async(urls, a.base_url, a.concurrency))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
