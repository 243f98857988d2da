#!/usr/bin/env python3
"""listener's own benchmark: `listener poll` against the shared feed farm, in one run.

    .venv/bin/python bench/run.py                 # 100, 250 and 1000 feeds x 50 entries (~9 min)
    .venv/bin/python bench/run.py --sizes 250     # one size only
    .venv/bin/python bench/run.py --small         # 100 feeds x 6 entries: a smoke test (~30 s)
    .venv/bin/python bench/run.py --out DIR       # keep sources.yaml, the DBs, logs, truth.jsonl

The farm (`../shared/bench/feedfarm.py`) is run from where it is, never copied; without it the
benchmark says "skipped" and exits 0. Steps, all against one farm process:

1. cycle 1, first poll: `/_farm/reset`, then `python -m listener -c sources.yaml poll` as a child.
   Wall time from spawn to exit (interpreter start and imports included), CPU and peak RSS from
   `os.wait4`. Entries = the entries the farm served (truth.jsonl, cycle 0).
2. cycle 2, unchanged: reset, poll again (mostly 304). Compared with `bench/aiohttp_sweep.py`, a
   bare aiohttp conditional-GET sweep of the same feeds (its wall excludes its imports).
3. cycle 3, mutate: `/_farm/advance` (5 % of feeds gain entries; it re-arms the faults), reset
   (zeroes the farm's counters), poll.
4. the naive script (`baseline_naive.py`: sequential `feedparser.parse(url)` + VADER + a
   sqlite-utils insert per entry) on every Nth feed; its wall excludes its imports.
5. quality against the farm's truth.jsonl: each truth entry is mapped to listener's item through
   `item_keys` (`url:<identity of its link>`, `id:<source>:<guid>`), then mention recall (entry
   and story level), mention precision, duplicate items for one story, polarity accuracy.

With `--sizes` (default 100,250,1000), step 1 runs first at each smaller size too: the first N
feeds, a new database each; and step 4 runs the naive script at each size, on 1 feed in
size/250 of that size's feeds, so each ratio compares like with like.

Prints a markdown table with the targets and PASS/FAIL, and writes results.json to the out dir.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from listener.text import canonical_url, url_identity  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_SHARED = ROOT.parent / "shared" / "bench"

TARGETS = {
    "first_poll_vs_naive": 15.0,  # at least, entries/s ratio, at the largest size (issue 17)
    "unchanged_vs_sweep": 1.2,  # at most, wall ratio
    "peak_rss_mb": 150.0,  # at most
    "recall": 0.99,  # at least
    "precision": 0.99,  # at least
    "duplicate_rows": 0,  # at most
}
# First poll / naive at each farm size (issue 17); other sizes are measured, not judged.
SIZE_TARGETS = {250: 10.0, 1000: 15.0}
DEFAULT_SIZES = "100,250,1000"
# The farm's planted terms and the listener brand each one is a mention of.
FARM_BRAND = {"Acme": "Acme", "Acme Rocket": "Acme", "RoadRunner Pro": "RoadRunner Pro"}
BRANDS_CONFIG = [
    {
        "name": "Acme",
        "terms": ["Acme"],
        "case_sensitive": True,
        "products": [{"name": "Acme Rocket", "terms": ["Acme Rocket"]}],
    },
    {"name": "RoadRunner Pro", "terms": ["RoadRunner Pro"], "case_sensitive": True},
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the farm ---------------------------------------------------------------------------------


class Farm:
    """The shared feed farm as a child process, stopped through /_farm/stop (else terminated)."""

    def __init__(
        self,
        shared: Path,
        out: Path,
        feeds: int,
        entries: int,
        mutate: float,
        extra: Sequence[str] = (),  # more `feedfarm.py serve` options (bench/steady.py)
    ) -> None:
        self.ready = out / "farm.json"
        self.truth = out / "truth.jsonl"
        for stale in (self.ready, self.truth):
            stale.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            str(shared / "feedfarm.py"),
            "serve",
            "--feeds", str(feeds),
            "--entries", str(entries),
            "--seed", "42",
            "--port", "0",
            "--ready-file", str(self.ready),
            "--truth", str(self.truth),
            "--duration", "1800",
            "--mutate", str(mutate),
            "--quiet",
            *extra,
        ]  # fmt: skip
        self.log = open(out / "farm.log", "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, env=_child_env()
        )
        t0 = time.monotonic()
        while not self.ready.exists():
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"the farm exited early (rc {self.proc.returncode}): see {out}/farm.log"
                )
            if time.monotonic() - t0 > 300:
                raise SystemExit("the farm was not ready after 300 s")
            time.sleep(0.05)
        self.info = json.loads(self.ready.read_text())
        self.base = self.info["base_url"]

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=30) as r:
            body = r.read()
        try:
            return json.loads(body)
        except ValueError:
            return body.decode(errors="replace")

    def cpu_s(self) -> float:
        try:
            with open(f"/proc/{self.proc.pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.get("/_farm/stop")
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.terminate()  # our own child, by its pid
                self.proc.wait(timeout=10)
        self.log.close()


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The shared folder is read-only: no __pycache__ attempts there.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONPATH"] = str(ROOT) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    return env


# --- measured children --------------------------------------------------------------------------


# The measured command runs under this launcher, which spawns it and reads its rusage with wait4.
# Why not wait4 from here: on Linux a child's ru_maxrss starts from the peak RSS of the process
# that spawned it (vfork shares that memory until exec), so measuring from this process, which
# holds the truth file, would report its own peak; the launcher's own ~10 MB is the floor instead.
LAUNCHER = """
import json, os, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
pid = os.posix_spawnp(cmd[0], cmd, os.environ)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(out, "w") as fh:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "wall_s": wall,
               "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_kb": ru.ru_maxrss}, fh)
