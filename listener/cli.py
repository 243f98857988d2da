"""The `listener` command line: a thin layer over the library (exit codes 0 ok, 1 failure, 2 config)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from . import __version__
from .config import Config, ConfigError, config_path, format_duration, load_config
from .models import THREAD_STATUSES
from .secrets import install_log_masking, mask, mask_option, mask_url, masked_in_logs

log = logging.getLogger(__name__)

STARTER = Path(__file__).with_name("starter.yaml")


class State:
    def __init__(self, config: str | None, quiet: bool = False, verbose: int = 0) -> None:
        self.config_arg = config
        self.quiet = quiet
        self.verbose = verbose
        self._config: Config | None = None

    @property
    def path(self) -> Path:
        return config_path(self.config_arg)

    def command(self, verb: str, path: Path | str | None = None) -> str:
        """How the user runs `verb` on this config, or on `path`: with the `-c` they gave
        (`listener -c my.yaml check`), or plain when plain `listener` reads that file anyway."""
        if path is None:
            path = self.config_arg
        elif Path(path).resolve() == config_path(None).resolve():
            path = None
        return f"listener -c {shlex.quote(str(path))} {verb}" if path else f"listener {verb}"

    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(self.path)
            except ConfigError as exc:
                for problem in exc.problems:
                    click.echo(f"error: {problem}", err=True)
                raise SystemExit(2) from None
        return self._config


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    if verbose == 0 and not quiet:
        level = logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore", "aiohttp", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    install_log_masking()  # URL passwords and secret parameters never reach a log line


def _set_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    state = ctx.find_object(State)
    if value is not None and state is not None:
        state.config_arg = value


CONFIG_HELP = "Config file (default: $LISTENER_CONFIG, else ./sources.yaml)."

# Verbs that read no config: `demo` writes its own.
_NO_CONFIG = frozenset({"demo"})


def _accept_config(command: click.Command) -> click.Command:
    """Let `-c PATH` come after the verb too (`listener check -c my.yaml`), as before it."""
    if not any(p.name == "config" for p in command.params):
        command.params.append(
            click.Option(
                ["-c", "--config"],
                metavar="PATH",
                expose_value=False,
                callback=_set_config,
                help=CONFIG_HELP,
            )
        )
    return command


class _VerbGroup(click.Group):
    """A group whose every verb takes `-c/--config` after it as well as before."""

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None or name in _NO_CONFIG:
            return command
        return _accept_config(command)


@click.group(
    cls=_VerbGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="""\b
Examples:
  listener demo                  try it offline on bundled sample data
  listener init my.yaml          write a starter config, then edit it
  listener check -c my.yaml      validate it (-c goes before or after the verb)
  listener poll -c my.yaml       poll every source once
  listener run -c my.yaml        the service: poll on schedule and alert
  listener serve -c my.yaml      explore the mentions in Datasette

Exit status: 0 ok, 1 runtime failure (e.g. every source failed), 2 bad config or usage.

Run `listener VERB --help` for a verb's options and examples.""",
)
@click.option("-c", "--config", "config", metavar="PATH", help=CONFIG_HELP)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.version_option(__version__, prog_name="listener")
@click.pass_context
def cli(ctx: click.Context, config: str | None, verbose: int, quiet: bool) -> None:
    """Social listening: find mentions of your brands in feeds and forums, score their
    sentiment, and alert when a conversation turns negative."""
    setup_logging(verbose, quiet)
    ctx.obj = State(config, quiet, verbose)


@cli.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_obj
def init(state: State, path: Path | None, force: bool) -> None:
    """Write a commented starter config (default: ./sources.yaml).

    \b
    Examples:
      listener init                  writes ./sources.yaml
      listener init my.yaml          then: listener check -c my.yaml
    """
    target = path or state.path
    if target.exists() and not force:
        click.echo(f"error: {target} already exists (use --force to overwrite)", err=True)
        raise SystemExit(2)
    target.write_text(STARTER.read_text(encoding="utf-8"), encoding="utf-8")
    click.echo(
        f"wrote {target}: add your brands and sources, then run `{state.command('check', target)}`"
    )


