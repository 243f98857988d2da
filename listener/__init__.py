"""listener: a social-listening monitor (feeds and forums in, scored mentions and alerts out)."""

from __future__ import annotations

__version__ = "0.1.0"
