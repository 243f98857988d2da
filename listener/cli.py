"""The `listener` command line: a thin layer over the library (exit codes 0 ok, 1 failure, 2 config)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__
from .config import Config, ConfigError, config_path, format_duration, load_config

log = logging.getLogger(__name__)

STARTER = Path(__file__).with_name("starter.yaml")


class State:
    def __init__(self, config: str | None) -> None:
        self.config_arg = config
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    ctx.obj = State(config)


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
        where = s.url or ", ".join(f"{k}={v}" for k, v in s.options.items() if k not in _SECRET_KEYS and v)
        flag = "" if s.enabled else "  [disabled]"
        click.echo(f"  {s.name:<24} {s.kind:<12} every {format_duration(s.every_s):<6} {where}{flag}")
    channels = config.alerts.channels
    click.echo(f"alert channels ({len(channels)}): " + ", ".join(f"{c.name} ({c.kind})" for c in channels))


_SECRET_KEYS = {"token", "password", "app_password", "client_secret", "key", "api_key"}


def _progress(total: int) -> tuple[Callable[[Any], None], Callable[[], None]]:
    """A progress bar on a terminal; silence elsewhere (logs, systemd, CI)."""
    if not sys.stderr.isatty() or total == 0:
        return (lambda _r: None), (lambda: None)
    bar = click.progressbar(length=total, label="polling", file=sys.stderr, show_pos=True)
    bar.__enter__()
    return (lambda _r: bar.update(1)), (lambda: bar.__exit__(None, None, None))


@cli.command()
@click.option("--source", "sources", multiple=True, metavar="NAME", help="Poll only this source (repeatable).")
@click.pass_obj
def poll(state: State, sources: tuple[str, ...]) -> None:
    """Poll every source once (or only the named ones) and print a summary."""
    from .pipeline import poll_sources
    from .runtime import open_runtime

    config = state.config()
    specs = [s for s in config.sources if s.enabled]
    if sources:
        unknown = [n for n in sources if n not in {s.name for s in config.sources}]
        if unknown:
            click.echo(f"error: no source named {', '.join(map(repr, unknown))} in {config.path}", err=True)
            raise SystemExit(2)
        specs = [s for s in config.sources if s.name in sources]
    update, close = _progress(len(specs))

    async def main() -> Any:
        async with open_runtime(config) as rt:
            return await poll_sources(specs, rt, on_done=update)

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
