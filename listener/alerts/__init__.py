"""Alerting: rules that decide, an outbox that remembers, channels that deliver."""
