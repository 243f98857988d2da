"""What every worker process needs, made once: imported by the process that forks the workers
(`listener.workers`, "forkserver"), never by the polling process itself.

Each worker used to import listener and compile the shipped lexicon on its own, about 0.8 s of
CPU apiece. Forked from a process that has done it, a worker starts with all of it in place and
only builds its `Scorer` from the already compiled parts.
"""

from __future__ import annotations

from . import analyse, cli, parse  # noqa: F401  (imported for the workers forked after)
from .sentiment import Scorer

# Compiles and caches what every Scorer shares: VADER's lexicon and the shipped phrases' regex.
Scorer()
