"""The tenant's rules: where it may call, which caller IDs it may show, how fast. Pure.

Destination rules, first match wins:
    1. `deny`  entries (E.164 prefix "+9721900" or "re:<regex on E.164>")
    2. `allow` entries
    3. internal numbers (extensions through the PBX): allowed, also in extension-only mode
    4. `extension_only`: anything else is refused
    5. defaults: international, premium-rate and special-service numbers refused unless
       allowed; the rest allowed
Limits use injected clocks, so tests step time instead of sleeping.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import phonenumbers
from phonenumbers import PhoneNumberType

from click2call.errors import InvalidInput, RateLimited, Rejected
from click2call.numbers import PhoneNumber
from click2call.settings import TenantCallbacks, TenantLimits, TenantPolicy
from click2call.webhooks.urls import host_allowed, is_public, listed, literal_address

_SPECIAL = frozenset(
    {
        PhoneNumberType.SHARED_COST,
        PhoneNumberType.UAN,
        PhoneNumberType.PERSONAL_NUMBER,
        PhoneNumberType.PAGER,
        PhoneNumberType.VOICEMAIL,
    }
)


def _matches(rule: str, e164: str) -> bool:
    if rule.startswith("re:"):
        return re.search(rule[3:], e164) is not None
    return e164.startswith(rule)


def check_destination(number: PhoneNumber, policy: TenantPolicy, region: str) -> str:
    """The rule that allows calling `number`; raises Rejected naming the rule that refuses it."""
    e164 = number.e164
    for rule in policy.deny:
        if _matches(rule, e164):
            raise Rejected(f"destination {number.digits} is denied by rule '{rule}'")
    for rule in policy.allow:
        if _matches(rule, e164):
            return f"allow rule '{rule}'"
    if number.parsed is None:
        return "internal number"
    if policy.extension_only:
        raise Rejected("this client may only call internal numbers (extension_only)")
    parsed = number.parsed
    if phonenumbers.region_code_for_number(parsed) != region and not policy.allow_international:
        raise Rejected(
            f"international destination {e164} is not allowed (default; allow_international)"
        )
    kind = phonenumbers.number_type(parsed)
    if kind == PhoneNumberType.PREMIUM_RATE and not policy.allow_premium:
        raise Rejected(f"premium-rate destination {number.digits} is not allowed (allow_premium)")
    if kind in _SPECIAL and not policy.allow_special:
        raise Rejected(
            f"special-service destination {number.digits} is not allowed (allow_special)"
        )
    # A national number phonenumbers cannot classify (new or unassigned ranges) is let
    # through: it cannot be premium-rate by a rule we know, and the PBX may still route it.
    return "default"


def check_agent_phone(number: PhoneNumber, policy: TenantPolicy, region: str) -> None:
    """A mobile agent leg goes out through the trunk too: the same rules apply to it."""
    if policy.extension_only:
        raise Rejected("this client may only call internal numbers (extension_only)")
    try:
        check_destination(number, policy, region)
    except Rejected as exc:
        raise Rejected(exc.message.replace("destination", "agent phone", 1)) from None


def check_caller_id(caller_id: str | None, policy: TenantPolicy) -> None:
    """Only the tenant's own numbers may be shown, when it lists them (anti-spoofing)."""
    if caller_id is None or not policy.allowed_caller_ids:
        return
    wanted = caller_id.lstrip("+")
    if not any(wanted == allowed.lstrip("+") for allowed in policy.allowed_caller_ids):
        raise Rejected(f"caller ID {caller_id} is not one of this client's numbers")


def check_call(
    caller_id: str | None,
    destination: PhoneNumber,
    agent_phone: PhoneNumber | None,
    policy: TenantPolicy,
    region: str,
) -> None:
    """Every rule a new call must pass; raises Rejected naming the first it breaks."""
    check_caller_id(caller_id, policy)
    check_destination(destination, policy, region)
    if agent_phone is not None:
        check_agent_phone(agent_phone, policy, region)


