"""`listener serve`: Datasette on the mention database, shaped for people who do not write SQL.

`datasette_metadata` describes the tables (titles, column descriptions, facets, sort orders,
labels for foreign keys, full-text search, internal tables hidden) and carries the canned queries
from `views.py`; `make_datasette` builds a Datasette with that metadata and listener's plugin (the
`/-/dashboard` page). The database is opened as a normal, mutable file, never `immutable`: the
daemon keeps writing, WAL lets Datasette read meanwhile, and new rows show on refresh.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
import sqlite3
import threading
import webbrowser
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click

from .views import available_queries, ensure_views, existing_tables

# Datasette and the store are imported where used: `listener --help` and the other commands do
# not pay for them.
PLUGIN_NAME = "listener"  # the plugin's name in Datasette, and the key of its settings
DASHBOARD_PATH = "/-/dashboard"
# A conversation's page: `/-/thread?key=<urlencoded thread key>` (alerts link here).
THREAD_PATH = "/-/thread"

log = logging.getLogger(__name__)

# Marketing pages aggregate a week or more of mentions: Datasette's 1 s query and 200 ms facet
# limits are made for public instances on shared hosts, not a team's own database.
SETTINGS = {
    "sql_time_limit_ms": 5000,
    "facet_time_limit_ms": 1000,
    "default_page_size": 50,
    "truncate_cells_html": 300,
    # Facets list their top values and "…" for the rest: the rows stay near the top of a page.
    "default_facet_size": 8,
}

# The columns a person reads first, first: the words and how they feel, then whose, where and
# when. Table pages (and search results) show these columns in this order, the others after
# them; the schema's own order is left alone (plugin setting `reading_order`).
READING_ORDER: dict[str, tuple[str, ...]] = {
    "mentions": (
        "snippet",
        "label",
        "compound",
        "brand",
        "source",
        "published_at",
        "url",
        "title",
        "author",
    ),
    "items": (
        "text",
        "label",
        "compound",
        "title",
        "source",
        "published_at",
        "url",
        "author",
        "thread_key",
    ),
}

_MENTION_COLUMNS = {
    "compound": "Sentiment: VADER compound, -1 very negative .. +1 very positive",
    "label": "positive, neutral or negative; a person's correction (`listener label`) wins",
    "thread_key": "The conversation it belongs to: click it to read the whole thread",
    "published_at": "When it was posted (UTC); first_seen_at: when listener found it",
    "not_relevant": "1 when a person marked it not about the brand: left out of every count",
}


def datasette_metadata(db_path: str | Path) -> dict[str, Any]:
    """Datasette metadata for the mention database at `db_path`: descriptions, facets, sort
    orders, foreign-key labels, hidden internal tables, search, and the canned queries whose
    tables exist in it."""
    db_path = Path(db_path)
    name = db_path.stem
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = existing_tables(conn)
    finally:
        conn.close()
    table_meta: dict[str, Any] = {
        "mentions": {
            "description": (
                "One row per post and brand it names, with its sentiment. Search the text, "
                "filter with the facets, click a thread key for the whole conversation."
            ),
            "label_column": "title",
            "sort_desc": "published_at",
            # Four short facets in one row above the rows; the day facet (a long list sorted
            # by count) and kind are a click away under "Suggested facets", and the
            # dashboard shows mentions over time.
            "facets": ["brand", "label", "source", "product"],
            "fts_table": "mentions_fts",
            "fts_pk": "id",
            "columns": _MENTION_COLUMNS,
        },
        "items": {
            "description": (
                "Every post kept (deduplicated: a story seen under several links or in several "
                "sources is one row). Replies in a brand's conversation are kept even when they "
                "do not name the brand."
            ),
            "label_column": "title",
            "sort_desc": "published_at",
            "facets": ["source", "label", "is_reply"],
            "fts_table": "items_fts",
            "fts_pk": "id",
            "columns": {
                "thread_key": "The conversation it belongs to",
                "relevant": "1 when it names a brand or sits in a brand's conversation",
                "compound": "Sentiment of the whole post, -1 .. +1",
                "sightings": "How many places it was seen (syndicated copies, several sources)",
            },
        },
        "threads": {
            "description": (
                "Conversations: a post and its comments, a forum topic, copies of one story. "
                "Click posts or negative_posts for the posts themselves."
            ),
            "label_column": "title",
            "sort_desc": "last_seen_at",
            "facets": ["brands", "source"],
            "columns": {
                "brands": "Brands named in the conversation",
                "posts": "Posts scored (the brand's posts and their replies)",
                "negative_posts": "Posts scored negative",
                "mean_compound": "Mean sentiment of the posts, -1 .. +1",
                "worst_compound": "Sentiment of the worst post",
            },
        },
        "sources": {
            "description": "Each source's state: validators, last success and error, next poll.",
            "label_column": "name",
            "sort": "name",
            "facets": ["kind", "consecutive_failures"],
        },
        "fetches": {
            "description": "Every HTTP fetch: status, time, size, retries and error.",
            "sort_desc": "started_at",
            "facets": ["source", "status", {"date": "started_at"}],
        },
        "sightings": {
            "description": "Where each post was seen: one row per source and link it appeared under.",
            "sort_desc": "last_seen_at",
            "facets": ["source"],
        },
        "item_keys": {"hidden": True},
        "_sqlite_migrations": {"hidden": True},
        "daily_sentiment": {
            "description": "Mentions per brand per day, by sentiment (click a count for its mentions).",
            "sort_desc": "day",
            "facets": ["brand"],
        },
        "weekly_share_of_voice": {
            "description": "Each brand's share of all mentions, per week starting Monday.",
            "sort_desc": "week",
            "facets": ["brand"],
        },
        "negative_threads": {
            "description": (
                "Conversations with a negative mood or three or more negative posts, with the "
                "worst post of each."
            ),
            "sort_desc": "last_negative_at",
            "facets": ["brands", "source"],
        },
        "source_health": {
            "description": "Is each source working? Failing ones show their last error.",
            "facets": ["health", "kind"],
        },
        "alert_outbox": {
            "description": "Every alert and, per channel, whether it was sent, is pending or failed.",
            "sort_desc": "created_at",
            "facets": ["status", "rule", "channel", "brand"],
        },
        "alerts": {
            "description": "Every alert that fired (a thread turning negative, a spike, …).",
            "label_column": "title",
            "sort_desc": "created_at",
            "facets": ["rule", "brand", "level"],
        },
        "outbox": {
            "description": "Delivery of each alert to each channel, retried with backoff.",
            "sort_desc": "next_attempt_at",
            "facets": ["status", "channel"],
        },
    }
    return {
        "title": "listener: brand mentions",
        "description_html": (
            f'<p><a href="{DASHBOARD_PATH}"><strong>Open the dashboard</strong></a>: this week\'s '
            "conversations, sentiment over time and share of voice. Or search "
            f'<a href="/{name}/mentions">every mention</a>, and find the canned questions '
            f'(negative mentions, share of voice, source health, …) on the <a href="/{name}">'
            "database page</a>.</p>"
        ),
        "databases": {
            name: {
                "description": (
                    "Mentions of your brands found by listener, with their sentiment and "
                    "conversations. The queries below answer the usual questions without SQL."
                ),
                "tables": {t: m for t, m in table_meta.items() if t in tables},
                "queries": available_queries(tables),
            }
        },
        "plugins": {
            PLUGIN_NAME: {
                "database": name,
                "reading_order": {t: list(c) for t, c in READING_ORDER.items() if t in tables},
            }
        },
    }


def thread_page_url(serve_url: str, key: str) -> str:
    """A conversation's page in `serve` reachable at `serve_url` (what alerts link to):
    `{serve_url}/-/thread?key=<urlencoded thread key>`."""
    return f"{serve_url.rstrip('/')}{THREAD_PATH}?{urlencode({'key': key})}"


def register_plugin() -> None:
    """Make listener's plugin part of Datasette (once per process, whoever asks first)."""
    from datasette.plugins import pm

    from . import datasette_plugin

    if pm.is_registered(datasette_plugin) or pm.get_plugin(PLUGIN_NAME):
        return
    pm.register(datasette_plugin, name=PLUGIN_NAME)


