"""Shared fixtures: a real loopback HTTP server for every test that talks HTTP.

Import the server in a test module as `from httpd import LoopbackServer, RequestInfo` (pytest puts
this directory on sys.path because it has no __init__.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The package is not necessarily installed into the venv (no `pip install -e .` yet): make the
# checkout importable so `import listener` works from any working directory.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from httpd import LoopbackServer  # noqa: E402
from smtp_peer import smtp_server, start_smtp  # noqa: E402, F401


@pytest.fixture
def httpd() -> Iterator[LoopbackServer]:
    """A started LoopbackServer on 127.0.0.1:<free port>, stopped after the test."""
    with LoopbackServer() as server:
        yield server
