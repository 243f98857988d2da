"""JSON lines on stdin, as `listener score` and `listener match` read them: one object a line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any


def read_objects(
    lines: Iterable[str], example: str
) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(line number, the object, None) for each non-blank line, or (line number, None, what is
    wrong) for a line that is not a JSON object; `example` shows the object expected."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, None, f"not JSON: {exc.msg} at column {exc.colno}"
            continue
        if not isinstance(record, dict):
            yield number, None, f"expected an object like {example}"
            continue
        yield number, record, None