"""


# listener's polls run under this wrapper, which also times the command from after its imports.
# The baselines' own figures exclude interpreter start and imports (BASELINE.md; the sweep's wall
# is its timed sweep only), so comparing an unchanged poll with the sweep like for like needs the
# same cut. Whatever the poll imports lazily (parsers, scorer) still counts. The launcher's wall,
# spawn to exit, is the process-start-included figure.
POLL_WRAPPER = """
import json, sys, time
t0 = time.perf_counter()
import listener.cli, listener.pipeline, listener.runtime, listener.sources.feed
t1 = time.perf_counter()
sys.argv[0] = "listener"
code = 0
try:
    listener.cli.main()
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
t2 = time.perf_counter()
print(json.dumps({"imports_s": round(t1 - t0, 3), "after_imports_s": round(t2 - t1, 3)}))
sys.exit(code)
"""


def busy_cpu_s() -> float:
    """CPU seconds all processes on the machine have used since boot (from /proc/stat)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    """One measured child process."""

    rc: int
    wall_s: float  # spawn to exit
    cpu_s: float
    peak_rss_mb: float
    farm_cpu_s: float
    other_cpu_s: float  # what every other process on the machine used meanwhile
    stdout: str

    def json_line(self) -> dict[str, Any]:
        lines = [ln for ln in self.stdout.splitlines() if ln.startswith("{")]
        return json.loads(lines[-1]) if lines else {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "rc": self.rc,
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "farm_cpu_s": round(self.farm_cpu_s, 3),
            "other_load_cores": round(self.other_cpu_s / self.wall_s, 2) if self.wall_s else None,
        }


def run_child(cmd: Sequence[str], farm: Farm, out: Path, tag: str, cwd: Path) -> Run:
    rusage = out / f"{tag}.rusage.json"
    rusage.unlink(missing_ok=True)
    errf = open(out / f"{tag}.stderr", "w")  # noqa: SIM115 (closed below)
    farm_cpu0, busy0, self0 = farm.cpu_s(), busy_cpu_s(), time.process_time()
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(rusage), *cmd],
        stdout=subprocess.PIPE,
        stderr=errf,
        cwd=cwd,
        env=_child_env(),
        check=False,
    )
    errf.close()
    farm_cpu = farm.cpu_s() - farm_cpu0
    stdout = proc.stdout.decode(errors="replace")
    (out / f"{tag}.stdout").write_text(stdout)
    if not rusage.exists():
        raise SystemExit(
            f"{tag}: the launcher failed (rc {proc.returncode}); see {out}/{tag}.stderr"
        )
    ru = json.loads(rusage.read_text())
    # The launcher's own start (~0.05 s of CPU) and this process's are not the others' load.
    others = busy_cpu_s() - busy0 - ru["cpu_s"] - farm_cpu - (time.process_time() - self0) - 0.05
    run = Run(
        rc=ru["rc"],
        wall_s=ru["wall_s"],
        cpu_s=ru["cpu_s"],
        peak_rss_mb=ru["maxrss_kb"] / 1024,
        farm_cpu_s=farm_cpu,
        other_cpu_s=max(0.0, others),
        stdout=stdout,
    )
    log(
        f"{tag}: rc {run.rc}, {run.wall_s:.2f} s wall, {run.cpu_s:.2f} s CPU, "
        f"{run.peak_rss_mb:.0f} MB; other processes used {run.other_cpu_s / run.wall_s:.2f} cores"
    )
    if run.rc != 0:
        tail = (out / f"{tag}.stderr").read_text()[-2000:]
        log(f"{tag} failed (rc {run.rc}); stderr tail:\n{tail}")
    return run


POLL_SUMMARY = re.compile(
    r"sources: (?P<ok>\d+) ok, (?P<failed>\d+) failed; items: (?P<items>\d+) \((?P<new>\d+) new\); "
    r"new mentions: (?P<mentions>\d+)"
)


def poll_summary(stdout: str) -> dict[str, int]:
    m = POLL_SUMMARY.search(stdout)
    return {k: int(v) for k, v in m.groupdict().items()} if m else {}


