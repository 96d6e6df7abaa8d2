"""`click2call demo`: two SIPp phones, the real server, one call, its progress printed live."""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from click2call.demo.sipp import SCENARIOS, SippPeer, free_port
from click2call.settings import (
    ServerSettings,
    Settings,
    SipStackSettings,
    TenantAuth,
    TenantSettings,
    TenantSip,
)
from click2call.store import Change

_TIMEOUT = 30.0


def run_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="click2call-demo-") as tmp:
        workdir = Path(tmp)
        agent = SippPeer(SCENARIOS / "agent_answer.xml", free_port(), workdir)
        destination = SippPeer(SCENARIOS / "destination_hangup.xml", free_port(), workdir)
        settings = Settings(
            server=ServerSettings(
                port=free_port(socket.SOCK_STREAM),
                database=f"sqlite:///{workdir / 'demo.db'}",
                log_level="warning",
            ),
            sip=SipStackSettings(port=free_port(), options_interval=0),
            tenants=[
                TenantSettings(
                    name="default",
                    default_outbound_cid="036411111",
                    sip=TenantSip(pbx=agent.address, trunk=destination.address),
                    # The demo's phones are on loopback; a real tenant uses API keys.
                    auth=TenantAuth(allow_unauthenticated=True),
                )
            ],
        )
        print("click2call demo: two SIPp phones on loopback")
        print(f"  agent phone (extension 200)  SIPp on {agent.address}, answers")
        print(f"  destination (via the trunk)  SIPp on {destination.address}, answers, talks 1 s")
        try:
            agent.start()
            destination.start()
            ok = asyncio.run(_call(settings))
        finally:
            agent.stop()
            destination.stop()
        return 0 if ok else 1


async def _call(settings: Settings) -> bool:
    import uvicorn

    from click2call.api import create_app
    from click2call.api.connections import guarded_protocol
    from click2call.runtime import Runtime

    runtime = Runtime(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(runtime),
            host=settings.server.host,
            port=settings.server.port,
            log_level="warning",
            http=guarded_protocol(settings.server),  # the same HTTP bounds as `serve`
            ws="none",  # no upgrades: a handed-over transport would keep its per-address count
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            return False
        await asyncio.sleep(0.02)

    ended = asyncio.Event()
    started = time.monotonic()

    def show(change: Change) -> None:
        call = change.call
        detail = f"  ({call.result}: {call.cause})" if call.result else ""
        print(f"  +{time.monotonic() - started:6.3f}s  {call.state}{detail}")
        if call.result:
            ended.set()

    runtime.tracking.subscribe(show)
    base = f"http://{settings.server.host}:{settings.server.port}"
    url = f"{base}/web/dial.php?extension=200&destination=0502760206&tech=sip&foreignid=demo"
    print(f"\n→ GET {url}")
    reply = await asyncio.to_thread(_get, url)
    print("← " + reply.strip().replace("\n", "\n← "))
    try:
        async with asyncio.timeout(_TIMEOUT):
            await ended.wait()
        call_id = reply.split("unique: ")[1].split()[0]
        print(f"\n→ GET {base}/api/v1/calls/{call_id}")
        print("← " + await asyncio.to_thread(_get, f"{base}/api/v1/calls/{call_id}"))
        return True
    except TimeoutError:
        print(f"the call did not end within {_TIMEOUT:g} s", file=sys.stderr)
        return False
    finally:
        server.should_exit = True
        await serving


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback URL we built)
        text: str = response.read().decode()
        return text
