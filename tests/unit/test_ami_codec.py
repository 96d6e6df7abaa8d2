"""The AMI codec against real Asterisk 20 recordings: whole, byte by byte, and re-encoded."""

from __future__ import annotations

import pytest

from click2call.engines.asterisk.codec import (
    AmiDecoder,
    AmiProtocolError,
    Banner,
    Message,
    UnsafeValue,
)
from tests.ami_recordings import received, sent, streams


def decode(data: bytes, step: int | None = None) -> list[Banner | Message]:
    decoder = AmiDecoder()
    if step is None:
        return decoder.feed(data)
    out = []
    for i in range(0, len(data), step):
        out += decoder.feed(data[i : i + step])
    assert decoder.pending == 0
    return out


@pytest.mark.parametrize(("name", "conn"), streams())
def test_recordings_decode_the_same_whole_and_byte_by_byte(name: str, conn: int) -> None:
    data = received(name, conn)
    whole = decode(data)
    assert whole[0] == Banner("9.0.0")
    assert decode(data, step=1) == whole
    assert decode(data, step=7) == whole


@pytest.mark.parametrize(("name", "conn"), streams())
def test_every_received_message_re_encodes_to_its_exact_bytes(name: str, conn: int) -> None:
    data = received(name, conn)
    encoded = []
    for message in decode(data):
        if not isinstance(message, Message):
            continue
        if any("\r" in value for _, value in message.headers):
            # Asterisk echoes a bare CR it was sent; we decode it but never write one.
            with pytest.raises(UnsafeValue):
                bytes(message)
            text = "".join(f"{k}: {v}\r\n" for k, v in message.headers) + "\r\n"
            encoded.append(text.encode())
        else:
            encoded.append(bytes(message))
    banner_end = data.index(b"\r\n") + 2
    assert b"".join(encoded) == data[banner_end:]


def test_the_client_actions_of_a_recording_are_written_byte_for_byte() -> None:
    login, originate, logoff = sent("originate-sip-success.txt")
    assert bytes(Message.action("Logoff", [("ActionID", "bye-1")])) == logoff
    assert (
        bytes(
            Message.action(
                "Login",
                [
                    ("Username", "click2call"),
                    ("Secret", "test"),
                    ("Events", "on"),
                    ("ActionID", "login-1"),
                ],
            )
        )
        == login
    )
    assert (
        bytes(
            Message.action(
                "Originate",
                [
                    ("ActionID", "c2c-1"),
                    ("Channel", "SIP/200"),
                    ("Context", "from-internal"),
                    ("Exten", "0502760206"),
                    ("Priority", "1"),
                    ("CallerID", '"0502760206" <0502760206>'),
                    ("Timeout", "8000"),
                    ("Async", "true"),
                    ("ChannelId", "1795478400.1001"),
                    ("Variable", "FOREIGNID=123,CLICK2CALL_OUTBOUNDCID=036411111"),
                ],
            )
        )
        == originate
    )


def test_fields_of_a_real_event() -> None:
    messages = decode(received("originate-agent-busy.txt"))
    reply = next(m for m in messages if isinstance(m, Message) and m.event == "OriginateResponse")
    assert (reply["Response"], reply["Reason"], reply.action_id) == ("Failure", "5", "c2c-1")
    assert reply.get("response") == "Failure"  # keys are case-insensitive
    assert reply.get("Nope") is None
    with pytest.raises(KeyError):
        reply["Nope"]


@pytest.mark.parametrize("parsed", [True, False], ids=["received", "built"])
def test_the_first_copy_of_a_header_wins_whatever_its_spelling(parsed: bool) -> None:
    headers = (("Event", "Status"), ("BridgeID", "b-1"), ("BRIDGEID", "b-2"), ("bridgeid", "b-3"))
    message = Message(headers)
    if parsed:
        [parsed_message] = AmiDecoder().feed(b"Asterisk Call Manager/9.0.0\r\n" + bytes(message))[
            1:
        ]
        assert isinstance(parsed_message, Message)
        message = parsed_message
    assert message.headers == headers
    for spelling in ("BridgeID", "BridgeId", "BRIDGEID", "bridgeid"):
        assert message.get(spelling) == "b-1", spelling
    assert message.get("Missing", "none") == "none"