# --- the listener config and database -------------------------------------------------------------


def source_name(fid: int) -> str:
    return f"farm-{fid:04d}"


def write_config(path: Path, feeds: Sequence[dict[str, Any]], fetch: dict[str, Any]) -> None:
    config = {
        "database": "listener.db",
        "every": "15m",
        "brands": BRANDS_CONFIG,
        "sources": [
            {"name": source_name(f["id"]), "kind": "feed", "url": f["url"], "every": "15m"}
            for f in feeds
        ],
        "fetch": fetch,
    }
    path.write_text(
        "# Generated by bench/run.py: one source per farm feed, the farm's planted brands.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )


def db_scalar(db: Path, sql: str, args: Sequence[Any] = ()) -> Any:
    if not db.exists():
        return None
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, args).fetchone()[0]
    except sqlite3.Error:
        return None
    finally:
        con.close()


def fetch_counts(db: Path, after_id: int) -> dict[str, Any]:
    """Fetch statuses listener logged after fetches.id `after_id` (one poll's worth)."""
    if not db.exists():
        return {}
    con = sqlite3.connect(db)
    try:
        statuses = Counter(
            {
                str(status): n
                for status, n in con.execute(
                    "SELECT status, count(*) FROM fetches WHERE id > ? GROUP BY status", (after_id,)
                )
            }
        )
        retried = con.execute(
            "SELECT count(*) FROM fetches WHERE id > ? AND attempts > 1", (after_id,)
        ).fetchone()[0]
        errors = [
            f"{src}: {err}"
            for src, err in con.execute(
                "SELECT source, error FROM fetches WHERE id > ? AND error IS NOT NULL LIMIT 10",
                (after_id,),
            )
        ]
    finally:
        con.close()
    return {"statuses": dict(sorted(statuses.items())), "retried": retried, "errors": errors}


# --- quality against the truth ----------------------------------------------------------------------


