"""A call's SIP state as JSON, and back: what lets a restarted server go on. Pure.

The store keeps one snapshot per call (table `sip_dialogs`), rewritten when a dialog
is set up, moves (target refresh, CSeq) or the controller changes phase — never for
a retransmission. A snapshot holds the controller's phase and timeouts, and per leg
its role, target, transport, INVITE (for CANCEL), SDP and, once answered, its dialog.
Passwords are never stored: the tenant's settings give them back on restore.

`restore_call` and `restore_leg` rebuild the controller and the legs without any I/O;
`hangup_requests` builds the CANCEL/BYE that end a stored call, for a node that has
no live leg to ask (a node taking over a lost node's calls).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

from click2call.engines.sip import third_party as tp
from click2call.engines.sip.dialog import Dialog
from click2call.engines.sip.leg import Local, Phase, UacLeg
from click2call.engines.sip.message import Request, SipUri
from click2call.engines.sip.sdp import Origin
from click2call.engines.sip.targets import LegTarget
from click2call.engines.sip.transaction import cancel_for
from click2call.settings import HostPort

_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})
VERSION = 1


@dataclass(frozen=True, slots=True)
class LegState:
    role: str  # "agent" or "destination"
    transport: str  # how we sent it: udp, tcp or tls
    host: str  # the target the INVITE went to
    port: int
    user: str
    caller_id: str
    target_transport: str
    invite_uri: str
    invite_headers: list[tuple[str, str]]  # without credentials
    local_sdp: str | None
    correlation_id: str
    dialog: Dialog | None  # None: not answered yet (CANCEL ends it)


@dataclass(frozen=True, slots=True)
class CallSnapshot:
    phase: str  # the controller's (third_party.Phase)
    agent_ring_timeout: float
    destination_ring_timeout: float
    max_call_seconds: float
    agent_origin: Origin
    destination_origin: Origin
    legs: list[LegState]


# What a dialog is stored as: its fields, and its tags, still written for a process of an
# earlier version to read (they are read from `local` and `remote` now).
_DIALOG_FIELDS = (
    "call_id",
    "local",
    "remote",
    "local_tag",
    "remote_tag",
    "remote_target",
    "route_set",
    "local_cseq",
    "remote_cseq",
)
_ORIGIN_FIELDS = tuple(f.name for f in fields(Origin))


def fingerprint(controller: tp.ThirdPartyCall, legs: Sequence[UacLeg]) -> tuple[object, ...]:
    """Cheap to compute, and different whenever `to_json` would be (the SIP engine checks
    it on every message and encodes a snapshot only when it moved). Each call keeps its
    last one: flat, of objects that exist anyway (no id() or inner tuples to allocate)."""
    key: list[object] = [controller.phase]
    for leg in legs:
        dialog = leg.dialog
        key += [leg.phase is Phase.ENDED, leg.invite, leg.local_sdp]
        if dialog is None:
            key += [None, None, None]
        else:
            key += [dialog.local_cseq, dialog.remote_cseq, dialog.remote_target]
    return tuple(key)


def to_json(controller: tp.ThirdPartyCall, legs: Sequence[UacLeg]) -> str:
    """The call's state as `from_json` reads it back: a `CallSnapshot`, of every leg that
    sent an INVITE and has not ended."""
    # Straight from the live objects to plain values, without a CallSnapshot in between
    # (nor asdict(), which deep-copies everything): this runs on the event loop at every
    # step of every call, and json.dumps copies nothing it is given.
    document = {
        "version": VERSION,
        "phase": controller.phase.value,
        "agent_ring_timeout": controller.agent_ring_timeout,
        "destination_ring_timeout": controller.destination_ring_timeout,
        "max_call_seconds": controller.max_call_seconds,
        "agent_origin": _plain(controller.agent_origin, _ORIGIN_FIELDS),
        "destination_origin": _plain(controller.destination_origin, _ORIGIN_FIELDS),
        "legs": [plain for leg in legs if (plain := _leg(leg)) is not None],
    }
    return json.dumps(document, separators=(",", ":"))


def _leg(leg: UacLeg) -> dict[str, object] | None:
    """A `LegState`'s fields as plain values; None once it sent nothing or has ended."""
    invite = leg.invite
    if invite is None or leg.phase is Phase.ENDED:
        return None
    target = leg.target
    return {
        "role": leg.role.value,
        "transport": leg.local.transport.lower(),
        "host": target.address.host,
        "port": target.address.port,
        "user": target.user,
        "caller_id": target.caller_id,
        "target_transport": target.transport,
        "invite_uri": invite.uri,
        "invite_headers": [h for h in invite.headers if h[0].lower() not in _SECRET_HEADERS],
        "local_sdp": leg.local_sdp,
        "correlation_id": leg.correlation_id,
        "dialog": None if leg.dialog is None else _plain(leg.dialog, _DIALOG_FIELDS),
    }


