"""Firehose filter rate: Jetstream post messages filtered per second on one core, 10 brands.

What `kind: jetstream` does with every message of the firehose, in this process only (no
network, no database): decode the JSON, keep it when the brand rules name a brand (the
matcher's prefilter, then its regexes) or when it replies in a brand thread, and turn the kept
ones into items at each batch. The stream it reads is synthetic but has the recorded shape: posts
of 20-300 characters from an English word list with hashtags, mentions and links, 40 % replies,
a few identity/account events, and about 1 post in 300 naming one of the brands.

    .venv/bin/python bench/firehose_filter.py                # 200,000 messages
    .venv/bin/python bench/firehose_filter.py --posts 50000  # quicker

Prints posts/s for JSON decoding alone, the matcher alone, and the whole filter; the goal is
20,000 posts/s or more for the whole filter (Bluesky's firehose carries a few hundred posts/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from listener.match import Matcher
from listener.models import Brand, Product, SourceSpec
from listener.sources import SourceState, StreamContext
from listener.sources.jetstream import _Batch

BRANDS = (
    Brand(
        "Acme",
        ("Acme", "Acme Corp", "@acme", "acme.com"),
        exclude=("Acme Brick",),
        products=(Product("Rocket Skates", ("Rocket Skates", "RocketSkates")),),
    ),
    Brand("Globex", ("Globex", "globex.io")),
    Brand("Initech", ("Initech", "TPS report")),
    Brand("Umbrella", ("Umbrella Corp", "Umbrella Corporation")),
    Brand("Hooli", ("Hooli", "HooliChat"), products=(Product("Nucleus", ("Hooli Nucleus",)),)),
    Brand("Stark", ("Stark Industries", "@starkindustries")),
    Brand("Wayne", ("Wayne Enterprises", "WayneTech")),
    Brand("Cyberdyne", ("Cyberdyne", "Skynet")),
    Brand("Soylent", ("Soylent",)),
    Brand("Tyrell", ("Tyrell Corp", "Nexus-6"), case_sensitive=True),
)
MENTIONS = [
    "Acme",
    "acme.com",
    "Globex",
    "Initech",
    "Umbrella Corp",
    "Hooli",
    "Stark Industries",
    "WayneTech",
    "Cyberdyne",
    "Soylent",
    "Tyrell Corp",
    "Rocket Skates",
]
_WORD_TEXT = (
    "the a and to of in is it you that was for on are with as I his they be at one have this "
    "from or had by hot word but what some we can out other were all there when up use your how "
    "said an each she which do their time if will way about many then them write would like so "
    "these her long make thing see him two has look more day could go come did number sound no "
    "most people my over know water than call first who may down side been now find any new "
    "work part take get place made live where after back little only round man year came show "
    "every good me give our under name very through just form sentence great think say help low "
    "line differ turn cause much mean before move right boy old too same tell does set three "
    "want air well also play small end put home read hand port large spell add even land here "
    "must big high such follow act why ask men change went light kind off need house picture try "
    "us again animal point mother world near build self earth father head stand own page should "
    "country found answer school grow study still learn plant cover food sun four between state "
    "keep eye never last let thought city tree cross farm hard start might story saw far sea draw "
    "left late run don't while press close night real life few north open seem together next "
    "white children begin got walk example ease paper group always music those both mark often "
    "letter until mile river car feet care second book carry took science eat room friend began "
    "idea fish mountain stop once base hear horse cut sure watch color face wood main enough "
    "plain girl usual young ready above ever red list though feel talk bird soon body dog family "
    "direct pose leave song measure door product black short numeral class wind question happen "
    "complete ship area half rock order fire south problem piece told knew pass since top whole "
    "king space heard best hour better true during hundred five remember step early hold west "
    "ground interest reach fast verb sing listen six table travel less morning ten simple "
    "several vowel toward war lay against pattern slow center love person money serve appear "
    "road map rain rule govern pull cold notice voice unit power town fine certain fly fall lead "
    "cry dark machine note wait plan figure star box noun field rest correct able pound done "
    "beauty drive stood contain front teach week final gave green oh quick develop ocean warm "
    "free minute strong special mind behind clear tail produce fact street inch multiply nothing "
    "course stay wheel full force blue object decide surface deep moon island foot system busy "
    "test record boat common gold possible plane stead dry wonder laugh thousand ago ran check "
    "game shape equate hot miss brought heat snow tire bring yes distant fill east paint "
    "language among 😂 ❤️ 🙏 #bluesky #art #news @someone.bsky.social https://example.org/x"
)
WORDS = _WORD_TEXT.split()


def make_stream(n: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    out = []
    t = int(datetime.now(UTC).timestamp() * 1_000_000)
    roots: list[str] = []
    for i in range(n):
        t += rnd.randint(1, 3000)
        did = f"did:plc:{rnd.getrandbits(100):025x}"
        if rnd.random() < 0.01:
            kind = rnd.choice(["identity", "account"])
            event: dict[str, Any] = {
                "did": did,
                "time_us": t,
                "kind": kind,
                kind: {"did": did, "seq": i, "time": "2026-01-01T00:00:00Z"},
            }
            out.append(json.dumps(event))
            continue
        words = rnd.choices(WORDS, k=rnd.randint(4, 50))
        if rnd.random() < 1 / 300:
            words.insert(rnd.randrange(len(words) + 1), rnd.choice(MENTIONS))
        text = " ".join(words)
        rkey = f"3l{rnd.getrandbits(60):012x}"
        uri = f"at://{did}/app.bsky.feed.post/{rkey}"
        record: dict[str, Any] = {
            "$type": "app.bsky.feed.post",
            "createdAt": datetime.fromtimestamp(t / 1e6, UTC).isoformat().replace("+00:00", "Z"),
            "langs": ["en"],
            "text": text,
        }
        if roots and rnd.random() < 0.4:
            root = rnd.choice(roots)
            record["reply"] = {
                "root": {"cid": "bafyrei", "uri": root},
                "parent": {"cid": "bafyrei", "uri": root},
            }
        else:
            roots.append(uri)
            roots = roots[-5000:]
        event = {
            "did": did,
            "time_us": t,
            "kind": "commit",
            "commit": {
                "rev": rkey,
                "operation": "create",
                "collection": "app.bsky.feed.post",
                "rkey": rkey,
                "record": record,
                "cid": f"bafyrei{rkey}",
            },
        }
        out.append(json.dumps(event, ensure_ascii=False))
    return out


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f} posts/s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--posts", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=200)
    args = ap.parse_args()

    messages = make_stream(args.posts)
    matcher = Matcher.from_brands(BRANDS)
    texts = [json.loads(m).get("commit", {}).get("record", {}).get("text", "") for m in messages]

    started = time.perf_counter()
    for m in messages:
        json.loads(m)
    decode_s = time.perf_counter() - started

    started = time.perf_counter()
    named = sum(1 for t in texts if matcher.match(t))
    match_s = time.perf_counter() - started

    async def deliver(_: Any) -> None:
        pass

    ctx = StreamContext(
        spec=SourceSpec(name="bench", kind="jetstream", every_s=60),
        state=SourceState(),
        now=lambda: datetime.now(UTC),
        user_agent="bench",
        stop=asyncio.Event(),
        deliver=deliver,
        wants=lambda text: bool(matcher.match(text)),
        brand_threads=lambda keys: set(),  # the store's lookup is one query per batch
    )
    batch = _Batch(ctx)
    kept = 0
    started = time.perf_counter()
    for i, m in enumerate(messages, 1):
        batch.add(m)
        if i % args.batch == 0:
            poll = batch.take()
            kept += len(poll.items) if poll else 0
    poll = batch.take()
    kept += len(poll.items) if poll else 0
    filter_s = time.perf_counter() - started

    print(f"{args.posts:,} Jetstream messages, 10 brands, one core")
    print(f"  JSON decode only      {rate(args.posts, decode_s)}")
    print(f"  matcher only          {rate(args.posts, match_s)}   ({named} name a brand)")
    print(f"  whole filter          {rate(args.posts, filter_s)}   ({kept} kept)")
    print(
        f"  goal                  {20_000:>10,} posts/s: {'met' if args.posts / filter_s >= 20_000 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
