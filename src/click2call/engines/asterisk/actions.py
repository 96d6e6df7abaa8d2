"""The AMI actions click2call sends, built from validated orders. Pure."""

from __future__ import annotations

from click2call.calls import CallOrder, Extension
from click2call.engines.asterisk.codec import Message, check_safe
from click2call.settings import TenantAsterisk


def login(username: str, secret: str, action_id: str) -> Message:
    """Log in, asking for the `call` class of events only: every event the tracker reads
    is of that class, and it spares both sides the rest (the dialplan's Newexten and
    VarSet are two thirds of a call's events; README: Asterisk, for a manager.conf
    `eventfilter` that narrows it further)."""
    return Message.action(
        "Login",
        [("Username", username), ("Secret", secret), ("Events", "call"), ("ActionID", action_id)],
    )


CHANNEL_ID_PREFIX = "c2c-"


def channel_id(uniqueid: str) -> str:
    """The id we preset on the call's first channel (`ChannelId`): every channel of the
    call then carries it as `Linkedid`, and Asterisk's CDR as `uniqueid`/`linkedid`.

    Asterisk names its own channels `<epoch>.<counter>`, or `<systemname>-<epoch>.<counter>`
    when asterisk.conf sets a systemname, and refuses a preset id that a live channel
    already has (`do_ids_conflict`). Ours keeps the call's uniqueid readable but has no
    dot, so it can never have either form: `1795586021.70` -> `c2c-1795586021-70`.
    """
    return CHANNEL_ID_PREFIX + uniqueid.replace(".", "-")


def other_channel_id(first: str) -> str:
    """The second half of a Local channel pair (`OtherChannelId`): what Asterisk would
    derive itself (`<first>;2`), said explicitly so both ids of the call are ours."""
    return f"{first};2"


def agent_channel(order: CallOrder, settings: TenantAsterisk) -> str:
    """`SIP/200` / `PJSIP/201` for extensions; the tenant's template for mobiles."""
    if isinstance(order.agent, Extension):
        return f"{order.agent.tech.value.upper()}/{order.agent.number}"
    return settings.mobile_channel.format(phone=order.agent.number)


def originate(order: CallOrder, settings: TenantAsterisk, action_id: str) -> Message:
    """Ring the agent; when they answer, Asterisk runs Context/Exten for the destination.

    The agent's phone shows the destination as CallerID. The destination's caller ID
    travels as CLICK2CALL_OUTBOUNDCID for the dialplan to apply (README: Asterisk).
    `ChannelId` presets the agent channel's id (`channel_id()`), so Asterisk's CDR and
    our record share it and every channel of the call carries it as Linkedid.
    """
    shown = order.agent_caller_id
    variables = [f"{k}={v}" for k, v in order.variables.items()]
    variables.append(f"CLICK2CALL_OUTBOUNDCID={order.destination_caller_id}")
    for variable in variables:
        # Commas separate variables; our field grammar never lets one through.
        if "," in variable:
            raise ValueError(f"variable {variable!r} would split into two")
    channel = agent_channel(order, settings)
    first = channel_id(order.uniqueid)
    ids = [("ChannelId", first)]
    if channel.lower().startswith("local/"):
        ids.append(("OtherChannelId", other_channel_id(first)))
    message = Message.action(
        "Originate",
        [
            ("ActionID", action_id),
            ("Channel", channel),
            ("Context", settings.context),
            ("Exten", order.destination.number),
            ("Priority", "1"),
            ("CallerID", f'"{shown}" <{shown}>'),
            ("Timeout", str(round(order.agent_ring_timeout * 1000))),
            ("Async", "true"),
            *ids,
            ("Variable", ",".join(variables)),
        ],
    )
    for key, value in message.headers:
        check_safe(key, value)  # refuse here, before the action is queued
    return message


def hangup(channel: str, action_id: str) -> Message:
    return Message.action("Hangup", [("ActionID", action_id), ("Channel", channel)])


def core_show_channels(action_id: str) -> Message:
    """List every channel: a list reply, one `CoreShowChannel` event each (with Linkedid,
    BridgeId, Duration). Needs the `system` or `reporting` write class."""
    return Message.action("CoreShowChannels", [("ActionID", action_id)])


def status(action_id: str) -> Message:
    """List every channel: a list reply, one `Status` event each (with Linkedid, BridgeID,
    Seconds). Needs only the `call` write class an account that originates already has,
    so it answers where CoreShowChannels is refused."""
    return Message.action("Status", [("ActionID", action_id)])