def check_callback(url: str, callbacks: TenantCallbacks) -> None:
    """A call's own callback URL must be signable and point at a host the tenant allows."""
    if not callbacks.secret.get_secret_value():
        raise InvalidInput(
            "callback_url", "this tenant takes no callback URLs ([tenants.callbacks] has no secret)"
        )
    if not host_allowed(url, callbacks.allowed_hosts):
        raise InvalidInput("callback_url", "host is not one of the tenant's allowed_hosts")
    address = literal_address(url)
    if address is not None and not is_public(address) and not listed(url, callbacks.allowed_hosts):
        # No requests into the server's own network on a caller's say-so (SSRF);
        # names are checked again when delivered, after they are resolved.
        raise InvalidInput(
            "callback_url", "points at a private or local address; list it in allowed_hosts"
        )


Clock = Callable[[], float]


@dataclass
class TokenBucket:
    """`rate` tokens a second, at most `capacity` saved up."""

    rate: float
    capacity: float
    clock: Clock
    _tokens: float = field(init=False)
    _at: float = field(init=False)

    def __post_init__(self) -> None:
        self._tokens = self.capacity
        self._at = self.clock()

    def take(self) -> float:
        """0 when a token was taken; otherwise the seconds until one will be there."""
        now = self.clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


@dataclass
class Limits:
    """This process's own count of every tenant's calls, asked before the database is (a
    refusal then costs no database work); the cluster's limits are in store/admission.py."""

    clock: Clock
    _buckets: dict[tuple[str, str], TokenBucket] = field(default_factory=dict)
    _active: dict[str, set[str]] = field(default_factory=dict)  # tenant → uniqueids
    _by_agent: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    _of: dict[str, tuple[str, str]] = field(default_factory=dict)  # uniqueid → tenant, agent

    def _bucket(self, scope: str, name: str, rate: float, capacity: float) -> TokenBucket:
        bucket = self._buckets.get((scope, name))
        if bucket is None:
            bucket = self._buckets[(scope, name)] = TokenBucket(rate, capacity, self.clock)
        return bucket

    def admit_call(self, tenant: str, agent: str, limits: TenantLimits) -> None:
        """Raises RateLimited naming the limit a new call of `tenant` for `agent` would break.

        The two caps give no retry time: a slot frees when a call ends, which may be a ring
        timeout or a whole conversation away."""
        up = limits.max_concurrent_calls
        if len(self._active.get(tenant, ())) >= up:
            raise RateLimited("max_concurrent_calls", f"{up} calls are already up", None)
        per_agent = limits.max_calls_per_agent
        if len(self._by_agent.get((tenant, agent), ())) >= per_agent:
            raise RateLimited(
                "max_calls_per_agent", f"{agent} already has {per_agent} calls up", None
            )
        wait = self._bucket("calls", tenant, limits.calls_per_second, limits.burst).take()
        if wait:
            rate = f"more than {limits.calls_per_second:g} calls a second"
            raise RateLimited("calls_per_second", rate, wait)

    def started(self, tenant: str, agent: str, uniqueid: str) -> None:
        self._active.setdefault(tenant, set()).add(uniqueid)
        self._by_agent.setdefault((tenant, agent), set()).add(uniqueid)
        self._of[uniqueid] = (tenant, agent)

    def ended(self, tenant: str, agent: str, uniqueid: str) -> None:
        self._active.get(tenant, set()).discard(uniqueid)
        self._by_agent.get((tenant, agent), set()).discard(uniqueid)
        self._of.pop(uniqueid, None)

    def release(self, uniqueid: str) -> None:
        """The call is over here whatever the store said: its ending may have been refused
        because another node ended it first (it took the call over while this one was cut
        off from the database), and the slot must not stay taken for ever."""
        if (owner := self._of.get(uniqueid)) is not None:
            self.ended(*owner, uniqueid)