def load_truth(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def count_entries(path: Path, cycle: int, feeds: int | None = None) -> int:
    """Truth entries of one cycle (of the first `feeds` feeds), without holding the file."""
    n = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            t = json.loads(line)
            n += t["cycle"] == cycle and (feeds is None or t["feed"] < feeds)
    return n


def truth_keys(t: dict[str, Any]) -> list[str]:
    keys = []
    if t.get("guid"):
        keys.append(f"id:{source_name(t['feed'])}:{t['guid']}")
    if t.get("link"):
        keys.append(f"url:{url_identity(canonical_url(t['link']))}")
    return keys


def planted(t: dict[str, Any]) -> set[str]:
    return {FARM_BRAND[b] for b in t.get("brands") or ()}


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def evaluate(db: Path, truth: list[dict[str, Any]]) -> dict[str, Any]:
    """Mention recall / precision, duplicates and polarity of listener's DB against the truth."""
    con = sqlite3.connect(db)
    try:
        key_item = dict(con.execute("SELECT key, item_id FROM item_keys"))
        mentions = list(con.execute("SELECT item_id, brand, label FROM mentions"))
        n_items = con.execute("SELECT count(*) FROM items").fetchone()[0]
    finally:
        con.close()
    by_item: dict[int, dict[str, str]] = defaultdict(dict)
    for item_id, brand, label in mentions:
        by_item[item_id][brand] = label

    # Each truth entry -> the item it became (the first of its keys that is stored).
    item_of: list[int | None] = []
    key_conflicts = 0
    for t in truth:
        found = [key_item[k] for k in truth_keys(t) if k in key_item]
        item_of.append(found[0] if found else None)
        key_conflicts += len(set(found)) > 1
    truth_of_item: dict[int, list[int]] = defaultdict(list)
    for i, item_id in enumerate(item_of):
        if item_id is not None:
            truth_of_item[item_id].append(i)

    def recall(indices: Iterable[int]) -> dict[str, Any]:
        pairs = hit = 0
        stories: dict[tuple[str, str], bool] = {}
        missed: list[str] = []
        for i in indices:
            t, item_id = truth[i], item_of[i]
            for brand in planted(t):
                pairs += 1
                ok = item_id is not None and brand in by_item.get(item_id, {})
                hit += ok
                key = (t["story"], brand)
                stories[key] = stories.get(key, False) or ok
                if not ok and len(missed) < 10:
                    missed.append(f"feed {t['feed']} seq {t['seq']} {brand}: {t['link']}")
        return {
            "entry_brand_pairs": pairs,
            "entry_recall": _ratio(hit, pairs),
            "story_brand_pairs": len(stories),
            "story_recall": _ratio(sum(stories.values()), len(stories)),
            "missed_examples": missed,
        }

    by_cycle: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(truth):
        by_cycle[t["cycle"]].append(i)

    # Precision: each mention row is right when its item is a truth entry with that brand planted.
    tp = fp = unmapped = 0
    fp_examples: list[str] = []
    for item_id, brand, _label in mentions:
        entries = truth_of_item.get(item_id)
        if not entries:
            unmapped += 1
        elif any(brand in planted(truth[i]) for i in entries):
            tp += 1
        else:
            fp += 1
            if len(fp_examples) < 10:
                t = truth[entries[0]]
                fp_examples.append(f"item {item_id} {brand}: feed {t['feed']} seq {t['seq']}")

    # Duplicates: one story (original + syndicated copies, same text) stored as several items
    # with mentions. Near-duplicates (edited copies) need text similarity: counted apart.
    exact: dict[str, set[int]] = defaultdict(set)
    with_near: dict[str, set[int]] = defaultdict(set)
    any_items: dict[str, set[int]] = defaultdict(set)
    for i, t in enumerate(truth):
        item_id = item_of[i]
        if item_id is None or t["dup"] is None:
            continue
        if t["dup"] != "near":
            any_items[t["story"]].add(item_id)
        if item_id in by_item:
            with_near[t["story"]].add(item_id)
            if t["dup"] != "near":
                exact[t["story"]].add(item_id)

    def extra(groups: dict[str, set[int]]) -> tuple[int, int]:
        return sum(len(v) > 1 for v in groups.values()), sum(len(v) - 1 for v in groups.values())

    dup_stories, dup_rows = extra(exact)
    near_stories, near_rows = extra(with_near)
    any_stories, any_rows = extra(any_items)

    # Polarity: our label for each planted (entry, brand) against the intended polarity.
    pol_n = pol_ok = 0
    confusion: Counter[str] = Counter()
    for t, item_id in zip(truth, item_of, strict=True):
        if not t.get("polarity") or item_id is None:
            continue
        for brand in planted(t):
            label = by_item.get(item_id, {}).get(brand)
            if label is None:
                continue
            pol_n += 1
            pol_ok += label == t["polarity"]
            confusion[f"{t['polarity']}->{label}"] += 1

    return {
        "truth_entries": len(truth),
        "unmapped_entries": sum(1 for x in item_of if x is None),
        "key_conflicts": key_conflicts,
        "items": n_items,
        "mention_rows": len(mentions),
        "recall_by_cycle": {str(c): recall(ix) for c, ix in sorted(by_cycle.items())},
        "recall_all": recall(range(len(truth))),
        "precision": _ratio(tp, tp + fp + unmapped),
        "precision_tp": tp,
        "precision_fp": fp,
        "precision_unmapped": unmapped,
        "fp_examples": fp_examples,
        "duplicate_stories": dup_stories,
        "duplicate_rows": dup_rows,
        "near_duplicate_stories": near_stories,
        "near_duplicate_rows": near_rows,
        "duplicate_items_any": any_rows,
        "duplicate_item_stories_any": any_stories,
        "polarity_n": pol_n,
        "polarity_accuracy": _ratio(pol_ok, pol_n),
        "polarity_confusion": dict(sorted(confusion.items())),
    }


# --- the machine -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "mem_gib": mem_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- the run -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--sizes",
        default=DEFAULT_SIZES,
        help="first polls at these numbers of feeds, each into a new database, each against the"
        " naive script (default %(default)s); the largest also runs the unchanged and mutate cycles",
    )
    ap.add_argument("--feeds", type=int, help="the farm's size (default: the largest size)")
    ap.add_argument("--entries", type=int, default=50)
    ap.add_argument("--small", action="store_true", help="100 feeds x 6 entries: a smoke test")
    ap.add_argument(
        "--naive-every",
        type=int,
        help="naive script on every Nth feed of each size (default: N = size / 250, at least 1,"
        " so it reads at most ~250 feeds: about a minute each)",
    )
    ap.add_argument("--concurrency", type=int, default=50, help="fetch.concurrency in sources.yaml")
    ap.add_argument(
        "--per-host",
        type=int,
        default=50,
        help="fetch.per_host in sources.yaml (every farm feed is on 127.0.0.1)",
    )
    ap.add_argument("--sweep-concurrency", type=int, default=50)
    ap.add_argument("--out", type=Path, help="output folder (default: a new temp folder)")
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared bench folder")
    a = ap.parse_args(argv)
    try:
        sizes = sorted({int(x) for x in a.sizes.split(",") if x.strip()})
    except ValueError:
        ap.error(f"--sizes: numbers separated by commas, not {a.sizes!r}")
    if not sizes or sizes[0] < 1:
        ap.error("--sizes: at least one size, each at least 1")
    if a.small:
        a.feeds, a.entries = 100, 6
    if a.feeds is None:
        a.feeds = sizes[-1]
    sizes = [n for n in sizes if n <= a.feeds] or [a.feeds]
    shared = a.shared.resolve()
    if not all((shared / f).is_file() for f in ("feedfarm.py", "baseline_naive.py")):
        print(
            f"skipped: {shared} not found (needs feedfarm.py and baseline_naive.py from ../shared/bench)"
        )
        return 0
    out = (a.out or Path(tempfile.mkdtemp(prefix="listener-bench-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("listener.db", "listener.db-wal", "listener.db-shm", "naive.db"):
        (out / stale).unlink(missing_ok=True)
    db = out / "listener.db"
    cfg = out / "sources.yaml"
    fetch_cfg = {"concurrency": a.concurrency, "per_host": a.per_host}
    poll_cmd = [sys.executable, "-c", POLL_WRAPPER, "-c", str(cfg), "poll"]
    res: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": machine(),
        "params": {
            "feeds": a.feeds,
            "entries": a.entries,
            "seed": 42,
            "mutate": 0.05,
            "faults": "default",
            "sizes": sizes,
            "naive_every": a.naive_every,
            "fetch": fetch_cfg,
            "sweep_concurrency": a.sweep_concurrency,
        },
        "targets": {**TARGETS, "first_poll_vs_naive_by_size": SIZE_TARGETS},
        "out": str(out),
    }

    log(f"starting the farm: {a.feeds} feeds x {a.entries} entries (out: {out})")
    t0 = time.perf_counter()
    farm = Farm(shared, out, a.feeds, a.entries, mutate=0.05)
    try:
        res["farm"] = {"info": farm.info, "ready_s": round(time.perf_counter() - t0, 2)}
        manifest = farm.get("/_farm/manifest.json")
        feeds = manifest["feeds"]
        largest = sizes[-1]
        feeds = feeds[:largest]
        urls = [f["url"] for f in feeds]
        (out / "urls.json").write_text(json.dumps(urls))
        write_config(cfg, feeds, fetch_cfg)
        cycle0_entries = count_entries(farm.truth, cycle=0, feeds=largest)

        def poll(
            tag: str, db: Path = db, cmd: Sequence[str] = poll_cmd, cwd: Path = out
        ) -> dict[str, Any]:
            last_fetch = db_scalar(db, "SELECT coalesce(max(id), 0) FROM fetches") or 0
            items_before = db_scalar(db, "SELECT count(*) FROM items") or 0
            mentions_before = db_scalar(db, "SELECT count(*) FROM mentions") or 0
            run = run_child(cmd, farm, out, tag, cwd=cwd)
            r = run.as_dict()
            r.update(run.json_line())  # imports_s, after_imports_s
            r["summary"] = poll_summary(run.stdout)
            r["new_items_db"] = (db_scalar(db, "SELECT count(*) FROM items") or 0) - items_before
            r["new_mentions_db"] = (
                db_scalar(db, "SELECT count(*) FROM mentions") or 0
            ) - mentions_before
            r["fetches"] = fetch_counts(db, last_fetch)
            r["farm_stats"] = farm.get("/_farm/stats")
            return r

        # -- first polls of the smaller sizes, each of the first N feeds into its own database
        by_size: dict[int, dict[str, Any]] = {}
        for n in sizes[:-1]:
            sub = out / f"size-{n}"
            sub.mkdir(exist_ok=True)
            for stale in ("listener.db", "listener.db-wal", "listener.db-shm"):
                (sub / stale).unlink(missing_ok=True)
            write_config(sub / "sources.yaml", feeds[:n], fetch_cfg)
            sub_cmd = [sys.executable, "-c", POLL_WRAPPER, "-c", str(sub / "sources.yaml"), "poll"]
            farm.get("/_farm/reset")
            r = poll(f"size{n}-first", db=sub / "listener.db", cmd=sub_cmd, cwd=sub)
            r["entries"] = count_entries(farm.truth, cycle=0, feeds=n)
            r["entries_per_s"] = round(r["entries"] / r["wall_s"], 1)
            by_size[n] = {"first_poll": r}

        # -- cycle 1: first poll (of the largest size)
        farm.get("/_farm/reset")
        c1 = poll("cycle1-first")
        c1["entries"] = cycle0_entries
        c1["items_db"] = db_scalar(db, "SELECT count(*) FROM items") or 0
        c1["entries_per_s"] = round(cycle0_entries / c1["wall_s"], 1)
        res["cycle1"] = c1
        by_size[largest] = {"first_poll": c1}

        # -- cycle 2: unchanged, then the bare aiohttp sweep of the same feeds
        farm.get("/_farm/reset")
        res["cycle2"] = poll("cycle2-unchanged")
        sweep_cmd = [
            sys.executable,
            str(HERE / "aiohttp_sweep.py"),
            "--urls", str(out / "urls.json"),
            "--base-url", farm.base,
            "--concurrency", str(a.sweep_concurrency),
        ]  # fmt: skip
        sweep_run = run_child(sweep_cmd, farm, out, "aiohttp-sweep", cwd=out)
        res["sweep"] = {**sweep_run.json_line(), "process": sweep_run.as_dict()}

        # -- cycle 3: 5 % of feeds gain entries (advance re-arms the faults; reset zeroes stats)
        res["advance"] = farm.get("/_farm/advance")
        farm.get("/_farm/reset")
        res["cycle3"] = poll("cycle3-mutated")

        # -- the naive script, at each size on (a subset of) that size's feeds
        for n in sizes:
            every = a.naive_every or max(1, n // 250)
            subset = urls[:n:every]
            (out / f"subset-{n}.json").write_text(json.dumps(subset))
            (out / f"naive-{n}.db").unlink(missing_ok=True)
            farm.get("/_farm/reset")
            naive_cmd = [
                sys.executable,
                str(shared / "baseline_naive.py"),
                "--urls", str(out / f"subset-{n}.json"),
                "--db", str(out / f"naive-{n}.db"),
            ]  # fmt: skip
            naive_run = run_child(naive_cmd, farm, out, f"naive-{n}", cwd=out)
            naive = {
                **naive_run.json_line(),
                "process": naive_run.as_dict(),
                "feeds": len(subset),
                "every": every,
            }
            if naive.get("wall_s") and naive.get("entries"):
                naive["entries_per_s"] = round(naive["entries"] / naive["wall_s"], 1)
            by_size[n]["naive"] = naive
        res["naive"] = by_size[largest]["naive"]
        res["sizes"] = {str(n): by_size[n] for n in sizes}

        # -- quality
        res["quality"] = evaluate(db, [t for t in load_truth(farm.truth) if t["feed"] < largest])
    finally:
        farm.stop()

    analyse(res)
    (out / "results.json").write_text(json.dumps(res, indent=2))
    print(render(res))
    print(f"\nresults: {out / 'results.json'}")
    return 0


def analyse(res: dict[str, Any]) -> None:
    """Ratios and PASS/FAIL per target, from figures of this one run."""
    c1, c2, sweep, naive, q = (
        res["cycle1"],
        res["cycle2"],
        res["sweep"],
        res["naive"],
        res["quality"],
    )
    ratios: dict[str, float | None] = {}
    ratios["first_poll_vs_naive"] = (
        round(c1["entries_per_s"] / naive["entries_per_s"], 2)
        if naive.get("entries_per_s")
        else None
    )
    # Like for like: both without interpreter start and imports (see POLL_WRAPPER).
    ratios["unchanged_vs_sweep"] = (
        round(c2["after_imports_s"] / sweep["wall_s"], 2)
        if sweep.get("wall_s") and c2.get("after_imports_s")
        else None
    )
    # Informational: listener's wall with its process start and imports, the sweep's without.
    ratios["unchanged_with_start_vs_sweep"] = (
        round(c2["wall_s"] / sweep["wall_s"], 2) if sweep.get("wall_s") else None
    )
    # Informational, less sensitive to other load on the machine: entries per CPU second (the
    # naive script's CPU includes its imports, ~0.5 s).
    naive_cpu = naive.get("process", {}).get("cpu_s")
    ratios["first_poll_vs_naive_cpu"] = (
        round((c1["entries"] / c1["cpu_s"]) / (naive["entries"] / naive_cpu), 2)
        if naive_cpu and naive.get("entries") and c1["cpu_s"]
        else None
    )
    by_size: dict[str, dict[str, Any]] = {}
    for n, d in res.get("sizes", {}).items():
        fp, nv = d["first_poll"], d.get("naive", {})
        nv_cpu = nv.get("process", {}).get("cpu_s")
        by_size[n] = {
            "vs_naive": round(fp["entries_per_s"] / nv["entries_per_s"], 2)
            if nv.get("entries_per_s")
            else None,
            "vs_naive_cpu": round((fp["entries"] / fp["cpu_s"]) / (nv["entries"] / nv_cpu), 2)
            if nv_cpu and nv.get("entries") and fp.get("cpu_s")
            else None,
        }
    ratios["by_size"] = by_size
    res["ratios"] = ratios
    peak = max(res[c]["peak_rss_mb"] for c in ("cycle1", "cycle2", "cycle3"))
    rec0 = q["recall_by_cycle"].get("0", {})
    recall = (
        min(x for x in (rec0.get("entry_recall"), rec0.get("story_recall")) if x is not None)
        if rec0
        else None
    )
    checks = {
        "first_poll_vs_naive": (ratios["first_poll_vs_naive"], ">="),
        "unchanged_vs_sweep": (ratios["unchanged_vs_sweep"], "<="),
        "peak_rss_mb": (round(peak, 1), "<="),
        "recall": (recall, ">="),
        "precision": (q["precision"], ">="),
        "duplicate_rows": (q["duplicate_rows"], "<="),
    }
    verdict = {}
    for name, (value, op) in checks.items():
        target = TARGETS[name]
        ok = value is not None and (value >= target if op == ">=" else value <= target)
        # Every poll must also have run to completion for its figures to count.
        verdict[name] = {"value": value, "target": f"{op} {target}", "pass": ok}
    for c in ("cycle1", "cycle2", "cycle3"):
        if res[c]["rc"] != 0:
            verdict[f"{c}_exit"] = {"value": res[c]["rc"], "target": "== 0", "pass": False}
    for n, target in SIZE_TARGETS.items():
        if str(n) in by_size:
            value = by_size[str(n)]["vs_naive"]
            verdict[f"first_poll_vs_naive_at_{n}"] = {
                "value": value,
                "target": f">= {target}",
                "pass": value is not None and value >= target,
            }
    for n, d in res.get("sizes", {}).items():
        if d["first_poll"]["rc"] != 0:
            verdict[f"size{n}_exit"] = {
                "value": d["first_poll"]["rc"],
                "target": "== 0",
                "pass": False,
            }
    res["verdict"] = verdict


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        v = f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
    return f"{v}{unit}"


def _cpu_rss(c: dict[str, Any]) -> str:
    return (
        f"{_fmt(c['cpu_s'], ' s')} / {_fmt(c['peak_rss_mb'], ' MB')} (other processes used "
        f"{_fmt(c.get('other_load_cores'))} cores meanwhile; farm {_fmt(c['farm_cpu_s'], ' s')} CPU)"
    )


def _statuses(d: dict[str, int]) -> str:
    return ", ".join(f"{n} x {s}" for s, n in d.items()) or "none"


def render(res: dict[str, Any]) -> str:
    p, m = res["params"], res["machine"]
    c1, c2, c3 = res["cycle1"], res["cycle2"], res["cycle3"]
    sweep, naive, q, r, v = (
        res["sweep"],
        res["naive"],
        res["quality"],
        res["ratios"],
        res["verdict"],
    )
    rec0 = q["recall_by_cycle"].get("0", {})
    rec1 = q["recall_by_cycle"].get("1", {})

    def verdict(name: str) -> str:
        x = v.get(name)
        return f"{x['target']}: **{'PASS' if x['pass'] else 'FAIL'}**" if x else ""

    rows = [
        ("farm", f"{p['feeds']} feeds x {p['entries']} entries, seed 42, default faults", ""),
        (
            "listener fetch settings",
            f"concurrency {p['fetch']['concurrency']}, per_host {p['fetch']['per_host']}",
            "",
        ),
        ("**cycle 1 (first poll)** wall, process start included", _fmt(c1["wall_s"], " s"), ""),
        ("  CPU / peak RSS", _cpu_rss(c1), ""),
        ("  entries served / items in DB", f"{c1['entries']:,} / {c1['items_db']:,}", ""),
        ("  entries/s", _fmt(c1["entries_per_s"]), ""),
        (
            "  sources ok / failed",
            f"{c1['summary'].get('ok', '?')} / {c1['summary'].get('failed', '?')}",
            "",
        ),
        (
            "  fetch statuses (listener's fetches table)",
            _statuses(c1["fetches"]["statuses"]) + f"; {c1['fetches']['retried']} retried",
            "",
        ),
        (
            "naive script entries/s (subset!)",
            f"{_fmt(naive.get('entries_per_s'))} "
            f"({naive.get('entries', 0):,} entries from {naive['feeds']} feeds = 1 feed in "
            f"{naive.get('every', '?')}, {_fmt(naive.get('wall_s'), ' s')} wall excluding its imports; "
            f"{naive.get('feeds_ok', '?')} ok / {naive.get('feeds_failed', '?')} failed)",
            "",
        ),
        (
            "**first poll / naive, entries/s**",
            _fmt(r["first_poll_vs_naive"], "x"),
            verdict("first_poll_vs_naive"),
        ),
        (
            "  same per CPU second (informational)",
            f"{_fmt(r['first_poll_vs_naive_cpu'], 'x')} (listener {_fmt(c1['entries'] / c1['cpu_s'])}"
            f", naive {_fmt(naive.get('entries', 0) / max(naive['process']['cpu_s'], 1e-9))} entries"
            f" per CPU s; naive used {_fmt(naive['process']['other_load_cores'])} other cores' load)",
            "",
        ),
        ("**cycle 2 (unchanged)** wall, process start included", _fmt(c2["wall_s"], " s"), ""),
        (
            "  of which interpreter start + imports / the command after them",
            f"{_fmt(c2['wall_s'] - c2.get('after_imports_s', 0.0), ' s')} / "
            f"{_fmt(c2.get('after_imports_s'), ' s')} (config, database, poll, summary)",
            "",
        ),
        ("  CPU / peak RSS", _cpu_rss(c2), ""),
        (
            "  fetch statuses",
            _statuses(c2["fetches"]["statuses"])
            + f"; {c2['fetches']['retried']} retried; new items {c2['new_items_db']}",
            "",
        ),
        (
            f"aiohttp conditional-GET sweep (c={p['sweep_concurrency']}), imports excluded",
            f"{_fmt(sweep.get('wall_s'), ' s')} ({_statuses(sweep.get('statuses', {}))}; "
            f"{sweep.get('retries', 0)} retries; CPU {_fmt(sweep.get('cpu_s'), ' s')})",
            "",
        ),
        (
            "**unchanged poll / sweep, wall, both without start and imports**",
            _fmt(r["unchanged_vs_sweep"], "x"),
            verdict("unchanged_vs_sweep"),
        ),
        (
            "  same with listener's process start and imports (the sweep's still excluded)",
            _fmt(r["unchanged_with_start_vs_sweep"], "x"),
            "",
        ),
        ("**cycle 3 (mutate)** wall, process start included", _fmt(c3["wall_s"], " s"), ""),
        (
            "  farm advance",
            f"{res['advance'].get('changed_feeds')} feeds gained "
            f"{res['advance'].get('new_entries')} entries",
            "",
        ),
        ("  new items / new mentions in DB", f"{c3['new_items_db']} / {c3['new_mentions_db']}", ""),
        ("  CPU / peak RSS", _cpu_rss(c3), ""),
        ("  fetch statuses", _statuses(c3["fetches"]["statuses"]), ""),
        (
            "**peak RSS** (max of the 3 polls)",
            _fmt(v["peak_rss_mb"]["value"], " MB"),
            verdict("peak_rss_mb"),
        ),
        (
            "**mention recall**, cycle 0 (entry / story level)",
            f"{_fmt(rec0.get('entry_recall'))} / {_fmt(rec0.get('story_recall'))} "
            f"({rec0.get('entry_brand_pairs', 0):,} planted entry-brand pairs)",
            verdict("recall"),
        ),
        (
            "  mention recall, cycle-1 entries (mutate)",
            f"{_fmt(rec1.get('entry_recall'))} / {_fmt(rec1.get('story_recall'))} "
            f"({rec1.get('entry_brand_pairs', 0):,} pairs)",
            "",
        ),
        (
            "**mention precision** (all mention rows)",
            f"{_fmt(q['precision'])} ({q['precision_tp']:,} right, {q['precision_fp']} wrong, "
            f"{q['precision_unmapped']} not in the truth)",
            verdict("precision"),
        ),
        (
            "**duplicate rows** (original + syndicated copies as >1 item with mentions)",
            f"{q['duplicate_rows']} (in {q['duplicate_stories']} stories)",
            verdict("duplicate_rows"),
        ),
        (
            "  near-duplicates kept apart (not a target)",
            f"{q['near_duplicate_rows']} extra items in {q['near_duplicate_stories']} stories",
            "",
        ),
        ("  truth entries not found in item_keys", f"{q['unmapped_entries']}", ""),
        (
            "  polarity accuracy (informational)",
            f"{_fmt(q['polarity_accuracy'])} over {q['polarity_n']:,} (entry, brand) labels",
            "",
        ),
    ]
    lines = [
        f"## listener bench, {res['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['mem_gib']} GiB, Python {m['python']}; "
        f"load average at start {m['loadavg_at_start']}.",
        "",
        "| measure | value | target |",
        "| --- | --- | --- |",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
        "",
        "Wall times of listener polls are spawn-to-exit of `listener -c sources.yaml poll` (run"
        " through `listener.cli.main` by a wrapper that also times the command after its imports)."
        " The naive script's and the sweep's walls are measured inside them (imports excluded), as"
        " in BASELINE.md; the unchanged-poll target compares listener's after-imports figure with"
        " the sweep's. The naive script ran on a subset only. CPU and"
        ' peak RSS come from wait4 in a small launcher (its ~10 MB is the RSS floor). "Other'
        " processes\" is the machine's busy CPU (/proc/stat) minus the measured process and the"
        " farm, per second of wall: other load on these shared cores.",
    ]
    if res.get("sizes"):
        lines += [
            "",
            "### First poll at each size (each into a new database; the naive script on that"
            " size's feeds, 1 in N)",
            "",
            "| feeds | entries | wall (start included) | CPU | peak RSS | entries/s | other load"
            " | naive entries/s (feeds) | **first poll / naive** | per CPU s | target |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for n, d in res["sizes"].items():
            fp, nv, rr = d["first_poll"], d.get("naive", {}), r["by_size"].get(n, {})
            x = v.get(f"first_poll_vs_naive_at_{n}")
            target = f"{x['target']}: **{'PASS' if x['pass'] else 'FAIL'}**" if x else ""
            lines.append(
                f"| {n} | {fp['entries']:,} | {_fmt(fp['wall_s'], ' s')} | {_fmt(fp['cpu_s'], ' s')}"
                f" | {_fmt(fp['peak_rss_mb'], ' MB')} | {_fmt(fp['entries_per_s'])}"
                f" | {_fmt(fp.get('other_load_cores'))} | {_fmt(nv.get('entries_per_s'))}"
                f" ({nv.get('feeds', '?')}, 1 in {nv.get('every', '?')})"
                f" | **{_fmt(rr.get('vs_naive'), 'x')}** | {_fmt(rr.get('vs_naive_cpu'), 'x')}"
                f" | {target} |"
            )
    failed = [k for k, x in v.items() if not x["pass"]]
    lines.append("")
    lines.append("All targets met." if not failed else f"Missed: {', '.join(failed)}.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
