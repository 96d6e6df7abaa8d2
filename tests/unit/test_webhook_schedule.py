from __future__ import annotations

from datetime import UTC, datetime

import pytest

from click2call.webhooks.schedule import Outcome, decide, parse_retry_after

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
SCHEDULE = [5.0, 300.0, 1800.0]


def middle() -> float:
    return 0.5  # no jitter: 1 + j * (2 * 0.5 - 1)


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_any_2xx_is_delivered(status: int) -> None:
    assert decide(status, 1, SCHEDULE, None, 0.1, middle).outcome is Outcome.DELIVERED


@pytest.mark.parametrize("status", [None, 301, 400, 404, 429, 500, 503])
def test_everything_else_is_retried_on_the_schedule(status: int | None) -> None:
    decisions = [decide(status, n, SCHEDULE, None, 0.0, middle) for n in (1, 2, 3, 4)]
    assert [d.wait for d in decisions[:3]] == SCHEDULE
    assert decisions[3].outcome is Outcome.GIVE_UP


def test_gone_disables_the_endpoint() -> None:
    assert decide(410, 1, SCHEDULE, None, 0.1, middle).outcome is Outcome.ENDPOINT_GONE


def test_jitter_stays_within_its_fraction() -> None:
    low = decide(500, 2, SCHEDULE, None, 0.1, lambda: 0.0).wait
    high = decide(500, 2, SCHEDULE, None, 0.1, lambda: 1.0).wait
    assert (low, high) == pytest.approx((270.0, 330.0))


def test_retry_after_is_never_undercut_but_cannot_park_for_more_than_a_day() -> None:
    assert decide(503, 1, SCHEDULE, 120.0, 0.0, middle).wait == 120.0
    assert decide(503, 2, SCHEDULE, 1.0, 0.0, middle).wait == 300.0
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after("999999999", NOW) == 86400.0
    assert parse_retry_after("Wed, 25 Nov 2026 08:01:00 GMT", NOW) == 60.0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None
