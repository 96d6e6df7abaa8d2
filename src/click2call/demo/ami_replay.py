"""An AMI peer on loopback that replays real Asterisk recordings, for tests and benchmarks.

Asterisk is not packaged for Debian 12, so this stands in for it, speaking only what a
real Asterisk 20 said (shared/fixtures/asterisk-ami/*.txt). It plays the recorded server
side byte for byte; the only rewrites are the ids the client chooses itself (its
ActionIDs and the preset ChannelId), which a real Asterisk echoes back. It checks each
action the client sends against the recorded one, header by header: anything else (an
extra header, a different value, an injected line) is refused and kept in `mismatches`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from click2call.engines.asterisk.codec import AmiDecoder, Message

LOGIN_OK = "originate-sip-success.txt"


@dataclass(frozen=True)
class Entry:
    t: float
    dir: str  # "send" (client → Asterisk) or "recv" (Asterisk → client)
    data: bytes
    conn: int = 1  # which TCP connection of the recording (reconnect recordings have 2)


def read_recording(path: Path) -> list[Entry]:
    entries = []
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            item = json.loads(line)
            entries.append(
                Entry(item["t"], item["dir"], item["data"].encode(), item.get("conn", 1))
            )
    return entries


def _action(data: bytes) -> Message:
    decoded = AmiDecoder().feed(b"Asterisk Call Manager/9.0.0\r\n" + data)
    message = decoded[1]
    assert isinstance(message, Message)
    return message


@dataclass
class _Script:
    """One recording split at the client's actions: [(recorded action, replies after it)]."""

    banner: bytes
    steps: list[tuple[Message, list[Entry]]]


def _script(entries: list[Entry]) -> _Script:
    banner = entries[0].data
    steps: list[tuple[Message, list[Entry]]] = []
    for entry in entries[1:]:
        if entry.dir == "send":
            steps.append((_action(entry.data), []))
        elif steps:
            steps[-1][1].append(entry)
    return _Script(banner, steps)


def _until(entries: list[Entry], marker: str) -> list[Entry]:
    """The entries up to and including the first one holding `marker`."""
    for index, entry in enumerate(entries):
        if marker.encode() in entry.data:
            return entries[: index + 1]
    return entries


@dataclass
class ReplayPeer:
    recordings: Path
    login: str = LOGIN_OK  # the recording whose Login exchange each connection replays
    time_scale: float = 0.02  # recorded gaps are replayed this much faster (0: at once)
    port: int = 0
    mismatches: list[str] = field(default_factory=list)
    actions: list[Message] = field(default_factory=list)  # every action received, in order
    logins: int = 0
    _queue: deque[tuple[str, str | None, str | None]] = field(default_factory=deque)
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def play(self, name: str, drop_after: str | None = None, stop_after: str | None = None) -> None:
        """Answer the next Originate with this recording. `drop_after`: close the connection
        right after the chunk holding that text (e.g. "Event: OriginateResponse");
        `stop_after`: send nothing more of the recording after it, connection kept."""
        self._queue.append((name, drop_after, stop_after))

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

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        decoder = AmiDecoder()
        decoder.feed(b"Asterisk Call Manager/9.0.0\r\n")  # only the server sends a banner
        login = _script(read_recording(self.recordings / self.login))
        pending: deque[Message] = deque()
        try:
            writer.write(login.banner)
            recorded_login, replies = login.steps[0]
            action = await self._next_action(reader, decoder, pending)
            ids = {recorded_login.action_id or "": action.action_id or ""}
            if not self._check(recorded_login, action, ids):
                return
            self.logins += 1
            await self._replay(writer, replies, ids, None)
            later: deque[tuple[Message, list[Entry]]] = deque()  # the scenario's next steps
            while True:
                action = await self._next_action(reader, decoder, pending)
                name = action.get("Action")
                if later and later[0][0].get("Action") == name:
                    recorded, replies = later.popleft()  # e.g. the recorded Logoff
                    drop_after = stop_after = None
                elif name == "Originate" and self._queue:
                    scenario, drop_after, stop_after = self._queue.popleft()
                    steps = _script(read_recording(self.recordings / scenario)).steps
                    (recorded, replies), later = steps[1], deque(steps[2:])
                    ids = {
                        recorded.action_id or "": action.action_id or "",
                        recorded.get("ChannelId") or "": action.get("ChannelId") or "",
                    }
                else:
                    self.mismatches.append(f"unscripted action: {action.headers}")
                    await self._refuse(writer, action, "not in the recordings")
                    continue
                ids[recorded.action_id or ""] = action.action_id or ""
                if not self._check(recorded, action, ids):
                    await self._refuse(writer, action, "action differs from the recording")
                    continue
                if stop_after is not None:
                    replies = _until(replies, stop_after)
                if not await self._replay(writer, replies, ids, drop_after) or name == "Logoff":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.remove(writer)
            writer.close()

    async def _next_action(
        self, reader: asyncio.StreamReader, decoder: AmiDecoder, pending: deque[Message]
    ) -> Message:
        while not pending:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("client closed")
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

    async def _refuse(self, writer: asyncio.StreamWriter, action: Message, why: str) -> None:
        # A real Asterisk answers an action it cannot run with Response: Error.
        reply = Message(
            (("Response", "Error"), ("ActionID", action.action_id or ""), ("Message", why))
        )
        writer.write(bytes(reply))
        await writer.drain()

    async def _replay(
        self,
        writer: asyncio.StreamWriter,
        replies: list[Entry],
        ids: dict[str, str],
        drop_after: str | None,
    ) -> bool:
        """Send the recorded chunks; False when the connection was dropped on purpose."""
        previous = replies[0].t if replies else 0.0
        for entry in replies:
            if self.time_scale and entry.t > previous:
                await asyncio.sleep((entry.t - previous) * self.time_scale)
            previous = entry.t
            data = entry.data
            for recorded, actual in ids.items():
                if recorded:
                    data = data.replace(recorded.encode(), actual.encode())
            writer.write(data)
            await writer.drain()
            if drop_after is not None and drop_after.encode() in data:
                writer.close()
                return False
        return True