@cli.command()
@click.pass_obj
def check(state: State) -> None:
    """Validate the config and list what will be polled.

    Exits 2 with the file, line and key of each mistake.

    \b
    Examples:
      listener check
      listener check -c my.yaml
    """
    config = state.config()

    def echo(line: str) -> None:  # values from the environment are shown as ***
        click.echo(mask(line, config.secrets))

    echo(f"{config.path}: ok")
    echo(f"database: {config.database}")
    echo("brands:")
    from .match import describe_rules

    for b in config.brands:
        own, *products = describe_rules(b)
        echo(f"  {b.name}: {own}")
        for line in products:
            echo(f"    {line}")
    echo(f"sources ({len(config.sources)}):")
    for s in config.sources:
        where = mask_url(s.url, config.secrets) if s.url else _describe_options(s, config.secrets)
        flag = "" if s.enabled else "  [disabled]"
        when = "a stream" if _is_stream(s) else f"every {format_duration(s.every_s)}"
        echo(f"  {s.name:<24} {s.kind:<14} {when:<12} {where}{flag}")
    channels = config.alerts.channels
    listed = ", ".join(f"{c.name} ({c.kind})" for c in channels)
    echo(f"alert channels ({len(channels)}): {listed or 'none (alerts stay in the database)'}")
    for spec in config.sources:
        hint = feed_kind_hint(spec.url) if spec.kind == "feed" and spec.url else None
        if hint:
            echo(f"hint: {spec.name}: {hint}")
    _check_source_warnings(config)


# A Discourse forum's own feeds: /latest.rss, /posts.rss, /top.rss, /c/<category>.rss,
# /c/<category>/<id>.rss, /t/<slug>/<id>.rss, /tag/<tag>.rss (under any folder).
_DISCOURSE_FEED = re.compile(
    r"^(.*?)/(?:(?:latest|posts|top)\.rss|c/.+\.rss|t/[^/]+/\d+\.rss|tag/.+\.rss)$"
)
_SUBREDDIT = re.compile(r"^/r/([^/]+)")


def feed_kind_hint(url: str) -> str | None:
    """What to say when a `kind: feed` URL is a site that has its own kind, which reads whole
    conversations (every reply, followed over time) where a feed shows only its latest entries."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = (parts.hostname or "").lower().removeprefix("www.")
    path = parts.path
    m = _DISCOURSE_FEED.match(path)
    if m is not None:
        base = f"{parts.scheme}://{parts.netloc}{m.group(1)}"
        return (
            f"{url} looks like a Discourse forum: use `kind: discourse` with `base_url: {base}` "
            "to read every post and follow its topics"
        )
    if host == "reddit.com" or host.endswith(".reddit.com"):
        sub = _SUBREDDIT.match(path)
        where = f" with `subreddit: {sub.group(1)}`" if sub else " with `query:`"
        return f"{url} is Reddit: use `kind: reddit`{where} to read posts with their comments"
    if host == "hnrss.org" or (host == "news.ycombinator.com" and path.startswith("/rss")):
        return (
            f"{url} is Hacker News: use `kind: hackernews` with `query:` to read stories with "
            "their comments"
        )
    se_site = _stackexchange_site(host)
    if se_site is not None and path.startswith("/feeds"):
        return (
            f"{url} is Stack Exchange: use `kind: stackexchange` with `sites: [{se_site}]` and "
            "`query:` to read questions with their answers"
        )
    return None


def _stackexchange_site(host: str) -> str | None:
    from .text import url_keys

    key = url_keys(f"https://{host}/questions/1").thread_key
    return key.split(":")[1] if key.startswith("stackexchange:") else None


def _check_source_warnings(config: Config) -> None:
    """Warnings about the sources together (a shared budget) and what their last polls found."""
    from .sources import check_warnings, source_notes

    for warning in check_warnings(list(config.sources)):
        click.echo(f"warning: {warning}")
    if not config.database.exists():
        return
    from .store import Store

    with Store.open(config.database) as store:
        cursors = {r["name"]: r["cursor"] for r in store.source_rows()}
    for spec in config.sources:
        cursor = json.loads(cursors.get(spec.name) or "{}")
        for note in source_notes(spec, cursor):
            click.echo(f"warning: {spec.name}: {note}")


def _is_stream(spec: Any) -> bool:
    from .sources import get_kind

    return get_kind(spec.kind).stream is not None


def _describe_options(spec: Any, secrets: frozenset[str] = frozenset()) -> str:
    """The options a user set for a source (defaults left out, secrets shown as ***)."""
    from .sources import get_kind
    from .sources.base import options_dict, secret_fields

    model = get_kind(spec.kind).options_model
    fields, secret = model.model_fields, secret_fields(model)
    shown = []
    for key, value in options_dict(spec.options).items():
        if value in (None, "", [], ()):
            continue
        if key in fields and value == fields[key].get_default(call_default_factory=True):
            continue
        if isinstance(value, list | tuple):
            value = ",".join(map(str, value))
        shown.append(f"{key}={mask_option(value, secrets, secret=key in secret)}")
    return " ".join(shown)


def _progress(total: int) -> tuple[Callable[[Any], None], Callable[[], None]]:
    """A progress bar on a terminal; silence elsewhere (logs, systemd, CI)."""
    if not sys.stderr.isatty() or total == 0:
        return (lambda _r: None), (lambda: None)
    bar = click.progressbar(length=total, label="polling", file=sys.stderr, show_pos=True)
    bar.__enter__()
    return (lambda _r: bar.update(1)), (lambda: bar.__exit__(None, None, None))


def _is_database_busy(exc: BaseException) -> bool:
    from .store import DatabaseBusy, is_busy

    return isinstance(exc, DatabaseBusy) or is_busy(exc)


def _database_busy(database: Path, *, service: bool = False) -> click.ClickException:
    """What a user is told when another process kept the database locked for writing."""
    from .daemon import running_pid

    holder = None if service else running_pid(database)
    if holder:
        return click.ClickException(
            f"the database is busy: `listener run` (pid {holder}) is writing to it; "
            "try again or stop it"
        )
    return click.ClickException(
        f"the database is busy: another process kept {database} locked for writing; try again"
    )


class _SummaryTellsFailures(logging.Filter):
    """During `poll` the summary names each failed source: its log line would say it twice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.funcName == "log_report" and record.levelno >= logging.WARNING)


