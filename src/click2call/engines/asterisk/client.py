"""One persistent, logged-in AMI connection per PBX, that reconnects by itself.

A thin asyncio shell around the sans-IO codec (codec.py) and reply matcher (replies.py):
it writes actions, hands each reply to the action waiting for it, passes every other
message to the engine in the order received, and after a drop or a refused login tries
again with exponential backoff. While it is down, `send()` fails at once.

What arrives is decoded in the transport's callback (`_Link.data_received`), not by a task
reading a StreamReader: a live Asterisk writes each event on its own, so a call's
messages come in many small reads, and each read woke a task and copied its bytes twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable

from click2call.engines.asterisk import actions
from click2call.engines.asterisk.codec import AmiDecoder, AmiProtocolError, Message
from click2call.engines.asterisk.replies import Replies, Reply
from click2call.settings import TenantAsterisk

log = logging.getLogger("click2call.asterisk")
_FIRST_RETRY = 0.5


class AmiUnavailable(Exception):
    """The AMI connection is down, or an action got no reply in time."""


class _Link(asyncio.Protocol):
    """One connection's reading side: each read decoded and dispatched as it arrives.
    `closed` ends when the connection does: with None once the peer closes it, with the
    exception that ended it otherwise (garbage from the peer, a failed dispatch)."""

    def __init__(self, decoder: AmiDecoder, dispatch: Callable[[Message], None]) -> None:
        self._decoder = decoder
        self._dispatch = dispatch
        self._transport: asyncio.BaseTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            for message in self._decoder.feed(data):
                if isinstance(message, Message):
                    self._dispatch(message)
        except Exception as exc:
            self._end(exc)
            if self._transport is not None:
                self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc)

    def _end(self, exc: Exception | None) -> None:
        if self.closed.done():
            return
        if exc is None:
            self.closed.set_result(None)
        else:
            self.closed.set_exception(exc)
            self.closed.exception()  # raised to whoever awaits it; nobody may (a close)


class AmiClient:
    def __init__(
        self,
        settings: TenantAsterisk,
        on_message: Callable[[Message], None],
        on_link_lost: Callable[[str], None],
        on_connected: Callable[[], None] = lambda: None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        name: str = "pbx",
        keep: Callable[[bytes], bool] | None = None,
    ) -> None:
        """`keep`: which raw messages are worth parsing (codec.AmiDecoder); all by default."""
        self._settings = settings
        self._on_message = on_message
        self._on_link_lost = on_link_lost
        self._on_connected = on_connected
        self._sleep = sleep
        self._name = name
        self._keep = keep
        # OriginateResponse is an event: every AMI session of the PBX receives it, with the
        # ActionID its Originate carried. Another click2call process on the same PBX counts
        # from 1 too, so the ids of this one carry a token of its own.
        token = secrets.token_hex(3)
        self._ids = (f"c2c-{token}-{n}" for n in itertools.count(1))
        self._writer: asyncio.WriteTransport | None = None
        self._replies = Replies()
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self._in_order: dict[str, Callable[[Reply], None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._up = asyncio.Event()
        self.status = "not started"
        self.connections = 0  # logins so far, for health and tests

    @property
    def connected(self) -> bool:
        return self._connected

    async def wait_connected(self) -> None:
        """Return once logged in (wrap in asyncio.timeout to bound the wait)."""
        await self._up.wait()

    def next_action_id(self) -> str:
        return next(self._ids)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"ami-{self._name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.status = "closed"

    async def send(self, action: Message) -> Message:
        """Write `action` (which carries its ActionID) and wait for its response."""
        return (await self.request(action)).response

    async def request(
        self, action: Message, in_order: Callable[[Reply], None] | None = None
    ) -> Reply:
        """Write `action` and wait for its whole reply, with every item of a list.

        `in_order` is called with the reply at its place in the stream: after the messages
        received before it, before any received after it (the awaiting caller runs later).
        """
        action_id = action.action_id
        if action_id is None:
            raise ValueError("an action needs an ActionID")
        if not self._connected or self._writer is None:
            raise AmiUnavailable(f"not connected to Asterisk ({self.status})")
        if in_order is not None:
            self._in_order[action_id] = in_order
        return await self._exchange(self._writer, action, action_id)

    async def _exchange(
        self, writer: asyncio.WriteTransport, action: Message, action_id: str
    ) -> Reply:
        reply: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[action_id] = reply
        self._replies.expect(action_id)
        try:
            writer.write(bytes(action))
            async with asyncio.timeout(self._settings.action_timeout):
                return await reply
        except TimeoutError:
            raise AmiUnavailable(
                f"Asterisk did not answer {action.get('Action')} within "
                f"{self._settings.action_timeout:g} s"
            ) from None
        finally:
            self._pending.pop(action_id, None)
            self._in_order.pop(action_id, None)
            self._replies.forget(action_id)

    # --- the connection loop ---------------------------------------------------------

    async def _run(self) -> None:
        delay = _FIRST_RETRY
        while True:
            try:
                await self._session()
                delay = _FIRST_RETRY  # it was up: retry quickly
            except (OSError, AmiProtocolError, AmiUnavailable, asyncio.IncompleteReadError) as exc:
                self._went_down(str(exc) or type(exc).__name__)
            await self._sleep(delay)
            delay = min(delay * 2, self._settings.reconnect_max_delay)

    async def _session(self) -> None:
        settings = self._settings
        address = f"{settings.host}:{settings.port}"
        self.status = f"connecting to {address}"
        decoder = AmiDecoder(keep=self._keep)
        self._replies = Replies()  # a reply begun on an older link never ends
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(settings.connect_timeout):
            writer, link = await loop.create_connection(
                lambda: _Link(decoder, self._dispatch), settings.host, settings.port
            )
        try:
            await self._login(writer)
            self._writer, self._connected = writer, True
            self._up.set()
            self.connections += 1
            self.status = f"connected to {address}"
            log.info("AMI logged in to %s as %s", address, settings.username)
            self._on_connected()
            await link.closed  # until the peer closes or sends garbage
            self._went_down("connection closed by Asterisk")
        finally:
            writer.close()

    async def _login(self, writer: asyncio.WriteTransport) -> None:
        action_id = self.next_action_id()
        secret = self._settings.secret.get_secret_value()
        reply = await self._exchange(
            writer, actions.login(self._settings.username, secret, action_id), action_id
        )
        if not reply.ok:
            message = reply.response.get("Message", "no reason given")
            raise AmiUnavailable(f"login refused: {message}")

    def _dispatch(self, message: Message) -> None:
        live, done = self._replies.feed(message)
        if live is not None:
            self._on_message(live)  # replies too: the engine sees the stream in order
        if done is not None:
            if (in_order := self._in_order.pop(done.action_id, None)) is not None:
                in_order(done.reply)
            future = self._pending.get(done.action_id)
            if future is not None and not future.done():
                future.set_result(done.reply)

    def _went_down(self, reason: str) -> None:
        was_up = self._connected
        self._connected, self._writer = False, None
        self._up.clear()
        self.status = f"disconnected: {reason}"
        for future in self._pending.values():
            if not future.done():
                future.set_exception(AmiUnavailable(self.status))
        if was_up:
            log.warning("AMI link to %s lost: %s", self._name, reason)
            self._on_link_lost(reason)
        else:
            log.warning("AMI %s: %s", self._name, reason)
