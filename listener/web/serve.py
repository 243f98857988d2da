"""Running Datasette on the mention database: the database prepared, the port bound before anything
is printed, uvicorn on that socket, SIGTERM and Ctrl+C ending it with exit 0.

The database is opened as a normal, mutable file, never `immutable`: the daemon keeps writing,
WAL lets Datasette read meanwhile, and new rows show on refresh. The `serve` and `demo` commands
(cli.py) call `bind_port` and `run_server`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
import threading
import webbrowser
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..store.views import ensure_views
from . import DASHBOARD_PATH, PLUGIN_NAME
from .metadata import SETTINGS, datasette_metadata

log = logging.getLogger(__name__)


class ServeError(Exception):
    """Datasette cannot be served as asked (a busy port, a bad host): the message says what to do."""


def register_plugin() -> None:
    """Make listener's plugin part of Datasette (once per process, whoever asks first)."""
    from datasette.plugins import pm

    from . import plugin

    if pm.is_registered(plugin) or pm.get_plugin(PLUGIN_NAME):
        return
    pm.register(plugin, name=PLUGIN_NAME)


def prepare_database(db_path: str | Path) -> None:
    """Bring the database to the current schema and views (idempotent; writes only on change)."""
    from ..store import open_connection

    conn = open_connection(db_path)
    try:
        ensure_views(conn)
    finally:
        conn.close()


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
        raise ServeError(f"cannot serve on --host {host}: {exc.strerror}") from None
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
        raise ServeError(f"{problem}: choose another port with --port{example}") from None
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
    echo: Callable[[str], None] = log.info,
) -> None:
    """Serve Datasette until SIGTERM or Ctrl+C (blocking); `sock`: already bound by `bind_port`.

    Read-only for everyone. With `root`, a one-time login link is printed: whoever opens it is
    signed in as Datasette's `root` actor and may change conversations' triage state."""
    sock = sock or bind_port(host, port)
    try:
        ds = make_datasette(db_path)
        url = dashboard_url(host, sock.getsockname()[1])
        base = url.removesuffix(DASHBOARD_PATH)
        echo(f"Serving {db_path}")
        echo(f"  dashboard: {url}")
        echo(f"  all data:  {base}/")
        if root:
            echo(f"  sign in (once, as root, to triage conversations): {login_url(ds, base)}")
        else:
            ds._root_token = None  # no login link: nobody can sign in, the pages only read
        echo("Press Ctrl+C to stop.")
        if open_browser:
            webbrowser.open(url)
        _serve_forever(ds.app(), sock)
    finally:
        sock.close()