# Errors (from the fetcher) of a request that reached no server: with nothing else answering
# either, the machine is offline (or has no DNS).
_UNREACHABLE = (
    ("DNS lookup failed", "DNS lookup failed"),
    ("could not connect", "could not connect"),
    ("(connect)", "connection timed out"),
    ("network is unreachable", "network unreachable"),
)


def _unreachable(error: str) -> str | None:
    lowered = error.lower()
    return next((why for needle, why in _UNREACHABLE if needle.lower() in lowered), None)


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or url


def _offline_hosts(summary: Any) -> dict[str, list[str]] | None:
    """{reason: [host, ...]} when every source failed without reaching any server; else None."""
    if summary.ok or not summary.reports:
        return None
    reasons: dict[str, list[str]] = {}
    for r in sorted(summary.reports, key=lambda r: r.source):
        if not r.unanswered:
            return None
        for url, error in r.unanswered:
            why = _unreachable(error)
            if why is None:
                return None
            hosts = reasons.setdefault(why, [])
            if _host(url) not in hosts:
                hosts.append(_host(url))
    return reasons


def _sources_line(ok: int, failed: int) -> str:
    total = ok + failed
    if not failed:
        return f"sources: {ok} ok, 0 failed"
    if not ok:
        return f"sources: every source failed ({failed} of {total})"
    return f"sources: {ok} ok, {failed} of {total} failed"


@cli.command(
    epilog="""\b
Examples:
  listener poll -c my.yaml
  listener poll -c my.yaml --source hn --source acme-blog

Exit status: 0 when at least one source was polled (failures are listed), 1 when every
source failed, 2 for a bad config or an unknown --source."""
)
@click.option(
    "--source", "sources", multiple=True, metavar="NAME", help="Poll only this source (repeatable)."
)
@click.pass_obj
def poll(state: State, sources: tuple[str, ...]) -> None:
    """Poll every source once and print a summary.

    Polls every enabled source (or only the ones named with --source) now, with a progress bar
    on a terminal, then prints what was fetched, the new mentions by sentiment, and each
    source that failed and why.
    """
    from .pipeline import poll_sources
    from .runtime import auto_min_bytes, auto_workers, open_runtime

    config = state.config()
    specs = [s for s in config.sources if s.enabled]
    if sources:
        unknown = [n for n in sources if n not in {s.name for s in config.sources}]
        if unknown:
            click.echo(
                f"error: no source named {', '.join(map(repr, unknown))} in {config.path}", err=True
            )
            raise SystemExit(2)
        specs = [s for s in config.sources if s.name in sources]
    update, close = _progress(len(specs))

    async def main() -> Any:
        workers = auto_workers(len(specs), config.workers)
        min_bytes = auto_min_bytes(config.workers)
        async with open_runtime(config, workers=workers, worker_min_bytes=min_bytes) as rt:
            summary = await poll_sources(
                specs, rt, on_done=update, group_commits=True, keep_mentions=False
            )
            keep = config.retention
            await rt.store.prune_fetches(
                rt.now(),
                max_age_s=keep.fetches,
                per_source=keep.fetches_per_source,
                sources=[s.name for s in specs],
            )
            return summary

    pipeline_log = logging.getLogger("listener.pipeline")
    quiet_failures = _SummaryTellsFailures()
    if not state.verbose:
        pipeline_log.addFilter(quiet_failures)
    try:
        summary = asyncio.run(main())
    except Exception as exc:
        if _is_database_busy(exc):
            raise _database_busy(config.database) from None
        raise
    finally:
        close()
        pipeline_log.removeFilter(quiet_failures)
    labels = summary.new_mentions_by_label()
    click.echo(
        f"{_sources_line(summary.ok, summary.failed)}; items: {summary.items} "
        f"({summary.new_items} new); new mentions: {sum(labels.values())} "
        f"({labels['negative']} negative, {labels['neutral']} neutral, {labels['positive']} positive)"
    )
    offline = _offline_hosts(summary)
    if offline:
        click.echo("This machine looks offline: no source could reach its server.")
        for why, hosts in offline.items():
            click.echo(f"  {why}: {', '.join(hosts)}")
        click.echo(
            "Check the connection, or try listener without internet: `listener demo`\n"
            "(bundled sample feeds served on 127.0.0.1, polled, then the dashboard)."
        )
    else:
        for r in sorted(summary.reports, key=lambda r: r.source):
            if r.error:
                hosts = list(dict.fromkeys(_host(u) for u, _ in r.unanswered))
                where = f" ({', '.join(hosts)})" if hosts else ""
                click.echo(f"  failed: {r.source}: {mask(r.error, config.secrets)}{where}")
    if specs and summary.failed == len(specs):
        raise SystemExit(1)


