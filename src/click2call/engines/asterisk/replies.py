"""Matching what Asterisk sends to the actions waiting for it, by ActionID. Sans-IO.

Every reply echoes its action's ActionID. Two shapes (tests/fixtures/asterisk-ami/
status-during-call.txt, reconnect-during-call.txt):

    plain   Response: Success | Error, Message: ...                  one message
    list    Response: Success, EventList: start                      then, interleaved with
            Event: Status | CoreShowChannel ..., ActionID: <id>     the live event stream,
            Event: StatusComplete ..., EventList: Complete          one event per item

A list ends with the event whose `EventList` is `Complete`. A list action that is refused
answers a plain `Response: Error`. Everything that is not part of a reply awaited here,
including events that carry an ActionID once their action's reply is whole
(OriginateResponse), belongs to the live stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from click2call.engines.asterisk.codec import Message


@dataclass(frozen=True, slots=True)
class Reply:
    response: Message
    items: tuple[Message, ...] = ()  # a list's events, without the closing one

    @property
    def ok(self) -> bool:
        return self.response.response == "Success"


@dataclass(frozen=True, slots=True)
class Done:
    action_id: str
    reply: Reply


class Replies:
    """The actions awaiting a reply; `feed()` every message received, in order."""

    def __init__(self) -> None:
        self._waiting: set[str] = set()
        self._lists: dict[str, tuple[Message, list[Message]]] = {}

    def expect(self, action_id: str) -> None:
        self._waiting.add(action_id)

    def forget(self, action_id: str) -> None:
        """Stop waiting (the caller gave up): late parts of its reply pass as live messages."""
        self._waiting.discard(action_id)
        self._lists.pop(action_id, None)

    def feed(self, message: Message) -> tuple[Message | None, Done | None]:
        """What `message` means: (the message, for the live stream, unless it is part of a
        list; the reply it completes, if it does)."""
        action_id = message.action_id or ""
        if message.event is None:
            if action_id not in self._waiting:
                return message, None  # a reply nobody waits for any more
            if (message.get("EventList") or "").lower() == "start":
                self._lists[action_id] = (message, [])
                return None, None
            self._waiting.discard(action_id)
            return message, Done(action_id, Reply(message))
        if action_id not in self._lists:
            return message, None
        response, items = self._lists[action_id]
        if (message.get("EventList") or "").lower() != "complete":
            items.append(message)
            return None, None
        del self._lists[action_id]
        self._waiting.discard(action_id)
        return None, Done(action_id, Reply(response, tuple(items)))