def test_login_failure_is_an_error_response() -> None:
    messages = decode(received("login-bad-secret.txt"))
    reply = messages[1]
    assert isinstance(reply, Message)
    assert (reply.response, reply["Message"]) == ("Error", "Authentication failed")


@pytest.mark.parametrize("value", ["100\r\n\r\nAction: Ping", "a\rb", "a\nb", "a\x00b"])
def test_no_value_can_carry_a_line_break_or_nul(value: str) -> None:
    with pytest.raises(UnsafeValue):
        bytes(Message.action("Originate", [("Exten", value)]))
    with pytest.raises(UnsafeValue):
        bytes(Message.action("Originate", [(value, "1")]))


def test_header_names_are_plain() -> None:
    with pytest.raises(UnsafeValue):
        bytes(Message.action("Originate", [("Exten: 1\r\nX", "1")]))
    with pytest.raises(UnsafeValue):
        bytes(Message.action("Originate", [("", "1")]))


def test_duplicates_keep_order_and_the_first_wins() -> None:
    message = Message.action("Originate", [("Variable", "A=1"), ("Variable", "B=2")])
    assert message.get_all("Variable") == ["A=1", "B=2"]
    assert message.get("Variable") == "A=1"


def test_secrets_are_redacted_for_logs() -> None:
    login = Message.action("Login", [("Username", "u"), ("Secret", "s3cret")])
    assert b"s3cret" not in bytes(login.redacted("Secret"))


def test_garbage_is_not_ami() -> None:
    with pytest.raises(AmiProtocolError, match="banner"):
        AmiDecoder().feed(b"HTTP/1.1 400 Bad Request\r\n")
    decoder = AmiDecoder()
    decoder.feed(b"Asterisk Call Manager/9.0.0\r\n")
    with pytest.raises(AmiProtocolError, match="header line"):
        decoder.feed(b"no colon here\r\n\r\n")
    with pytest.raises(AmiProtocolError, match="limit"):
        AmiDecoder(max_message=64).feed(b"Asterisk Call Manager/9.0.0\r\n" + b"A: " + b"x" * 100)


def test_an_empty_value_round_trips() -> None:
    decoder = AmiDecoder()
    decoder.feed(b"Asterisk Call Manager/9.0.0\r\n")
    (message,) = decoder.feed(b"Event: X\r\nEmpty: \r\n\r\n")
    assert isinstance(message, Message)
    assert message.get("Empty") == ""
    assert bytes(message) == b"Event: X\r\nEmpty: \r\n\r\n"


@pytest.mark.parametrize("step", [None, 1, 7])
@pytest.mark.parametrize(("name", "conn"), streams())
def test_refused_messages_are_skipped_whole_byte_by_byte_and_with_trailing_data(
    name: str, conn: int, step: int | None
) -> None:
    data = received(name, conn)
    everything = [m for m in decode(data) if isinstance(m, Message)]

    def no_dialplan(block: bytes) -> bool:
        return b"\r\nPrivilege: dialplan," not in block

    decoder = AmiDecoder(keep=no_dialplan)
    size = step or len(data)
    kept: list[Banner | Message] = []
    trailing = b"Event: Half\r\nPrivilege: dialplan,all\r\n"
    chunks = [data[i : i + size] for i in range(0, len(data), size)] + [trailing]
    for chunk in chunks:
        kept += decoder.feed(chunk)
    assert [m for m in kept if isinstance(m, Message)] == [
        m for m in everything if m.get("Privilege") != "dialplan,all"
    ]
    assert decoder.skipped == len(everything) - len(kept) + 1  # + 1: the banner
    assert decoder.pending == len(trailing)  # a message begun is kept until it ends