def _plain(value: object, names: tuple[str, ...]) -> dict[str, object]:
    return {name: getattr(value, name) for name in names}


def from_json(text: str) -> CallSnapshot:
    """The snapshot `to_json` wrote; ValueError for anything else."""
    try:
        data = json.loads(text)
        if data.pop("version") != VERSION:
            raise ValueError("unknown snapshot version")
        legs = [_leg_from(leg) for leg in data.pop("legs")]
        return CallSnapshot(
            phase=tp.Phase(data["phase"]).value,
            agent_ring_timeout=float(data["agent_ring_timeout"]),
            destination_ring_timeout=float(data["destination_ring_timeout"]),
            max_call_seconds=float(data["max_call_seconds"]),
            agent_origin=Origin(**data["agent_origin"]),
            destination_origin=Origin(**data["destination_origin"]),
            legs=legs,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"unreadable SIP snapshot: {exc!r}") from exc


def _leg_from(data: dict[str, object]) -> LegState:
    dialog = data.pop("dialog")
    headers = data.pop("invite_headers")
    assert isinstance(headers, list)
    return LegState(
        **data,  # type: ignore[arg-type]
        invite_headers=[(str(k), str(v)) for k, v in headers],
        dialog=None if dialog is None else _dialog_from(dialog),
    )


def _dialog_from(data: object) -> Dialog:
    """A dialog as `to_json` wrote it (its route set a list); TypeError if not one."""
    if not isinstance(data, dict) or not isinstance(routes := data.pop("route_set"), list):
        raise TypeError(f"not a dialog: {data!r}")
    data.pop("local_tag", None)  # the tags are in `local` and `remote`
    data.pop("remote_tag", None)
    return Dialog(**data, route_set=tuple(str(route) for route in routes))


def restore_call(snap: CallSnapshot) -> tp.ThirdPartyCall:
    """The controller as it was; no ringback (its socket died with the old process)."""
    return tp.ThirdPartyCall(
        agent_ring_timeout=snap.agent_ring_timeout,
        destination_ring_timeout=snap.destination_ring_timeout,
        max_call_seconds=snap.max_call_seconds,
        agent_origin=replace(snap.agent_origin),
        destination_origin=replace(snap.destination_origin),
        phase=tp.Phase(snap.phase),
    )


def _copy(dialog: Dialog) -> Dialog:
    """A dialog of its own (requests move its CSeq); its route set, a tuple, is shared."""
    return replace(dialog)


def _invite(state: LegState) -> Request:
    """The leg's INVITE as it was sent (no body, no credentials): enough for CANCEL."""
    return Request(method="INVITE", uri=state.invite_uri, headers=list(state.invite_headers))


def restore_leg(
    state: LegState,
    local: Local,
    tokens: Callable[[], str],
    credentials: tuple[str | None, str | None] = (None, None),
) -> UacLeg:
    """The leg as it was: CONFIRMED with its dialog, else EARLY (so hanging up CANCELs it,
    since the old process may have seen a provisional response we know nothing of)."""
    username, password = credentials
    target = LegTarget(
        address=HostPort(host=state.host, port=state.port),
        user=state.user,
        caller_id=state.caller_id,
        username=username,
        password=password,
        transport=state.target_transport,
    )
    invite = _invite(state)
    dialog = None if state.dialog is None else _copy(state.dialog)
    leg = UacLeg(
        tp.Leg(state.role),
        target,
        local,
        tokens,
        state.correlation_id,
        phase=Phase.EARLY if dialog is None else Phase.CONFIRMED,
        dialog=dialog,
        invite=invite,
        local_sdp=state.local_sdp,
        call_id=invite.call_id,
    )
    if dialog is not None:
        leg.restored_ack()
    return leg


def hangup_requests(
    snap: CallSnapshot, local_for: Callable[[str], Local], tokens: Callable[[], str]
) -> list[tuple[Request, SipUri]]:
    """The CANCEL or BYE ending each leg of a stored call, and where each goes.

    For a node with no live legs for the call (its owner died): send each request in
    a client transaction of its own. `local_for(transport)` is how that node appears.
    """
    out: list[tuple[Request, SipUri]] = []
    for state in snap.legs:
        local = local_for(state.transport)
        if state.dialog is None:
            invite = _invite(state)
            out.append((cancel_for(invite), SipUri.parse(invite.uri)))
            continue
        dialog = _copy(state.dialog)
        bye = dialog.request("BYE", local.via(f"z9hG4bK{tokens()}"))
        out.append((bye, dialog.next_hop()))
    return out
