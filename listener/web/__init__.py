"""`listener serve`: Datasette on the mention database, shaped for people who do not write SQL.

One module per job; each imports only the ones above it (and store, models), never the reverse:

- `metadata`: Datasette metadata: titles, descriptions, facets, sort orders, reading order,
  and the canned queries from `views.py`.
- `links`: the URLs behind every number: table filters that count the same rows as the page.
- `dashboard`: the dashboard's data: every SQL statement the pages run, in one place.
- `charts`: the dashboard's inline SVG charts.
- `pages`: the `/-/dashboard` page (data and charts into the template).
- `thread`: a conversation's page, `/-/thread?key=…`, and its triage form.
- `plugin`: the Datasette hooks (routes, cells, templates, CSS), Datasette's entry point.
- `serve`: running Datasette: the database prepared, the port bound, signals, the process.

This module stays import-light (no Datasette): alerts and the CLI read its paths.
"""

from __future__ import annotations

from urllib.parse import urlencode

PLUGIN_NAME = "listener"  # the plugin's name in Datasette, and the key of its settings
DASHBOARD_PATH = "/-/dashboard"
# A conversation's page: `/-/thread?key=<urlencoded thread key>` (alerts link here).
THREAD_PATH = "/-/thread"


def thread_page_url(serve_url: str, key: str) -> str:
    """A conversation's page in `serve` reachable at `serve_url` (what alerts link to):
    `{serve_url}/-/thread?key=<urlencoded thread key>`."""
    return f"{serve_url.rstrip('/')}{THREAD_PATH}?{urlencode({'key': key})}"