@cli.command()
@click.pass_obj
def stats(state: State) -> None:
    """Counts of mentions by brand, source and label.

    \b
    Example:
      listener stats -c my.yaml
    """
    from .store import Store

    config = state.config()
    if not config.database.exists():
        click.echo(f"no database yet at {config.database}: run `{state.command('poll')}` first")
        return
    with Store.open(config.database) as store:
        counts = store.counts()
    click.echo("by brand:            total  positive  neutral  negative  unscored")
    for brand, total, pos, neu, neg, other in counts["by_brand"]:
        click.echo(
            f"  {brand:<18} {total:>6} {pos or 0:>9} {neu or 0:>8} {neg or 0:>9} {other or 0:>9}"
        )
    click.echo("by source:           total  negative")
    for source, total, neg in counts["by_source"]:
        click.echo(f"  {source:<18} {total:>6} {neg or 0:>9}")
    click.echo("by label:")
    for label, total in counts["by_label"]:
        click.echo(f"  {label:<18} {total:>6}")


def main() -> None:
    try:
        cli.main(prog_name="listener", standalone_mode=True)
    except KeyboardInterrupt:
        raise SystemExit(130) from None


@cli.command()
@click.pass_obj
def run(state: State) -> None:
    """Run the service: poll on schedule and send alerts.

    Polls each source on its own interval and delivers alerts until SIGTERM or Ctrl+C, then
    finishes the writes under way and exits 0. One instance per database.

    \b
    Example:
      listener run -c my.yaml
    """
    from .alerts.outbox import Backoff, build_channels
    from .daemon import AlreadyRunning, Service, instance_lock
    from .runtime import auto_min_bytes, auto_workers, open_runtime

    config = state.config()
    if logging.getLogger().level > logging.INFO and not state.quiet:
        logging.getLogger().setLevel(logging.INFO)
    specs = [s for s in config.sources if s.enabled]
    if not specs:
        click.echo(f"error: {config.path} has no enabled sources", err=True)
        raise SystemExit(2)
    try:
        with instance_lock(config.database):

            async def main() -> None:
                workers = auto_workers(len(specs), config.workers)
                min_bytes = auto_min_bytes(config.workers)
                async with open_runtime(config, workers=workers, worker_min_bytes=min_bytes) as rt:
                    await Service(
                        rt,
                        specs,
                        build_channels(config.alerts.channels),
                        flush_every_s=config.alerts.flush_every,
                        backoff=Backoff(config.alerts.retry_first, config.alerts.retry_max),
                        retention=config.retention,
                    ).run()

            try:
                asyncio.run(main())
            except Exception as exc:
                if _is_database_busy(exc):
                    raise _database_busy(config.database, service=True) from None
                raise
    except AlreadyRunning as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None


@cli.command()
@click.pass_obj
def status(state: State) -> None:
    """Each source's health, and the alert outbox.

    Per source: last success, last error, failures in a row and the next poll; then the alerts
    waiting to be delivered and why they were not.

    \b
    Example:
      listener status -c my.yaml
    """
    from .alerts.outbox import outbox_counts
    from .sources import source_notes
    from .sources._api import describe_budget
    from .store import Store

    config = state.config()
    if not config.database.exists():
        click.echo(
            f"no database yet at {config.database}: "
            f"run `{state.command('poll')}` or `{state.command('run')}`"
        )
        return
    with Store.open(config.database) as store:
        rows = {r["name"]: r for r in store.source_rows()}
        click.echo(
            f"{'source':<24} {'health':<8} {'last success':<21} {'fails':>5}  {'next poll':<21} last error"
        )
        for spec in config.sources:
            r = rows.get(spec.name)
            if r is None:
                click.echo(f"{spec.name:<24} {'new':<8} {'-':<21} {0:>5}  {'now':<21}")
                continue
            failures = r["consecutive_failures"] or 0
            health = (
                "ok"
                if failures == 0 and r["last_success_at"]
                else ("failing" if failures else "new")
            )
            if not spec.enabled:
                health = "disabled"
            # Masked again: a database written before secrets were masked may still hold them.
            # A working source may still have something to say (a feed cut to its first entries).
            last = r["last_error"] or (f"note: {r['last_note']}" if r.get("last_note") else "")
            last = mask(last, config.secrets)[:80]
            click.echo(
                f"{spec.name:<24} {health:<8} {r['last_success_at'] or 'never':<21} {failures:>5}  "
                f"{r['next_poll_at'] or 'now':<21} {last}"
            )
        for spec in config.sources:
            r = rows.get(spec.name)
            cursor = json.loads(r["cursor"]) if r is not None and r["cursor"] else {}
            for note in source_notes(spec, cursor):
                click.echo(f"  {spec.name}: {note}")
        budgets = store.host_budgets()
        if budgets:
            click.echo("request budgets per host:")
            for budget in budgets:
                click.echo(f"  {describe_budget(budget, datetime.now(UTC))}")
        counts = outbox_counts(store)
        click.echo(
            f"outbox: {counts.get('pending', 0)} pending, {counts.get('sent', 0)} sent, "
            f"{counts.get('failed', 0)} failed"
            + (f", {counts['sending']} being sent" if counts.get("sending") else "")
        )
        for channel, error, n in store.undelivered_errors():
            click.echo(f"  {channel}: {n} not delivered: {mask(error, config.secrets)}")


