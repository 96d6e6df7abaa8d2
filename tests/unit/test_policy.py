from __future__ import annotations

import pytest

from click2call.errors import RateLimited, Rejected
from click2call.numbers import parse_phone
from click2call.policy import (
    Limits,
    TokenBucket,
    check_agent_phone,
    check_caller_id,
    check_destination,
)
from click2call.settings import TenantLimits, TenantPolicy

DEFAULT = TenantPolicy()


def decide(number: str, policy: TenantPolicy = DEFAULT) -> str:
    return check_destination(parse_phone("d", number, "IL", allow_internal=True), policy, "IL")


@pytest.mark.parametrize(
    "number",
    ["0502760206", "036411111", "0722222222", "1800123456", "201", "0541234567"],
)
def test_israeli_defaults_allow(number: str) -> None:
    decide(number)


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("+14155550123", "international"),
        ("00442079460000", "international"),
        ("1900123456", "premium-rate"),
        ("1700123456", "special-service"),
        ("1599123456", "special-service"),
    ],
)
def test_israeli_defaults_refuse(number: str, why: str) -> None:
    with pytest.raises(Rejected, match=why):
        decide(number)


def test_rules_first_deny_then_allow_then_defaults() -> None:
    policy = TenantPolicy(allow=["+1415", "re:^\\+9721900"], deny=["+14155550", "+97250"])
    assert decide("+14155559999", policy) == "allow rule '+1415'"
    assert decide("1900123456", policy) == "allow rule 're:^\\+9721900'"
    with pytest.raises(Rejected, match="denied by rule '\\+14155550'"):
        decide("+14155550123", policy)
    with pytest.raises(Rejected, match="denied by rule '\\+97250'"):
        decide("0502760206", policy)
    assert decide("0541234567", TenantPolicy(allow_international=True)) == "default"
    assert decide("+14155550123", TenantPolicy(allow_international=True)) == "default"
    assert decide("1900123456", TenantPolicy(allow_premium=True)) == "default"
    assert decide("1700123456", TenantPolicy(allow_special=True)) == "default"


def test_extension_only() -> None:
    policy = TenantPolicy(extension_only=True)
    assert decide("201", policy) == "internal number"
    with pytest.raises(Rejected, match="only call internal"):
        decide("0502760206", policy)
    with pytest.raises(Rejected, match="only call internal"):
        check_agent_phone(parse_phone("p", "0502760206", "IL", allow_internal=False), policy, "IL")


def test_a_mobile_agent_follows_the_same_rules() -> None:
    with pytest.raises(Rejected, match="premium-rate agent phone"):
        check_agent_phone(parse_phone("p", "1900123456", "IL", allow_internal=False), DEFAULT, "IL")


def test_caller_ids() -> None:
    policy = TenantPolicy(allowed_caller_ids=["036411111", "+97236422222"])
    check_caller_id("036411111", policy)
    check_caller_id("97236422222", policy)
    check_caller_id(None, policy)  # the configured defaults are trusted
    check_caller_id("039999999", DEFAULT)  # no list: anything goes
    with pytest.raises(Rejected, match="caller ID 039999999"):
        check_caller_id("039999999", policy)


def test_rule_syntax_is_checked_at_load() -> None:
    with pytest.raises(ValueError, match="neither"):
        TenantPolicy(deny=["9725"])
    with pytest.raises(ValueError, match="not a valid regex"):
        TenantPolicy(allow=["re:("])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2, capacity=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0, 0, 0]
    assert bucket.take() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take() == 0
    clock.now += 100
    assert [bucket.take() for _ in range(4)][:3] == [0, 0, 0]  # never more than capacity


def test_call_limits() -> None:
    clock = Clock()
    limits = Limits(clock)
    config = TenantLimits(
        calls_per_second=100, burst=100, max_concurrent_calls=3, max_calls_per_agent=2
    )
    for n in range(2):
        limits.admit_call("t", "200", config)
        limits.started("t", "200", f"1.{n}")
    with pytest.raises(RateLimited, match="200 already has 2 calls up") as limited:
        limits.admit_call("t", "200", config)
    assert (limited.value.limit, limited.value.retry_after) == ("max_calls_per_agent", None)
    assert "(limit max_calls_per_agent); a slot frees only when" in limited.value.message
    limits.admit_call("t", "201", config)
    limits.started("t", "201", "1.9")
    with pytest.raises(RateLimited, match="3 calls are already up") as limited:
        limits.admit_call("t", "202", config)
    assert (limited.value.limit, limited.value.retry_after) == ("max_concurrent_calls", None)
    limits.admit_call("other", "200", config)  # tenants are separate
    limits.ended("t", "200", "1.0")
    limits.admit_call("t", "200", config)
