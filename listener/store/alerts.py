"""Alerts: the `alerts` table (what each rule has said about a thread) and the outbox rows the
channels deliver. The rules themselves (listener/alerts/rules.py) are functions over the rows
these methods hand them."""

from __future__ import annotations

from .items import ItemsStore


class AlertsStore(ItemsStore):
    """`alerts` and `outbox`."""