def prepare_database(db_path: str | Path) -> None:
    """Bring the database to the current schema and views (idempotent; writes only on change)."""
    from .store import connect

    db = connect(db_path)
    try:
        ensure_views(db)
    finally:
        db.conn.close()


def make_datasette(
    db_path: str | Path,
    *,
    settings: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Any:
    """A `datasette.app.Datasette` on the mention database with listener's metadata and plugin.

    The database is migrated and its views ensured first (cheap when already current).
    """
    from datasette.app import Datasette

    db_path = Path(db_path).resolve()
    prepare_database(db_path)
    register_plugin()
    return Datasette(
        [str(db_path)],
        metadata=metadata if metadata is not None else datasette_metadata(db_path),
        settings={**SETTINGS, **(settings or {})},
    )


def dashboard_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}{DASHBOARD_PATH}"


def login_url(ds: Any, base: str) -> str:
    """Datasette's one-time link that signs its opener in as `root` (as `datasette --root`)."""
    return f"{base}{ds.urls.path('/-/auth-token')}?token={ds._root_token}"


def bind_port(host: str, port: int) -> socket.socket:
    """Bind `host:port` now, so that a port already in use is a clear error before anything is
    printed (or, for `demo`, polled). The server then serves on this very socket."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise click.ClickException(f"cannot serve on --host {host}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)  # connections wait from now on, even before the server accepts them
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            problem = f"port {port} on {host} is already in use (an earlier `listener serve`?)"
        elif exc.errno == errno.EACCES:
            problem = f"not allowed to listen on port {port} on {host}"
        else:
            problem = f"cannot listen on {host}:{port}: {exc.strerror}"
        free = _free_port_after(family, address, port)
        example = f", e.g. --port {free}" if free else ""
        raise click.ClickException(f"{problem}: choose another port with --port{example}") from None
    sock.set_inheritable(True)
    return sock


def _free_port_after(family: int, address: tuple[Any, ...], port: int) -> int | None:
    """The first port after `port` that can be bound at `address` now (a suggestion)."""
    for candidate in range(port + 1, min(port + 20, 65536)):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address[0], candidate, *address[2:]))
            except OSError:
                continue
            return candidate
    return None


@contextlib.contextmanager
def sigterm_exits_0() -> Iterator[None]:
    """SIGTERM (systemd, `docker stop`, kill) ends a long-running verb as Ctrl+C does: `finally`
    blocks run (temporary folders go) and the process exits 0 instead of 143."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve_forever(app: Any, sock: socket.socket) -> None:
    """Uvicorn on `sock` until SIGTERM or Ctrl+C: both stop it gracefully and return."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # Uvicorn's own re-raises the signal once it has stopped, which kills the process
            # (exit 143 on SIGTERM); a stop asked for is a normal end here.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    Server(uvicorn.Config(app, log_level="warning", lifespan="on")).run(sockets=[sock])


def run_server(
    db_path: str | Path,
    *,
    host: str,
    port: int,
    open_browser: bool,
    sock: socket.socket | None = None,
    root: bool = False,
) -> None:
    """Serve Datasette until SIGTERM or Ctrl+C (blocking); `sock`: already bound by `bind_port`.

    Read-only for everyone. With `root`, a one-time login link is printed: whoever opens it is
    signed in as Datasette's `root` actor and may change conversations' triage state."""
    sock = sock or bind_port(host, port)
    try:
        ds = make_datasette(db_path)
        url = dashboard_url(host, sock.getsockname()[1])
        base = url.removesuffix(DASHBOARD_PATH)
        click.echo(f"Serving {db_path}")
        click.echo(f"  dashboard: {url}")
        click.echo(f"  all data:  {base}/")
        if root:
            click.echo(f"  sign in (once, as root, to triage conversations): {login_url(ds, base)}")
        else:
            ds._root_token = None  # no login link: nobody can sign in, the pages only read
        click.echo("Press Ctrl+C to stop.")
        if open_browser:
            webbrowser.open(url)
        _serve_forever(ds.app(), sock)
    finally:
        sock.close()


@click.command(
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
    sock = bind_port(host, port)
    with sigterm_exits_0():
        run_server(
            config.database,
            host=host,
            port=port,
            open_browser=open_browser,
            sock=sock,
            root=root,
        )