@cli.group(cls=_VerbGroup)
def alerts() -> None:
    """Test the alert channels, or deliver the outbox.

    \b
    Examples:
      listener alerts test -c my.yaml     a test message on every channel
      listener alerts flush -c my.yaml    deliver what is pending now
    """


@alerts.command("test")
@click.pass_obj
def alerts_test(state: State) -> None:
    """Send a test alert on each channel; say which failed.

    Exits 1 when a channel failed, 2 when the config has no channel.

    \b
    Example:
      listener alerts test -c my.yaml
    """
    from datetime import UTC, datetime

    from .alerts.channels import send_alert
    from .alerts.message import AlertMessage, Evidence
    from .alerts.outbox import build_channels
    from .runtime import channel_client

    config = state.config()
    channels = build_channels(config.alerts.channels)
    if not channels:
        click.echo(f"no alert channels in {config.path} (see `alerts: channels:`)")
        raise SystemExit(2)
    now = datetime.now(UTC)
    message = AlertMessage(
        alert_id=f"test-{now:%Y%m%dT%H%M%S}",
        rule="test",
        level=1,
        brand=config.brands[0].name,
        title="Test alert from listener",
        url=None,
        why="This is a test: if you can read it, this channel works.",
        evidence=(Evidence(text="Example of a negative post about the brand.", compound=-0.6),),
        created_at=now.isoformat(timespec="seconds"),
    )

    async def main() -> list[tuple[str, Any]]:
        async with channel_client(config) as http:
            return [
                (name, await send_alert(ch, message, http=http, user_agent=config.user_agent))
                for name, ch in channels.items()
            ]

    failed = 0
    with masked_in_logs(config.secrets):
        deliveries = asyncio.run(main())
    for name, delivery in deliveries:
        if delivery.ok:
            click.echo(f"  ok      {name}")
        else:
            failed += 1
            click.echo(f"  FAILED  {name}: {mask(delivery.error or '', config.secrets)}")
    raise SystemExit(1 if failed else 0)


@alerts.command("flush")
@click.pass_obj
def alerts_flush(state: State) -> None:
    """Deliver everything pending in the outbox now.

    Digests included. Exits 1 when something could not be delivered.

    \b
    Example:
      listener alerts flush -c my.yaml
    """
    from .alerts.outbox import build_channels, deliver_pending
    from .pipeline import utc_now
    from .runtime import channel_client
    from .store import Store

    config = state.config()
    channels = build_channels(config.alerts.channels)

    async def main(store: Store) -> Any:
        async with channel_client(config) as http:
            return await deliver_pending(
                store, channels, http=http, now=utc_now, force=True, user_agent=config.user_agent
            )

    with Store.open(config.database) as store, masked_in_logs(config.secrets):
        report = asyncio.run(main(store))
    click.echo(
        f"alerts: {report.sent} sent, {report.retrying} still pending, {report.failed} failed"
    )
    for error in report.errors:
        click.echo(f"  {mask(error, config.secrets)}")
    raise SystemExit(1 if report.retrying or report.failed else 0)


