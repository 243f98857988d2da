#!/usr/bin/env python3
"""Steady state: `listener run` over the feed farm at 100,000 sources per 15 minutes, compressed.

    .venv/bin/python bench/steady.py                # 1000 feeds every 9 s, 90 s measured (~2.5 min)
    .venv/bin/python bench/steady.py --duration 600 # a longer window
    .venv/bin/python bench/steady.py --out DIR      # keep sources.yaml, listener.db, logs

100,000 sources polled every 15 minutes is 111 polls a second. The farm's N feeds polled every
S seconds give the same rate when N / S = 111 (default: 1000 feeds every 9 s). Time is
compressed, the rate is not: each cycle of S seconds, the farm gives 5 % of its feeds 1-5 new
entries (`feedfarm.py --mutate 0.05 --mutate-every S`), as 5 % of 100,000 sources would change
in 15 minutes. Steps, against one farm process (seed 42, default faults):

1. warm-up: `listener poll` (the first poll of every feed; not measured here, see run.py);
2. `listener run`, left alone for `--settle` seconds (the first cycle after the warm-up);
3. the window: `--duration` seconds during which it measures, from /proc,
   - CPU: the daemon and its worker processes, as a share of the machine's cores, also scaled
     to exactly 111 polls/s (the rate the jitter of `every:` makes a little lower),
   - peak RSS (VmHWM) of the daemon and of its largest worker,
   - polls per second and missed runs (sources overdue by more than one interval at the end),
   - the fetch log: rows and bytes (SQLite's dbstat: table and indexes) added, per day at
     100,000 sources / 15 min, and its size once `retention:` trims it (default: 30 days, at
     most 2,000 rows per source);
4. SIGTERM to `listener run` (it must exit 0).

The machine's other load is shown too ("other processes"): distrust a run where it is high.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import (  # noqa: E402  (bench/run.py: the farm and the machine, shared)
    BRANDS_CONFIG,
    DEFAULT_SHARED,
    Farm,
    _child_env,
    busy_cpu_s,
    machine,
    source_name,
)

TARGET_CPU_SHARE = 0.10  # of the machine's cores, at 100,000 sources per 15 minutes (issue 17)
REAL_RATE = 100_000 / 900.0  # polls per second
CLK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (the daemon's worker processes)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            parents[int(entry)] = st[0]
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [c for c, pp in parents.items() if pp == p]
    return out


def tree_cpu(pid: int) -> tuple[float, dict[int, float]]:
    per = {p: st[1] for p in tree(pid) if (st := _stat(p)) is not None}
    return sum(per.values()), per


def hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def fetch_log(db: Path) -> dict[str, Any]:
    con = sqlite3.connect(db)
    try:
        rows, max_id = con.execute("SELECT count(*), coalesce(max(id), 0) FROM fetches").fetchone()
        try:
            size = con.execute(
                "SELECT sum(pgsize) FROM dbstat WHERE name = 'fetches' OR name IN "
                "(SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'fetches')"
            ).fetchone()[0]
        except sqlite3.Error:  # SQLite built without dbstat
            size = None
        overdue = con.execute(
            "SELECT count(*) FROM sources WHERE next_poll_at < strftime('%Y-%m-%dT%H:%M:%SZ', "
            "'now', ?)",
            (f"-{_every_s} seconds",),
        ).fetchone()[0]
    finally:
        con.close()
    return {"rows": rows, "max_id": max_id, "bytes": size, "overdue": overdue}


_every_s = 9.0


def write_config(path: Path, feeds: list[dict[str, Any]], every_s: float, fetch: dict) -> None:
    config = {
        "database": "listener.db",
        "brands": BRANDS_CONFIG,
        "sources": [
            {
                "name": source_name(f["id"]),
                "kind": "feed",
                "url": f["url"],
                "every": f"{every_s:g}s",
            }
            for f in feeds
        ],
        "fetch": fetch,
    }
    path.write_text(
        "# Generated by bench/steady.py: one source per farm feed, polled every few seconds.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )


def main(argv: list[str] | None = None) -> int:
    global _every_s
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--entries", type=int, default=50)
    ap.add_argument(
        "--every", type=float, help="seconds between polls of a feed (default: feeds / 111)"
    )
    ap.add_argument("--mutate", type=float, default=0.05, help="share of feeds changed per cycle")
    ap.add_argument("--settle", type=float, default=15.0, help="seconds of `run` not measured")
    ap.add_argument("--duration", type=float, default=90.0, help="seconds measured")
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--per-host", type=int, default=50)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    a = ap.parse_args(argv)
    every = a.every or round(a.feeds / REAL_RATE, 2)
    _every_s = every
    shared = a.shared.resolve()
    if not (shared / "feedfarm.py").is_file():
        print(f"skipped: {shared} not found (needs feedfarm.py from ../shared/bench)")
        return 0
    out = (a.out or Path(tempfile.mkdtemp(prefix="listener-steady-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("listener.db", "listener.db-wal", "listener.db-shm", "listener.db.lock"):
        (out / stale).unlink(missing_ok=True)
    db, cfg = out / "listener.db", out / "sources.yaml"
    res: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": machine(),
        "params": {
            "feeds": a.feeds,
            "entries": a.entries,
            "every_s": every,
            "mutate_per_cycle": a.mutate,
            "settle_s": a.settle,
            "duration_s": a.duration,
            "fetch": {"concurrency": a.concurrency, "per_host": a.per_host},
        },
        "out": str(out),
    }
    log(f"farm: {a.feeds} feeds x {a.entries} entries, {a.mutate:.0%} changed every {every:g} s")
    farm = Farm(shared, out, a.feeds, a.entries, a.mutate, extra=["--mutate-every", f"{every:g}"])
    daemon: subprocess.Popen[bytes] | None = None
    try:
        feeds = farm.get("/_farm/manifest.json")["feeds"]
        write_config(cfg, feeds, every, res["params"]["fetch"])
        listener = [sys.executable, "-m", "listener", "-c", str(cfg)]
        t0 = time.perf_counter()
        warm = subprocess.run(
            [*listener, "poll"], cwd=out, env=_child_env(), capture_output=True, check=False
        )
        res["warmup"] = {"rc": warm.returncode, "wall_s": round(time.perf_counter() - t0, 2)}
        log(f"warm-up poll: rc {warm.returncode}, {res['warmup']['wall_s']} s")
        if warm.returncode != 0:
            log(warm.stderr.decode(errors="replace")[-2000:])
        errlog = open(out / "run.stderr", "w")  # noqa: SIM115 (closed below)
        daemon = subprocess.Popen(
            [*listener, "run"], cwd=out, env=_child_env(), stdout=errlog, stderr=errlog
        )
        time.sleep(a.settle)
        if daemon.poll() is not None:
            raise SystemExit(
                f"listener run exited early (rc {daemon.returncode}): {out}/run.stderr"
            )
        log(f"measuring for {a.duration:g} s")
        cpu0, per0 = tree_cpu(daemon.pid)
        farm0, busy0, log0, w0 = farm.cpu_s(), busy_cpu_s(), fetch_log(db), time.perf_counter()
        time.sleep(a.duration)
        cpu1, per = tree_cpu(daemon.pid)
        farm1, busy1, log1, w1 = farm.cpu_s(), busy_cpu_s(), fetch_log(db), time.perf_counter()
        hwm = {pid: hwm_mb(pid) for pid in per}
        daemon.send_signal(signal.SIGTERM)  # our own child, by its pid
        try:
            rc = daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            rc = daemon.wait()
        errlog.close()
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        farm.stop()

    wall, n = w1 - w0, cores()
    cpu = cpu1 - cpu0
    rows = log1["max_id"] - log0["max_id"]  # fetch log rows written (pruning deletes others)
    # Polls made: every feed once per interval, which `every:`'s jitter (0-10 %) stretches 5 %
    # on average. Shares are scaled to exactly 111 polls/s from this rate.
    polls = a.feeds * wall / (every * 1.05)
    rate = polls / wall
    share = cpu / wall / n
    row_bytes = (log1["bytes"] / log1["rows"]) if log1["bytes"] and log1["rows"] else None
    rows_per_poll = rows / polls if polls else 0.0
    per_day_rows = REAL_RATE * 86400 * rows_per_poll
    # One poll every 15 minutes is 96 rows a source a day: 2,000 rows last ~20.8 days.
    kept_days = min(30.0, 2000 / (96 * rows_per_poll)) if rows_per_poll else None
    res["window"] = {
        "wall_s": round(wall, 1),
        "polls": round(polls),
        "polls_per_s": round(rate, 1),
        "equivalent_sources_per_15min": round(rate * 900),
        "cpu_s": round(cpu, 2),
        "cpu_share": round(share, 4),
        "cpu_share_at_100k_per_15min": round(share * REAL_RATE / rate, 4),
        "cores": n,
        "daemon_cpu_s": round(per.get(daemon.pid, 0.0) - per0.get(daemon.pid, 0.0), 2),
        "children_cpu_s": round(
            sum(v - per0.get(p, 0.0) for p, v in per.items() if p != daemon.pid), 2
        ),
        "daemon_peak_rss_mb": round(hwm.get(daemon.pid) or 0, 1),
        "worker_peak_rss_mb": round(
            max((v or 0 for p, v in hwm.items() if p != daemon.pid), default=0), 1
        ),
        "workers": len(per) - 1,
        "farm_cpu_share": round((farm1 - farm0) / wall / n, 4),
        "other_load_cores": round(max(0.0, busy1 - busy0 - cpu - (farm1 - farm0)) / wall, 2),
        "overdue_at_end": log1["overdue"],
        "fetch_log_rows": rows,
        "fetch_log_rows_per_poll": round(rows_per_poll, 3),
        "fetch_log_bytes_per_row": round(row_bytes, 1) if row_bytes else None,
        "fetch_log_rows_per_day_at_100k": round(per_day_rows),
        "fetch_log_mb_per_day_at_100k": round(per_day_rows * row_bytes / 1e6, 1)
        if row_bytes
        else None,
        "fetch_log_days_kept_at_15min": round(kept_days, 1) if kept_days else None,
        "fetch_log_gb_kept_at_100k": round(per_day_rows * kept_days * row_bytes / 1e9, 1)
        if row_bytes and kept_days
        else None,
        "run_exit": rc,
    }
    res["verdict"] = {
        "cpu_share_at_100k_per_15min": {
            "value": res["window"]["cpu_share_at_100k_per_15min"],
            "target": f"<= {TARGET_CPU_SHARE}",
            "pass": (res["window"]["cpu_share_at_100k_per_15min"] or 1) <= TARGET_CPU_SHARE,
        },
        "run_exit": {"value": rc, "target": "== 0", "pass": rc == 0},
    }
    (out / "results.json").write_text(json.dumps(res, indent=2))
    print(render(res))
    print(f"\nresults: {out / 'results.json'}")
    return 0


def render(res: dict[str, Any]) -> str:
    p, w, m = res["params"], res["window"], res["machine"]
    v = res["verdict"]["cpu_share_at_100k_per_15min"]
    rows = [
        (
            "farm",
            f"{p['feeds']} feeds x {p['entries']} entries, {p['mutate_per_cycle']:.0%} of feeds changed every {p['every_s']:g} s",
        ),
        (
            "schedule",
            f"every feed every {p['every_s']:g} s (+ 0-10 % jitter): ~{w['polls_per_s']} polls/s = {w['equivalent_sources_per_15min']:,} sources per 15 min",
        ),
        (
            "window",
            f"{w['wall_s']} s after {p['settle_s']:g} s of settling; ~{w['polls']:,} polls, {w['fetch_log_rows']:,} fetch log rows",
        ),
        (
            f"**CPU share** (daemon + workers, of {w['cores']} cores)",
            f"{w['cpu_share']:.1%} ({w['cpu_s']} s of CPU: daemon {w['daemon_cpu_s']} s, "
            f"workers {w['children_cpu_s']} s)",
        ),
        (
            "**CPU share at 100,000 sources / 15 min**",
            f"{w['cpu_share_at_100k_per_15min']:.1%}: {'PASS' if v['pass'] else 'FAIL'} ({v['target']})",
        ),
        (
            "peak RSS, daemon / largest worker",
            f"{w['daemon_peak_rss_mb']} MB / {w['worker_peak_rss_mb']} MB ({w['workers']} child processes)",
        ),
        ("sources overdue by more than one interval at the end", str(w["overdue_at_end"])),
        ("fetch log, bytes per row (table + indexes)", str(w["fetch_log_bytes_per_row"])),
        (
            "**fetch log growth per day** at 100,000 sources / 15 min",
            f"{w['fetch_log_rows_per_day_at_100k']:,} rows, {w['fetch_log_mb_per_day_at_100k']} MB",
        ),
        (
            "  kept by the default retention (30 days, 2,000 rows a source)",
            f"~{w['fetch_log_days_kept_at_15min']} days: ~{w['fetch_log_gb_kept_at_100k']} GB",
        ),
        (
            "farm / other processes",
            f"{w['farm_cpu_share']:.1%} of the cores / {w['other_load_cores']} cores",
        ),
        ("`listener run` exit on SIGTERM", str(w["run_exit"])),
    ]
    return "\n".join(
        [
            f"## listener steady state, {res['date']}",
            "",
            f"Machine: {m['cpu']}, {m['cpus']} CPUs, Python {m['python']}; load average at start {m['loadavg_at_start']}.",
            "",
            "| measure | value |",
            "| --- | --- |",
            *(f"| {a} | {b} |" for a, b in rows),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
