"""The `listener` command line: a thin layer over the library (exit codes 0 ok, 1 failure, 2 config)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import click

from . import __version__
from .config import Config, ConfigError, config_path, format_duration, load_config

log = logging.getLogger(__name__)

STARTER = Path(__file__).with_name("starter.yaml")


class State:
    def __init__(self, config: str | None, quiet: bool = False) -> None:
        self.config_arg = config
        self.quiet = quiet
        self._config: Config | None = None

    @property
    def path(self) -> Path:
        return config_path(self.config_arg)

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


class _Group(click.Group):
    """Commands that live in their own modules (Datasette's) are imported only when used."""

    lazy: ClassVar[dict[str, tuple[str, str]]] = {
        "serve": ("listener.web", "serve"),
        "demo": ("listener.demo", "demo"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            import importlib

            module, attr = self.lazy[name]
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config",
    metavar="PATH",
    help="Config file (default: $LISTENER_CONFIG, else ./sources.yaml).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.version_option(__version__, prog_name="listener")
@click.pass_context
def cli(ctx: click.Context, config: str | None, verbose: int, quiet: bool) -> None:
    """Social listening: find mentions of your brands in feeds and forums, score their
    sentiment, and alert when a conversation turns negative."""
    setup_logging(verbose, quiet)
    ctx.obj = State(config, quiet)


@cli.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_obj
def init(state: State, path: Path | None, force: bool) -> None:
    """Write a commented starter sources.yaml."""
    target = path or state.path
    if target.exists() and not force:
        click.echo(f"error: {target} already exists (use --force to overwrite)", err=True)
        raise SystemExit(2)
    target.write_text(STARTER.read_text(encoding="utf-8"), encoding="utf-8")
    click.echo(f"wrote {target}: add your brands and sources, then run `listener check`")


@cli.command()
@click.pass_obj
def check(state: State) -> None:
    """Validate the config and list what will be polled."""
    config = state.config()
    click.echo(f"{config.path}: ok")
    click.echo(f"database: {config.database}")
    click.echo("brands:")
    for b in config.brands:
        products = f" (products: {', '.join(p.name for p in b.products)})" if b.products else ""
        click.echo(f"  {b.name}: {', '.join(b.terms)}{products}")
    click.echo(f"sources ({len(config.sources)}):")
    for s in config.sources:
        where = s.url or _describe_options(s)
        flag = "" if s.enabled else "  [disabled]"
        click.echo(
            f"  {s.name:<24} {s.kind:<14} every {format_duration(s.every_s):<6} {where}{flag}"
        )
    channels = config.alerts.channels
    listed = ", ".join(f"{c.name} ({c.kind})" for c in channels)
    click.echo(
        f"alert channels ({len(channels)}): {listed or 'none (alerts stay in the database)'}"
    )


def _describe_options(spec: Any) -> str:
    """The options a user set for a source (defaults and secrets left out)."""
    from .sources import get_kind

    fields = get_kind(spec.kind).options_model.model_fields
    shown = []
    for key, value in spec.options.items():
        if key in _SECRET_KEYS or value in (None, "", [], ()):
            continue
        if key in fields and value == fields[key].get_default(call_default_factory=True):
            continue
        if isinstance(value, list | tuple):
            value = ",".join(map(str, value))
        shown.append(f"{key}={value}")
    return " ".join(shown)


_SECRET_KEYS = {
    "token",
    "password",
    "app_password",
    "client_secret",
    "refresh_token",
    "key",
    "api_key",
}


def _progress(total: int) -> tuple[Callable[[Any], None], Callable[[], None]]:
    """A progress bar on a terminal; silence elsewhere (logs, systemd, CI)."""
    if not sys.stderr.isatty() or total == 0:
        return (lambda _r: None), (lambda: None)
    bar = click.progressbar(length=total, label="polling", file=sys.stderr, show_pos=True)
    bar.__enter__()
    return (lambda _r: bar.update(1)), (lambda: bar.__exit__(None, None, None))


@cli.command()
@click.option(
    "--source", "sources", multiple=True, metavar="NAME", help="Poll only this source (repeatable)."
)
@click.pass_obj
def poll(state: State, sources: tuple[str, ...]) -> None:
    """Poll every source once (or only the named ones) and print a summary."""
    from .pipeline import poll_sources
    from .runtime import auto_workers, open_runtime

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
        async with open_runtime(config, workers=workers) as rt:
            return await poll_sources(specs, rt, on_done=update, group_commits=True)

    try:
        summary = asyncio.run(main())
    finally:
        close()
    labels = summary.new_mentions_by_label()
    click.echo(
        f"sources: {summary.ok} ok, {summary.failed} failed; items: {summary.items} "
        f"({summary.new_items} new); new mentions: {sum(labels.values())} "
        f"({labels['negative']} negative, {labels['neutral']} neutral, {labels['positive']} positive)"
    )
    for r in sorted(summary.reports, key=lambda r: r.source):
        if r.error:
            click.echo(f"  failed: {r.source}: {r.error}")
    if specs and summary.failed == len(specs):
        raise SystemExit(1)


@cli.command()
@click.pass_obj
def stats(state: State) -> None:
    """Counts of mentions by brand, source and label."""
    from .store import Store

    config = state.config()
    if not config.database.exists():
        click.echo(f"no database yet at {config.database}: run `listener poll` first")
        return
    store = Store.open(config.database)
    try:
        counts = store.counts()
    finally:
        store.close()
    click.echo("by brand:            total  positive  neutral  negative")
    for brand, total, pos, neu, neg in counts["by_brand"]:
        click.echo(f"  {brand:<18} {total:>6} {pos or 0:>9} {neu or 0:>8} {neg or 0:>9}")
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
    """Run the service: poll each source on its schedule and deliver alerts, until SIGTERM/SIGINT."""
    from .alerts.outbox import Backoff, build_channels
    from .daemon import AlreadyRunning, Service, instance_lock
    from .runtime import auto_workers, open_runtime

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
                async with open_runtime(config, workers=workers) as rt:
                    await Service(
                        rt,
                        specs,
                        build_channels(config.alerts.channels),
                        flush_every_s=config.alerts.flush_every,
                        backoff=Backoff(config.alerts.retry_first, config.alerts.retry_max),
                    ).run()

            asyncio.run(main())
    except AlreadyRunning as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None


@cli.command()
@click.pass_obj
def status(state: State) -> None:
    """Each source's health (last success, last error, failures in a row, next poll) and the outbox."""
    from .alerts.outbox import outbox_counts
    from .store import Store

    config = state.config()
    if not config.database.exists():
        click.echo(f"no database yet at {config.database}: run `listener poll` or `listener run`")
        return
    store = Store.open(config.database)
    try:
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
            click.echo(
                f"{spec.name:<24} {health:<8} {r['last_success_at'] or 'never':<21} {failures:>5}  "
                f"{r['next_poll_at'] or 'now':<21} {(r['last_error'] or '')[:80]}"
            )
        counts = outbox_counts(store)
        click.echo(
            f"outbox: {counts.get('pending', 0)} pending, {counts.get('sent', 0)} sent, "
            f"{counts.get('failed', 0)} failed"
        )
        for channel, error, n in store.conn.execute(
            "SELECT channel, last_error, count(*) FROM outbox WHERE status != 'sent' AND last_error "
            "IS NOT NULL GROUP BY channel, last_error"
        ):
            click.echo(f"  {channel}: {n} not delivered: {error}")
    finally:
        store.close()


@cli.group()
def alerts() -> None:
    """Test the alert channels, or deliver what the outbox holds."""


@alerts.command("test")
@click.pass_obj
def alerts_test(state: State) -> None:
    """Send a test alert through each channel and say which failed and why."""
    from datetime import UTC, datetime

    import httpx

    from .alerts.channels import send_alert
    from .alerts.message import AlertMessage, Evidence
    from .alerts.outbox import build_channels

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
        async with httpx.AsyncClient(timeout=20.0, follow_redirects=False) as http:
            return [
                (name, await send_alert(ch, message, http=http)) for name, ch in channels.items()
            ]

    failed = 0
    for name, delivery in asyncio.run(main()):
        if delivery.ok:
            click.echo(f"  ok      {name}")
        else:
            failed += 1
            click.echo(f"  FAILED  {name}: {delivery.error}")
    raise SystemExit(1 if failed else 0)


@alerts.command("flush")
@click.pass_obj
def alerts_flush(state: State) -> None:
    """Deliver everything pending in the outbox now (digests included)."""
    import httpx

    from .alerts.outbox import build_channels, deliver_pending
    from .pipeline import utc_now
    from .store import Store

    config = state.config()
    store = Store.open(config.database)
    channels = build_channels(config.alerts.channels)

    async def main() -> Any:
        async with httpx.AsyncClient(timeout=20.0, follow_redirects=False) as http:
            return await deliver_pending(store, channels, http=http, now=utc_now, force=True)

    try:
        report = asyncio.run(main())
    finally:
        store.close()
    click.echo(
        f"alerts: {report.sent} sent, {report.retrying} still pending, {report.failed} failed"
    )
    for error in report.errors:
        click.echo(f"  {error}")
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
    """Correct a mention: set its LABEL, or mark it not relevant. Corrections survive rescoring."""
    from .store import Store

    if label is None and not_relevant is None and not clear:
        click.echo(
            "error: give a LABEL (positive, neutral, negative), --not-relevant, --relevant or --clear",
            err=True,
        )
        raise SystemExit(2)
    config = state.config()
    store = Store.open(config.database)
    try:
        if clear:
            found = store.clear_label(mention_id)
        else:
            found = store.set_label(mention_id, label, not_relevant=not_relevant)
        if not found:
            click.echo(f"error: no mention with id {mention_id} in {config.database}", err=True)
            raise SystemExit(1)
        row = store.conn.execute(
            "SELECT brand, label, auto_label, not_relevant, title FROM mentions WHERE id = ?",
            (mention_id,),
        ).fetchone()
    finally:
        store.close()
    brand, current, auto, nr, title = row
    relevance = "not relevant" if nr else "relevant"
    click.echo(
        f"mention {mention_id} ({brand}: {title}): {current} (scorer said {auto}), {relevance}"
    )


@cli.command()
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Re-score every mention, not only those scored with another lexicon.",
)
@click.pass_obj
def rescore(state: State, everything: bool) -> None:
    """Re-score stored mentions after a lexicon or threshold change; report the labels that changed."""
    from .match import Matcher
    from .rescore import rescore_mentions
    from .runtime import build_scorer
    from .store import Store

    config = state.config()
    store = Store.open(config.database)
    try:
        result = rescore_mentions(
            store, build_scorer(config), Matcher.from_brands(config.brands), everything=everything
        )
    finally:
        store.close()
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
    """Score TEXT (or JSON lines {"text": ..., "brand": ...} on stdin): one JSON line out each."""
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

    if text:
        lines = [json.dumps({"text": t, "brand": brand}) for t in text]
    else:
        lines = (line for line in sys.stdin)
    failed = False

    def others_for(name: str | None) -> list[str]:  # other brands: scored toward `name` only
        brands = config.brands if config and matcher else ()
        return [t for b in brands if b.name != name for t in matcher.neutral_terms(b.name)]

    for out in score_json_lines(scorer, lines, neutral_for, others_for):
        failed = failed or "error" in out
        click.echo(json.dumps(out, ensure_ascii=False))
    raise SystemExit(1 if failed else 0)