@cli.command()
@click.argument("mention_id", type=int)
@click.argument("label", required=False, type=click.Choice(["positive", "neutral", "negative"]))
@click.option(
    "--not-relevant",
    "not_relevant",
    flag_value=True,
    default=None,
    help="Not about the brand: left out of alerts and counts.",
)
@click.option("--relevant", "not_relevant", flag_value=False, help="Undo --not-relevant.")
@click.option(
    "--clear", is_flag=True, help="Drop the correction: the scorer's label applies again."
)
@click.pass_obj
def label(
    state: State, mention_id: int, label: str | None, not_relevant: bool | None, clear: bool
) -> None:
    """Correct a mention's label, or mark it not relevant.

    Corrections survive rescoring and are what the alert rules use. MENTION_ID is the `id`
    column of the mentions table (Datasette shows it).

    \b
    Examples:
      listener label 42 negative
      listener label 42 --not-relevant
      listener label 42 --clear
    """
    from .store import Store

    if label is None and not_relevant is None and not clear:
        click.echo(
            "error: give a LABEL (positive, neutral, negative), --not-relevant, --relevant or --clear",
            err=True,
        )
        raise SystemExit(2)
    config = state.config()
    with Store.open(config.database) as store:
        if clear:
            found = store.clear_label(mention_id)
        else:
            found = store.set_label(mention_id, label, not_relevant=not_relevant)
        if not found:
            click.echo(f"error: no mention with id {mention_id} in {config.database}", err=True)
            raise SystemExit(1)
        row = store.mention(mention_id)
    assert row is not None  # found above
    relevance = "not relevant" if row["not_relevant"] else "relevant"
    click.echo(
        f"mention {mention_id} ({row['brand']}: {row['title']}): {row['label']} "
        f"(scorer said {row['auto_label']}), {relevance}"
    )


@cli.command()
@click.argument("thread")
@click.argument("status", type=click.Choice(THREAD_STATUSES))
@click.option("--note", help="Why, for the team (kept in the thread's history).")
@click.pass_obj
def triage(state: State, thread: str, status: str, note: str | None) -> None:
    """Triage a conversation: acknowledged, resolved, ignored or new.

    THREAD is the conversation's thread key (the `key` of the threads table, the `thread_key`
    of a mention) or its URL. Ignored conversations never alert; a resolved one opens again
    (status new) when a new negative post arrives. Every change is kept in its history (the
    thread_triage table, and the conversation's page in `listener serve`).

    \b
    Examples:
      listener triage forum.example.com/t/kettle-e4/8812 acknowledged --note "support is on it"
      listener triage https://blog.example.com/2026/outage resolved
      listener triage forum.example.com/t/kettle-e4/8812 ignored --note "a competitor's troll"
    """
    from .store import Store

    config = state.config()
    if not config.database.exists():
        raise click.ClickException(
            f"no database yet at {config.database}: run `{state.command('poll')}` first"
        )
    with Store.open(config.database) as store:
        key = store.find_thread(thread)
        was = store.set_thread_status(key, status, note, _actor()) if key else None
        row = store.thread(key) if key and was is not None else None
    if row is None:
        click.echo(
            f"error: no conversation {thread!r} in {config.database}: give a thread key (the "
            "threads table's key) or the conversation's URL",
            err=True,
        )
        raise SystemExit(1)
    title = row.get("title") or row.get("url") or key
    change = f"{was} → {status}" if was != status else f"{status} (unchanged)"
    click.echo(f"{title}: {change}{f' ({note.strip()})' if note and note.strip() else ''}")


