"""An AMI peer on loopback that replays real Asterisk recordings, for tests and benchmarks.

Asterisk is not packaged for Debian 12, so this stands in for it, speaking only what a
real Asterisk 20 said (tests/fixtures/asterisk-ami/*.txt). Each TCP connection of a
recording is a timeline of the chunks the server sent, cut by gates where the client sent
an action. The peer writes the chunks byte for byte, as they arrived; the only rewrites
are the ids the client chooses itself (its ActionIDs, the preset ChannelId and, for a
Local channel, OtherChannelId, which the recordings did not send: Asterisk then named the
second half `<ChannelId>;2`), which a real Asterisk echoes back. At a gate it waits for
the client's action and checks it header by header against the recorded one: anything
else (an extra header, a different value, an injected line) is refused with
`Response: Error` and kept in `mismatches`.

* Query actions (Status, CoreShowChannels) answer on demand: a run of recorded queries is
  passed once the client sends any of them, each query gets its recorded reply (ActionID
  rewritten), and the replies the client did not ask for are held back, not played.
* A recording with a second connection (reconnect-during-call.txt): when connection 1's
  chunks are played the peer closes the link (or, with `client_leaves`, keeps it until
  the client goes: a server killed), and the client's next connection plays connection
  2, from its banner and login on.
* The Login's `Events:` may differ from the recording's (`call` where it said `on`): the
  peer then sends what Asterisk sends such a session, the live events whose `Privilege`
  classes are all in that list (manager.c: `(send_events & category) == category`);
  replies, with the items of a list, are not events and all pass.
* The one reply no file holds: a Hangup of a channel whose Hangup event was played gets
  `Response: Error` / `Message: No such channel`, as probed on the real Asterisk (README).
* Actions named in `refused` get the peer's own `Response: Error` ("not in the recordings",
  as any unscripted action) even where a recording answers them: an account that may not
  run them. No recording holds Asterisk's own refusal ("Permission denied"), so its text is
  not imitated; a client only learns that the action failed.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from click2call.engines.asterisk.codec import AmiDecoder, Banner, Message
from tests.ami_recordings import FIXTURES, Entry, read_recording

LOGIN_OK = "originate-sip-success.txt"
QUERIES = frozenset({"status", "coreshowchannels"})
_NO_BANNER = b"Asterisk Call Manager/9.0.0\r\n"


def _action(data: bytes) -> Message:
    message = AmiDecoder().feed(_NO_BANNER + data)[1]
    assert isinstance(message, Message)
    return message


def _name(action: Message) -> str:
    return (action.get("Action") or "").lower()


def _with_other_channel_id(recorded: Message, other: str) -> Message:
    """The recorded Originate as it would have been sent with `OtherChannelId: other`."""
    headers: list[tuple[str, str]] = []
    for key, value in recorded.headers:
        headers.append((key, value))
        if key == "ChannelId":
            headers.append(("OtherChannelId", other))
    return Message(tuple(headers))


def _event_classes(events: str) -> frozenset[str] | None:
    """The classes a Login's `Events:` asks for (manager.c strings_to_mask); None: all."""
    value = events.strip().lower()
    if value in ("on", "yes", "true", "y", "t", "1") or value.isdigit():
        return None
    if value in ("off", "no", "false", "n", "f", "0"):
        return frozenset()
    return frozenset(part.strip() for part in value.split(","))


def _masked(play: _Play, data: bytes) -> bytes:
    """The whole messages of `data` (after what `play.partial` holds) a session asking for
    `play.events` receives; a message not yet whole waits in `play.partial`."""
    assert play.events is not None
    text, start, out = play.partial + data, 0, []
    while (end := text.find(b"\r\n\r\n", start)) >= 0:
        block, start = text[start : end + 4], end + 4
        at = block.find(b"\r\nPrivilege: ")
        if at < 0:
            out.append(block)  # a reply
            continue
        value = block[at + 13 : block.find(b"\r\n", at + 13)].decode()
        if {c for c in value.split(",") if c != "all"} <= play.events:
            out.append(block)
    play.partial = text[start:]
    return b"".join(out)


