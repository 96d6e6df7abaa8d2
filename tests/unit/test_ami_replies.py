"""Replies matched to their actions by ActionID, lists included, against real recordings."""

from __future__ import annotations

import pytest

from click2call.engines.asterisk.codec import AmiDecoder, Message
from click2call.engines.asterisk.replies import Done, Replies, Reply
from tests.ami_recordings import received

CHANNEL_ID = {
    "status-during-call.txt": "1795478400.2002",
    "reconnect-during-call.txt": "1795478400.2003",
}


def messages(data: bytes, step: int | None) -> list[Message]:
    decoder = AmiDecoder()
    chunks = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    out = [m for chunk in chunks for m in decoder.feed(chunk) if isinstance(m, Message)]
    assert decoder.pending == 0
    return out


def sort(stream: list[Message], *action_ids: str) -> tuple[list[Message], dict[str, Reply]]:
    replies = Replies()
    for action_id in action_ids:
        replies.expect(action_id)
    live, done = [], {}
    for message in stream:
        passed, whole = replies.feed(message)
        if passed is not None:
            live.append(passed)
        if whole is not None:
            done[whole.action_id] = whole.reply
    return live, done


@pytest.mark.parametrize("step", [None, 1, 7])
@pytest.mark.parametrize(
    ("name", "conn", "status", "csc"),
    [
        ("status-during-call.txt", 1, "status-1", "csc-1"),
        ("reconnect-during-call.txt", 2, "status-2", "csc-2"),
    ],
)
def test_list_replies_are_collected_out_of_the_live_stream(
    name: str, conn: int, status: str, csc: str, step: int | None
) -> None:
    stream = messages(received(name, conn), step)
    live, done = sort(stream, status, csc)
    assert set(done) == {status, csc}
    for action_id, item in ((status, "Status"), (csc, "CoreShowChannel")):
        reply = done[action_id]
        assert reply.ok and reply.response["EventList"] == "start"
        assert [m.event for m in reply.items] == [item, item]
        assert {m["Linkedid"] for m in reply.items} == {CHANNEL_ID[name]}
        assert {m.action_id for m in reply.items} == {action_id}
    # Nothing of a list leaks into the live stream, and nothing live is swallowed.
    assert not any(m.action_id in (status, csc) for m in live)
    assert len(live) == len(stream) - sum(len(r.items) + 2 for r in done.values())


def test_the_split_status_complete_still_closes_its_list() -> None:
    data = received("reconnect-during-call.txt", 2)
    assert b"ListItems: 2\r\n" in data and b"\r\nItems: 2\r\n\r\n" in data
    _, done = sort(messages(data, None), "status-2")
    assert len(done["status-2"].items) == 2


def test_a_plain_reply_is_whole_and_later_events_with_its_id_are_live() -> None:
    stream = messages(received("originate-sip-success.txt"), None)
    live, done = sort(stream, "login-1", "c2c-1")
    assert done["c2c-1"].response["Message"] == "Originate successfully queued"
    assert done["c2c-1"].items == ()
    # The response itself is part of the stream too (the tracker reads it in order).
    assert live[0] == done["login-1"].response
    assert any(m.event == "OriginateResponse" and m.action_id == "c2c-1" for m in live)


def test_a_refused_list_is_a_plain_error_and_unknown_replies_pass() -> None:
    replies = Replies()
    replies.expect("q-1")
    error = Message((("Response", "Error"), ("ActionID", "q-1"), ("Message", "Permission denied")))
    assert replies.feed(error) == (error, Done("q-1", Reply(error)))
    assert not Reply(error).ok
    stray = Message((("Response", "Success"), ("ActionID", "q-9")))
    assert replies.feed(stray) == (stray, None)


def test_a_forgotten_list_lets_its_late_items_pass() -> None:
    replies = Replies()
    replies.expect("csc-1")
    start = Message((("Response", "Success"), ("ActionID", "csc-1"), ("EventList", "start")))
    item = Message((("Event", "CoreShowChannel"), ("ActionID", "csc-1")))
    assert replies.feed(start) == (None, None)
    replies.forget("csc-1")
    assert replies.feed(item) == (item, None)