def _actor() -> str:
    """Who changed a triage state from the command line: `cli:` and the OS user."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (some containers)
        return "cli"


@cli.command()
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Re-score every mention, not only those scored with another lexicon.",
)
@click.pass_obj
def rescore(state: State, everything: bool) -> None:
    """Re-score stored mentions after a lexicon change.

    Run it after changing the `sentiment:` lexicon or thresholds; it reports the labels that
    changed and keeps people's corrections.

    \b
    Examples:
      listener rescore -c my.yaml
      listener rescore -c my.yaml --all
    """
    from .match import Matcher
    from .rescore import rescore_mentions
    from .runtime import build_scorer
    from .store import Store

    config = state.config()
    with Store.open(config.database) as store:
        result = rescore_mentions(
            store, build_scorer(config), Matcher.from_brands(config.brands), everything=everything
        )
    click.echo(
        f"rescored {result.rescored} mentions: {result.changed} labels changed "
        f"({result.corrected_kept} corrections kept as set); {result.items} items re-scored"
    )
    for (old, new), n in sorted(result.transitions.items()):
        click.echo(f"  {old} -> {new}: {n}")


@cli.command()
@click.argument("text", nargs=-1)
@click.option("--brand", help="Brand the text is about: its names are neutralised before scoring.")
@click.pass_obj
def score(state: State, text: tuple[str, ...], brand: str | None) -> None:
    """Score the sentiment of text: one JSON line out each.

    Scores each TEXT argument, or JSON lines {"text": ..., "brand": ...} on stdin.

    \b
    Examples:
      listener score "The new kettle is great"
      listener score --brand Acme "Acme support never answered"
      echo '{"text": "still waiting for a refund"}' | listener score
    """
    import json

    from .match import Matcher
    from .runtime import build_scorer
    from .sentiment import Scorer, score_json_lines

    # No config at all is fine here: the default scorer is what a new user tries first.
    config: Config | None = state.config() if (state.config_arg or state.path.exists()) else None
    scorer = build_scorer(config) if config else Scorer()
    matcher = Matcher.from_brands(config.brands) if config else None

    def neutral_for(name: str | None) -> tuple[str, ...]:
        if not name:
            return ()
        if matcher is not None:
            try:
                return matcher.neutral_terms(name)
            except KeyError:
                pass
        return (name,)

    lines: Iterable[str]
    if text:
        lines = [json.dumps({"text": t, "brand": brand}) for t in text]
    else:
        lines = (line for line in sys.stdin)
    failed = False

    def others_for(name: str | None) -> list[str]:  # other brands: scored toward `name` only
        m = matcher
        if not (config and m):
            return []
        return [t for b in config.brands if b.name != name for t in m.neutral_terms(b.name)]

    for out in score_json_lines(scorer, lines, neutral_for, others_for):
        failed = failed or "error" in out
        click.echo(json.dumps(out, ensure_ascii=False))
    raise SystemExit(1 if failed else 0)


@cli.command("match")
@click.argument("text", nargs=-1)
@click.option(
    "--stored",
    is_flag=True,
    help="Backtest: the rules as they are now over the stored items, against the stored mentions.",
)
@click.option(
    "--since",
    metavar="DURATION",
    help="With --stored: only items first seen this recently (e.g. 30d).",
)
@click.option(
    "--examples",
    default=3,
    show_default=True,
    metavar="N",
    help="With --stored: examples shown per brand of what would be added and dropped.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="With --stored: the report as one JSON object."
)
@click.option(
    "--apply",
    is_flag=True,
    help="With --stored: make it so: add the mentions the rules now find (scored as a poll "
    "would) and mark the ones they no longer find not relevant.",
)
@click.pass_obj
def match_cmd(
    state: State,
    text: tuple[str, ...],
    stored: bool,
    since: str | None,
    examples: int,
    as_json: bool,
    apply: bool,
) -> None:
    """Show which brands a text names and why; backtest with --stored.

    Reads TEXT arguments, or JSON lines {"text", "title", "url", "author", "source"} on stdin,
    and prints one JSON line each: the mentions found and why (and why not, where a term was
    found but a rule dropped it). With --stored, runs the rules as they are now over the items
    already stored and reports what they would add and drop.

    \b
    Examples:
      listener match "Linear algebra homework is due"
      echo '{"text": "Moving our roadmap to Linear"}' | listener match
      listener match --stored --since 30d
      listener match --stored --apply
    """
    import json

    from .match import Matcher, match_json_lines

    config = state.config()
    matcher = Matcher.from_brands(config.brands)
    if stored:
        if text:
            raise click.UsageError("--stored reads the stored items: give no TEXT")
        _backtest(config, matcher, since, examples, as_json, apply)
        return
    if since or apply:
        raise click.UsageError(f"{'--since' if since else '--apply'} goes with --stored")
    lines: Iterable[str] = [json.dumps({"text": t}) for t in text] if text else sys.stdin
    failed = False
    for out in match_json_lines(matcher, lines):
        failed = failed or "error" in out
        click.echo(json.dumps(out, ensure_ascii=False))
    raise SystemExit(1 if failed else 0)


def _backtest(
    config: Config, matcher: Any, since: str | None, examples: int, as_json: bool, apply: bool
) -> None:
    import json
    from datetime import UTC, datetime, timedelta

    from .backtest import apply_rules, backtest
    from .config import parse_duration
    from .runtime import build_scorer
    from .store import Store

    cutoff = None
    if since:
        try:
            cutoff = datetime.now(UTC) - timedelta(seconds=parse_duration(since))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
    if not config.database.exists():
        raise click.ClickException(
            f"no database yet at {config.database}: run `listener poll` first"
        )
    with Store.open(config.database) as store:
        result = backtest(store, matcher, since=cutoff, examples=examples)
        applied = apply_rules(store, matcher, build_scorer(config), since=cutoff) if apply else None
    if as_json:
        report = result.as_dict()
        if applied is not None:
            report["applied"] = applied.as_dict()
        click.echo(json.dumps(report, ensure_ascii=False))
        return
    window = f" first seen in the last {since}" if since else ""
    click.echo(
        f"backtest over {result.items} stored items{window} "
        f"({result.title_only} with only a title stored: matched on their title)"
    )
    click.echo(f"{'brand':<20} {'stored':>7} {'kept':>6} {'would add':>10} {'would drop':>11}")
    for name, d in result.brands.items():
        click.echo(f"{name:<20} {d.stored:>7} {d.kept:>6} {d.added:>10} {d.dropped:>11}")
    for name, d in result.brands.items():
        for verb, shown in (("add", d.add_examples), ("drop", d.drop_examples)):
            for ex in shown:
                click.echo(f"  {name}: would {verb} item {ex['item_id']} {ex['url']}")
                click.echo(f"      {ex['snippet'][:160]}")
                click.echo(f"      why: {ex['why']}")
        if d.dropped_not_relevant:
            click.echo(f"  {name}: {d.dropped_not_relevant} of the drops were marked not relevant")
    if applied is not None:
        added, dropped = sum(applied.added.values()), sum(applied.dropped.values())
        click.echo(f"applied: {added} mentions added, {dropped} marked not relevant")
        for name in dict.fromkeys([*applied.added, *applied.dropped]):
            click.echo(
                f"  {name}: {applied.added.get(name, 0)} added, "
                f"{applied.dropped.get(name, 0)} marked not relevant"
            )
    elif any(d.added or d.dropped for d in result.brands.values()):
        click.echo(
            "nothing was changed: new polls use the rules as they are now; "
            "--apply applies them to the stored items"
        )


# --------------------------------------------------------------------- serve and demo (web/)


def _bind_port(host: str, port: int) -> Any:
    """The port `serve` and `demo` listen on, bound now: a busy one is an error before anything
    is polled or printed."""
    from .web.serve import ServeError, bind_port

    try:
        return bind_port(host, port)
    except ServeError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command(
    epilog="""\b