def _rewrite(data: bytes, ids: dict[str, str]) -> bytes:
    """The recorded ids replaced by the client's, in one pass (longest first), so a
    replacement is never itself rewritten."""
    wanted = {k.encode(): v.encode() for k, v in ids.items() if k}
    if not wanted:
        return data
    pattern = b"|".join(re.escape(k) for k in sorted(wanted, key=len, reverse=True))
    return re.sub(pattern, lambda m: wanted[m.group(0)], data)


@dataclass
class Gate:
    """Where the client sent `action` in the recording."""

    action: Message


@dataclass
class Chunk:
    entry: Entry
    owners: set[str | None] = field(default_factory=set)  # query ActionIDs of its messages
    hung_up: list[str] = field(default_factory=list)  # channels whose Hangup it holds

    @property
    def reply_to(self) -> str | None:
        """The recorded query this chunk answers, or None for the live event stream."""
        if self.owners <= {None}:
            return None
        if len(self.owners) > 1:
            raise ValueError(f"chunk at t={self.entry.t} mixes replies or live events")
        return next(iter(self.owners))


Item = Gate | Chunk


def timeline(entries: list[Entry]) -> list[Item]:
    """One connection's entries as gates and chunks, each chunk knowing whose reply it is."""
    decoder = AmiDecoder()
    items: list[Item] = []
    queries: set[str] = set()
    open_chunks: list[Chunk] = []  # chunks holding part of the message not yet whole
    for entry in entries:
        if entry.dir == "send":
            action = _action(entry.data)
            items.append(Gate(action))
            if _name(action) in QUERIES and action.action_id:
                queries.add(action.action_id)
            continue
        chunk = Chunk(entry)
        items.append(chunk)
        open_chunks.append(chunk)
        for message in decoder.feed(entry.data):
            if isinstance(message, Banner):
                continue
            owner = message.action_id if message.action_id in queries else None
            for part in open_chunks:
                part.owners.add(owner)
                if message.event == "Hangup":
                    part.hung_up.append(message.get("Channel") or "")
            open_chunks = [chunk]
        open_chunks = [chunk] if decoder.pending else []
    return items


@functools.cache
def _connections(path: Path) -> list[list[Item]]:
    """Parsed once per recording: the items are only read afterwards."""
    return connections(read_recording(path))


def connections(entries: list[Entry]) -> list[list[Item]]:
    return [
        timeline([e for e in entries if e.conn == n]) for n in sorted({e.conn for e in entries})
    ]


@dataclass
class _Play:
    """What one client connection is playing."""

    items: deque[Item]
    ids: dict[str, str] = field(default_factory=dict)  # recorded id → the client's
    later: list[list[Item]] = field(default_factory=list)  # the recording's next connections
    held: dict[str, tuple[Message, list[Chunk]]] = field(default_factory=dict)  # queries
    drop_after: str | None = None
    stop_after: str | None = None
    client_leaves: bool = False
    previous_t: float | None = None
    hung_up: set[str] = field(default_factory=set)  # channels whose Hangup was played
    events: frozenset[str] | None = None  # the Login's event classes; None: all
    partial: bytes = b""  # a live message begun in the chunks sent so far, when masked


