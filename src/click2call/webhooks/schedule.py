"""What happens after a delivery attempt: done, retry when, or give up. Pure.

Any 2xx is a delivery; 410 Gone disables the endpoint (the receiver says it is gone for
good); everything else (other statuses, redirects, timeouts, refused connections) is
retried on the configured schedule, never sooner than a `Retry-After` asks.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER = 24 * 3600.0  # a receiver cannot park a delivery for longer than a day


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GIVE_UP = "give_up"
    ENDPOINT_GONE = "endpoint_gone"


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    wait: float | None = None  # seconds until the next attempt, for RETRY


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from `now` that a Retry-After header asks for (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER)


def decide(
    status: int | None,
    attempts_made: int,
    schedule: list[float],
    retry_after: float | None,
    jitter: float,
    random: Callable[[], float],
) -> Decision:
    """`status` is None when no reply came; `attempts_made` counts this attempt."""
    if status is not None and 200 <= status < 300:
        return Decision(Outcome.DELIVERED)
    if status == 410:
        return Decision(Outcome.ENDPOINT_GONE)
    if attempts_made > len(schedule):
        return Decision(Outcome.GIVE_UP)
    base = schedule[attempts_made - 1]
    wait = base * (1 + jitter * (2 * random() - 1))
    if retry_after is not None:
        wait = max(wait, retry_after)
    return Decision(Outcome.RETRY, wait)
