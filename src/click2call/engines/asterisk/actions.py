"""The AMI actions click2call sends, built from validated orders. Pure."""

from __future__ import annotations

from click2call.calls import CallOrder, Extension
from click2call.engines.asterisk.codec import Message, check_safe
from click2call.settings import TenantAsterisk


def login(username: str, secret: str, action_id: str) -> Message:
    return Message.action(
        "Login",
        [("Username", username), ("Secret", secret), ("Events", "on"), ("ActionID", action_id)],
    )


def agent_channel(order: CallOrder, settings: TenantAsterisk) -> str:
    """`SIP/200` / `PJSIP/201` for extensions; the tenant's template for mobiles."""
    if isinstance(order.agent, Extension):
        return f"{order.agent.tech.value.upper()}/{order.agent.number}"
    return settings.mobile_channel.format(phone=order.agent.number)


def originate(order: CallOrder, settings: TenantAsterisk, action_id: str) -> Message:
    """Ring the agent; when they answer, Asterisk runs Context/Exten for the destination.

    The agent's phone shows the destination as CallerID. The destination's caller ID
    travels as CLICK2CALL_OUTBOUNDCID for the dialplan to apply (README: Asterisk).
    `ChannelId` presets the agent channel's uniqueid to ours, so Asterisk's CDR and our
    record share the id and every channel of the call carries it as Linkedid.
    """
    shown = order.agent_caller_id
    variables = [f"{k}={v}" for k, v in order.variables.items()]
    variables.append(f"CLICK2CALL_OUTBOUNDCID={order.destination_caller_id}")
    for variable in variables:
        # Commas separate variables; our field grammar never lets one through.
        if "," in variable:
            raise ValueError(f"variable {variable!r} would split into two")
    message = Message.action(
        "Originate",
        [
            ("ActionID", action_id),
            ("Channel", agent_channel(order, settings)),
            ("Context", settings.context),
            ("Exten", order.destination.number),
            ("Priority", "1"),
            ("CallerID", f'"{shown}" <{shown}>'),
            ("Timeout", str(round(order.agent_ring_timeout * 1000))),
            ("Async", "true"),
            ("ChannelId", order.uniqueid),
            ("Variable", ",".join(variables)),
        ],
    )
    for key, value in message.headers:
        check_safe(key, value)  # refuse here, before the action is queued
    return message


def hangup(channel: str, action_id: str) -> Message:
    return Message.action("Hangup", [("ActionID", action_id), ("Channel", channel)])


def status(action_id: str) -> Message:
    """List every channel: a list reply, one `Status` event each (with Linkedid).

    Status rather than CoreShowChannels: it needs the `call` write class an account that
    originates already has, where CoreShowChannels needs `system` or `reporting`.
    """
    return Message.action("Status", [("ActionID", action_id)])