Examples:
  listener serve -c my.yaml
  listener serve -c my.yaml --port 8002 --open
  listener serve -c my.yaml --host 0.0.0.0    reachable from other machines
  listener serve -c my.yaml --root            prints a login link to triage conversations

Stops on Ctrl+C or SIGTERM (exit 0)."""
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    default=8001,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--open/--no-open", "open_browser", default=False, help="Open the dashboard in a browser."
)
@click.option(
    "--root",
    is_flag=True,
    help="Print a one-time login link: whoever opens it may change conversations' status.",
)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, open_browser: bool, root: bool) -> None:
    """Explore the mentions in Datasette.

    The dashboard, full-text search, facets and canned questions on the config's database,
    readable while `listener run` keeps writing. Read-only, SQL included: only someone signed
    in with the `--root` login link may change a conversation's status, on its page.
    """
    state = ctx.obj
    config = state.config()
    if not config.database.exists():
        click.echo(
            f"error: no database yet at {config.database}: run `{state.command('poll')}` first "
            "(or `listener demo` to try listener on sample data)",
            err=True,
        )
        raise SystemExit(1)
    from .web.serve import run_server, sigterm_exits_0

    sock = _bind_port(host, port)
    with sigterm_exits_0():
        run_server(
            config.database,
            host=host,
            port=port,
            open_browser=open_browser,
            sock=sock,
            root=root,
            echo=click.echo,
        )


@cli.command(
    epilog="""\b
Examples:
  listener demo                          poll the samples, then serve them on :8001
  listener demo --port 8002 --open       another port; open the browser too
  listener demo --dir ./demo --no-serve  keep the demo database, print the report only
  listener -c ./demo/sources.yaml serve  explore a kept demo database again

Stops on Ctrl+C or SIGTERM (exit 0). Exits 1 if no sample source could be polled."""
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the demo config and database, kept afterwards "
    "(default: a temporary folder, removed when the demo stops).",
)
@click.option("--serve/--no-serve", default=True, help="Start the Datasette explorer afterwards.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to serve on.")
@click.option(
    "--port",
    default=8001,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of the Datasette explorer (0: any free port).",
)
@click.option(
    "--open/--no-open", "open_browser", default=False, help="Open the dashboard in a browser."
)
def demo(directory: Path | None, serve: bool, host: str, port: int, open_browser: bool) -> None:
    """Try listener offline on bundled sample data.

    Serves sample feeds about a fictional kettle maker on 127.0.0.1, polls them into a demo
    database with the real pipeline, prints the conversation that turned angry and the alert
    listener would send, then serves the database in Datasette.
    """
    from .demo import format_report, run_demo
    from .web.serve import run_server, sigterm_exits_0

    # The port is taken first: a busy one is an error before anything is polled or printed.
    sock = _bind_port(host, port) if serve else None
    with sigterm_exits_0(), contextlib.ExitStack() as cleanup:
        if sock is not None:
            cleanup.callback(sock.close)
        temporary = directory is None
        if directory is None:
            directory = Path(
                cleanup.enter_context(
                    tempfile.TemporaryDirectory(prefix="listener-demo-", ignore_cleanup_errors=True)
                )
            )
        click.echo(
            "listener demo: sample blogs, a forum and comment threads about Brewly, a fictional "
            "kettle maker, served on 127.0.0.1.\n"
        )
        result = run_demo(directory)
        click.echo(format_report(result, temporary=temporary))
        if result.summary.ok == 0:
            raise SystemExit(1)
        if sock is not None:
            click.echo("")
            run_server(
                result.database,
                host=host,
                port=port,
                open_browser=open_browser,
                sock=sock,
                echo=click.echo,
            )
