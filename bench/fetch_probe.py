#!/usr/bin/env python3
"""How much client CPU one fetch costs through `listener.fetch.Fetcher`, per transport.

Not a test: a timing probe for choosing `DEFAULT_TRANSPORT`. It starts the tests' loopback server
in a child process (so the server's CPU is not counted), then fetches N URLs at concurrency C with
each transport and prints CPU ms per request (process CPU time of this process / requests), wall
time and requests per second. Rounds alternate between transports so drift hits both alike.

    .venv/bin/python bench/fetch_probe.py                  # 2000 x 200, then 2000 x 304
    .venv/bin/python bench/fetch_probe.py -n 5000 --rounds 5 --size 46000
    .venv/bin/python bench/fetch_probe.py --base-url http://127.0.0.1:8000/feeds/1.xml
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from listener.fetch import Fetcher  # noqa: E402
from listener.models import FetchLimits, Validators  # noqa: E402

SERVER = """
import sys, time
sys.path.insert(0, {tests!r})
from httpd import LoopbackServer
server = LoopbackServer().start()
item = b"<item><title>Acme</title></item>"
body = b"<rss version='2.0'><channel>" + item * ({size} // len(item)) + b"</channel></rss>"
server.add("/feed", body, etag='"probe"', last_modified="Wed, 01 Jan 2025 10:00:00 GMT")
print(server.url("/feed"), flush=True)
sys.stdin.read()
server.stop()
"""


async def one_round(
    kind: str, url: str, n: int, concurrency: int, validators: Validators | None
) -> dict[str, float]:
    limits = FetchLimits(concurrency=concurrency, per_host_concurrency=concurrency, retries=0)
    async with Fetcher(limits, transport=kind) as fetcher:  # type: ignore[arg-type]
        # Warm up: open the connections, so the round measures steady-state polling.
        await asyncio.gather(*(fetcher.get(url) for _ in range(concurrency)))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        responses = await asyncio.gather(
            *(fetcher.get(f"{url}?n={i}", validators=validators) for i in range(n))
        )
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    errors = sum(1 for r in responses if not r.ok)
    return {
        "cpu_ms_per_req": cpu * 1000 / n,
        "wall_s": wall,
        "req_per_s": n / wall,
        "errors": errors,
        "status": responses[0].status,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="requests per round")
    parser.add_argument("-c", "--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=20_000, help="body bytes (local server)")
    parser.add_argument("--base-url", help="fetch this URL instead of starting a server")
    parser.add_argument("--transports", default="aiohttp,httpx")
    parser.add_argument("--json", action="store_true", help="print one JSON line per result")
    args = parser.parse_args()

    child = None
    url = args.base_url
    if url is None:
        code = SERVER.format(tests=str(ROOT / "tests"), size=args.size)
        child = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        url = child.stdout.readline().strip()
    try:
        kinds = [k.strip() for k in args.transports.split(",") if k.strip()]
        cases = [("200", None), ("304", Validators(etag='"probe"'))]
        for label, validators in cases:
            results: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
            for _ in range(args.rounds):
                for kind in kinds:
                    results[kind].append(
                        asyncio.run(one_round(kind, url, args.n, args.concurrency, validators))
                    )
            for kind in kinds:
                rows = results[kind]
                cpu = [r["cpu_ms_per_req"] for r in rows]
                summary = {
                    "transport": kind,
                    "case": label,
                    "status": rows[0]["status"],
                    "n": args.n,
                    "concurrency": args.concurrency,
                    "cpu_ms_per_req_median": round(statistics.median(cpu), 3),
                    "cpu_ms_per_req_all": [round(c, 3) for c in cpu],
                    "req_per_s_median": round(statistics.median(r["req_per_s"] for r in rows)),
                    "errors": int(sum(r["errors"] for r in rows)),
                }
                if args.json:
                    print(json.dumps(summary))
                else:
                    print(
                        f"{label} {kind:8} c={args.concurrency} n={args.n}: "
                        f"{summary['cpu_ms_per_req_median']:.3f} CPU ms/request "
                        f"(rounds {summary['cpu_ms_per_req_all']}), "
                        f"{summary['req_per_s_median']} req/s, errors {summary['errors']}"
                    )
    finally:
        if child is not None:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(10)


if __name__ == "__main__":
    main()
