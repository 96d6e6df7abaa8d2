"""Webhooks: signed, ordered, retried delivery of call events from the outbox."""