@dataclass
class ReplayPeer:
    recordings: Path = FIXTURES
    login: str = LOGIN_OK  # the recording whose Login exchange each new connection replays
    time_scale: float = 0.02  # recorded gaps are replayed this much faster (0: at once)
    port: int = 0
    mismatches: list[str] = field(default_factory=list)
    actions: list[Message] = field(default_factory=list)  # every action received, in order
    received: list[bytearray] = field(default_factory=list)  # each connection's bytes, as read
    logins: int = 0
    refused: set[str] = field(default_factory=set)  # action names (lower case) refused
    _queue: deque[tuple[str, str | None, str | None, bool]] = field(default_factory=deque)
    _resumes: deque[_Play] = field(default_factory=deque)  # next connections to play
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def play(
        self,
        name: str,
        drop_after: str | None = None,
        stop_after: str | None = None,
        client_leaves: bool = False,
    ) -> None:
        """Answer the next Originate with this recording. `drop_after`: close the connection
        right after the chunk holding that text (e.g. "Event: OriginateResponse");
        `stop_after`: send nothing more of the recording after it, connection kept;
        `client_leaves`: where the recorded link was lost, wait for the client to close it."""
        self._queue.append((name, drop_after, stop_after, client_leaves))

    @property
    def waiting_for_next_connection(self) -> bool:
        """A recording's link loss was reached: its next connection is ready to play."""
        return bool(self._resumes)

    def start(self) -> ReplayPeer:
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", self.port)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="ami-replay", daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def drop_connections(self) -> None:
        assert self._loop is not None
        for writer in list(self._writers):
            self._loop.call_soon_threadsafe(writer.close)

    # --- one client connection -------------------------------------------------------

    def _first_play(self) -> _Play:
        if self._resumes:
            return self._resumes.popleft()
        items = _connections(self.recordings / self.login)[0]
        second_gate = [i for i, item in enumerate(items) if isinstance(item, Gate)][1:2]
        return _Play(deque(items[: second_gate[0]] if second_gate else items))

    def _scenario(
        self, name: str, drop_after: str | None, stop_after: str | None, client_leaves: bool
    ) -> _Play:
        first, *later = _connections(self.recordings / name)
        gates = [i for i, item in enumerate(first) if isinstance(item, Gate)]
        return _Play(
            deque(first[gates[1] :]),
            later=later,
            drop_after=drop_after,
            stop_after=stop_after,
            client_leaves=client_leaves,
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        received = bytearray()
        self.received.append(received)
        decoder = AmiDecoder()
        decoder.feed(_NO_BANNER)  # only the server sends a banner
        pending: deque[Message] = deque()
        play = self._first_play()
        try:
            while True:
                if not play.items and play.later:
                    # The recorded link was lost here: close it; the client comes back.
                    later = deque(play.later[0])
                    self._resumes.append(
                        _Play(later, play.ids, play.later[1:], hung_up=play.hung_up)
                    )
                    while play.client_leaves and await reader.read(65536):
                        pass
                    return
                if play.items and isinstance(chunk := play.items[0], Chunk):
                    play.items.popleft()
                    if not await self._write(writer, play, chunk):
                        return
                    continue
                action = await self._next_action(reader, decoder, pending, received)
                play = await self._answer(writer, play, action)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client left, or the peer stops
        finally:
            self._writers.remove(writer)
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, play: _Play, action: Message) -> _Play:
        """Match the client's action to the gate ahead; the play that goes on from there."""
        name = _name(action)
        if name in self.refused:
            await self._reply_error(writer, action, "not in the recordings")
            return play
        ahead = play.items[0] if play.items and isinstance(play.items[0], Gate) else None
        if name in play.held:
            recorded, reply = play.held.pop(name)
            if await self._pass(writer, play, recorded, action):
                await self._write_all(writer, play, reply)
            return play
        if ahead is not None and _name(ahead.action) in QUERIES:
            run = self._query_run(play)
            if name in run:
                play.held.update(run)
                return await self._answer(writer, play, action)
        if name == "originate" and self._queue and not (ahead and _name(ahead.action) == name):
            events = play.events  # the session's, from its Login
            play = self._scenario(*self._queue.popleft())
            play.events = events
            return await self._answer(writer, play, action)
        if ahead is not None and _name(ahead.action) == name:
            if await self._pass(writer, play, ahead.action, action):
                play.items.popleft()
                if name == "login":
                    self.logins += 1
            return play
        if name == "hangup" and action.get("Channel") in play.hung_up:
            await self._reply_error(writer, action, "No such channel")
            return play
        self.mismatches.append(f"unscripted action: {action.headers}")
        await self._reply_error(writer, action, "not in the recordings")
        return play

    async def _pass(
        self, writer: asyncio.StreamWriter, play: _Play, recorded: Message, action: Message
    ) -> bool:
        """Whether `action` is the recorded one, given the ids the client chose."""
        play.ids[recorded.action_id or ""] = action.action_id or ""
        events = action.get("Events")
        if _name(action) == "login" and events is not None and events != recorded.get("Events"):
            play.events = _event_classes(events)
            recorded = Message(
                tuple((k, events if k == "Events" else v) for k, v in recorded.headers)
            )
        if _name(action) == "originate":
            first = recorded.get("ChannelId") or ""
            play.ids[first] = action.get("ChannelId") or ""
            other = action.get("OtherChannelId")
            if other is not None and recorded.get("OtherChannelId") is None:
                play.ids[f"{first};2"] = other
                recorded = _with_other_channel_id(recorded, other)
        if self._check(recorded, action, play.ids):
            play.previous_t = None
            return True
        await self._reply_error(writer, action, "action differs from the recording")
        return False

    def _query_run(self, play: _Play) -> dict[str, tuple[Message, list[Chunk]]]:
        """Take the run of query gates ahead, with their replies, out of the timeline."""
        run: dict[str, tuple[Message, list[Chunk]]] = {}
        while play.items and isinstance(gate := play.items[0], Gate):
            if _name(gate.action) not in QUERIES:
                break
            play.items.popleft()
            recorded_id = gate.action.action_id
            replies = [i for i in play.items if isinstance(i, Chunk) and i.reply_to == recorded_id]
            play.items = deque(i for i in play.items if not any(i is r for r in replies))
            run[_name(gate.action)] = (gate.action, replies)
        return run

    async def _next_action(
        self,
        reader: asyncio.StreamReader,
        decoder: AmiDecoder,
        pending: deque[Message],
        received: bytearray,
    ) -> Message:
        while not pending:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("client closed")
            received += data
            pending.extend(m for m in decoder.feed(data) if isinstance(m, Message))
        action = pending.popleft()
        self.actions.append(action)
        return action

    def _check(self, recorded: Message, got: Message, ids: dict[str, str]) -> bool:
        expected = tuple((k, ids.get(v, v)) for k, v in recorded.headers)
        if got.headers == expected:
            return True
        self.mismatches.append(f"expected {expected}, got {got.headers}")
        return False

    async def _reply_error(self, writer: asyncio.StreamWriter, action: Message, why: str) -> None:
        # A real Asterisk answers an action it cannot run with Response: Error.
        reply = Message(
            (("Response", "Error"), ("ActionID", action.action_id or ""), ("Message", why))
        )
        writer.write(bytes(reply))
        await writer.drain()

    async def _write_all(
        self, writer: asyncio.StreamWriter, play: _Play, chunks: list[Chunk]
    ) -> None:
        play.previous_t = None
        for chunk in chunks:
            await self._write(writer, play, chunk)

    async def _write(self, writer: asyncio.StreamWriter, play: _Play, chunk: Chunk) -> bool:
        """Send one recorded chunk; False when the connection is to end after it."""
        t = chunk.entry.t
        if self.time_scale and play.previous_t is not None and t > play.previous_t:
            await asyncio.sleep((t - play.previous_t) * self.time_scale)
        play.previous_t = t
        data = chunk.entry.data
        if play.events is not None and chunk.reply_to is None:
            data = _masked(play, data)
        data = _rewrite(data, play.ids)
        writer.write(data)
        await writer.drain()
        play.hung_up.update(chunk.hung_up)
        if play.stop_after is not None and play.stop_after.encode() in data:
            play.items.clear()
            play.later.clear()
        return play.drop_after is None or play.drop_after.encode() not in data
