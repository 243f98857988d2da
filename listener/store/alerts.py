"""Alerts: the `alerts` table (what each rule has said about a thread) and the outbox rows the
channels deliver. The rules themselves (listener/alerts/rules.py) are functions over the rows
these methods hand them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .core import iso
from .items import ItemsStore


class AlertsStore(ItemsStore):
    """`alerts` and `outbox`."""

    # --- outbox: one row per (alert, channel) ------------------------------------------------

    def pending_deliveries(
        self, channel: str, due_by: datetime | None
    ) -> list[tuple[int, int, str]]:
        """(alert id, attempts so far, payload) of the channel's pending rows, oldest alert
        first: those due by `due_by`, or all of them when it is None (a forced flush)."""
        sql = (
            "SELECT o.alert_id, o.attempts, a.payload FROM outbox o "
            "JOIN alerts a ON a.id = o.alert_id WHERE o.channel = ? AND o.status = 'pending'"
        )
        args: list[Any] = [channel]
        if due_by is not None:
            sql += " AND o.next_attempt_at <= ?"
            args.append(iso(due_by))
        return self.conn.execute(sql + " ORDER BY a.id", args).fetchall()

    def recover_sending(self, now: datetime, why: str, *, everything: bool = False) -> int:
        """Rows left `sending` go back to `pending`, due `now`, with `why` as their last error:
        those whose lease ran out, or all of them with `everything`. Returns how many."""
        sql = "UPDATE outbox SET status = 'pending', next_attempt_at = ?, last_error = ? "
        sql += "WHERE status = 'sending'"
        args: list[Any] = [iso(now), why]
        if not everything:
            sql += " AND next_attempt_at <= ?"
            args.append(iso(now))
        with self.transaction():
            return int(self.conn.execute(sql, args).rowcount)

    def claim_deliveries(
        self, alert_ids: Sequence[int], channel: str, lease_until: datetime
    ) -> tuple[list[int], list[int]]:
        """Mark the pending rows `sending` (one more attempt, leased until `lease_until`) and
        commit. Returns the ids this process got, with their attempts before this one."""
        got: list[int] = []
        attempts: list[int] = []
        lease = iso(lease_until)
        with self.transaction():
            for alert_id in alert_ids:
                claimed = self.conn.execute(
                    "UPDATE outbox SET status = 'sending', attempts = attempts + 1, "
                    "next_attempt_at = ? WHERE alert_id = ? AND channel = ? AND status = 'pending'",
                    (lease, alert_id, channel),
                ).rowcount
                if claimed:
                    (tried,) = self.conn.execute(
                        "SELECT attempts FROM outbox WHERE alert_id = ? AND channel = ?",
                        (alert_id, channel),
                    ).fetchone()
                    got.append(alert_id)
                    attempts.append(int(tried) - 1)
        return got, attempts

    def mark_sent(self, alert_id: int, channel: str, at: datetime, note: str | None) -> None:
        self.conn.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ?, last_error = ? "
            "WHERE alert_id = ? AND channel = ?",
            (iso(at), note, alert_id, channel),
        )

    def mark_failed(self, alert_id: int, channel: str, error: str | None) -> None:
        self.conn.execute(
            "UPDATE outbox SET status = 'failed', last_error = ? "
            "WHERE alert_id = ? AND channel = ? AND status = 'sending'",
            (error, alert_id, channel),
        )

    def mark_retry(
        self, alert_id: int, channel: str, error: str | None, next_attempt: datetime
    ) -> None:
        self.conn.execute(
            "UPDATE outbox SET status = 'pending', last_error = ?, next_attempt_at = ? "
            "WHERE alert_id = ? AND channel = ? AND status = 'sending'",
            (error, iso(next_attempt), alert_id, channel),
        )

    def last_sent_at(self, channel: str) -> str | None:
        (last,) = self.conn.execute(
            "SELECT max(sent_at) FROM outbox WHERE channel = ? AND status = 'sent'", (channel,)
        ).fetchone()
        return str(last) if last is not None else None

    def first_pending_at(self, channel: str) -> str | None:
        """When the oldest alert still pending on the channel was raised."""
        (first,) = self.conn.execute(
            "SELECT min(a.created_at) FROM outbox o JOIN alerts a ON a.id = o.alert_id "
            "WHERE o.channel = ? AND o.status = 'pending'",
            (channel,),
        ).fetchone()
        return str(first) if first is not None else None

    def outbox_counts(self) -> dict[str, int]:
        """Outbox rows by status."""
        return dict(self.conn.execute("SELECT status, count(*) FROM outbox GROUP BY status"))

    def undelivered_errors(self) -> list[tuple[str, str, int]]:
        """(channel, last error, rows) of what is not delivered and why."""
        return self.conn.execute(
            "SELECT channel, last_error, count(*) FROM outbox WHERE status != 'sent' "
            "AND last_error IS NOT NULL GROUP BY channel, last_error"
        ).fetchall()
