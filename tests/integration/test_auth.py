"""Who may place and read calls: keys, signed links, allowed addresses, and nobody else."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import text

from click2call.auth import sign
from click2call.store.database import connect
from tests.integration.conftest import Server, assert_nothing_received

DIAL = {"extension": "200", "destination": "0502760206", "tech": "sip"}
SECRET = "link-secret-of-secure"


def cli(server: Server, *args: str) -> str:
    config = str(server.workdir / "click2call.toml")
    done = subprocess.run(
        [sys.executable, "-m", "click2call", "keys", "--config", config, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def new_key(server: Server, tenant: str = "secure") -> tuple[int, str]:
    out = cli(server, "create", "--tenant", tenant, "--label", "tests").splitlines()
    return int(out[0].split()[2]), out[1]


def query(server: Server, sql: str, **values: object) -> list[tuple[object, ...]]:
    """Rows straight from the server's database, SQLite or PostgreSQL."""
    engine = connect(server.database)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), values)]
    finally:
        engine.dispose()


def audit_rows(server: Server, limit: int = 5) -> list[tuple[object, ...]]:
    return query(
        server,
        "SELECT tenant, key_id, client_ip, endpoint, allowed, reason FROM audit_log"
        " ORDER BY id DESC LIMIT :limit",
        limit=limit,
    )


def audit_count(server: Server, at_least: int = 0, timeout: float = 5) -> int:
    """Rows in the audit trail, once there are `at_least` (the server writes them off its
    event loop, a few milliseconds after the reply)."""
    deadline = time.monotonic() + timeout
    while True:
        count = len(query(server, "SELECT id FROM audit_log"))
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.02)


def placed(reply_text: str) -> int:
    assert reply_text.startswith("response: true\n"), reply_text
    return int(reply_text.split("unique: ")[1])


def test_a_tenant_without_credentials_refuses_calls(
    server: Server, silent_peers: list[socket.socket]
) -> None:
    with server.client() as client:
        for tenant in ("secure", "closed"):
            reply = client.get("/web/dial.php", params={**DIAL, "tenant": tenant})
            assert reply.status_code == 401
            assert reply.text.startswith(
                "response: false\nunique: \nerror: authentication required"
            )
    assert_nothing_received(silent_peers)
    audit_count(server, at_least=2)
    tenant, key_id, ip, endpoint, allowed, reason = audit_rows(server)[0]
    assert (tenant, key_id, ip, endpoint, allowed) == (None, None, "127.0.0.1", "dial.php", 0)
    assert str(reason).startswith("authentication required")
    log = (server.workdir / "server.log").read_text()
    assert "tenant closed refuses every call" in log


@pytest.mark.parametrize("how", ["header", "bearer", "query"])
def test_an_api_key_places_calls_for_its_tenant(server: Server, how: str) -> None:
    key_id, key = new_key(server)
    agent = server.peer("agent_busy.xml", server.pbx_port)
    headers = {"header": {"X-API-Key": key}, "bearer": {"Authorization": f"Bearer {key}"}}
    params = {**DIAL, "key": key} if how == "query" else DIAL
    with server.client() as client:
        reply = client.get("/web/dial.php", params=params, headers=headers.get(how, {}))
        call_id = placed(reply.text)
        assert agent.wait(10) == 0
        call = client.get(f"/api/v1/calls/{call_id}", headers={"X-API-Key": key}).json()
    assert call["tenant"] == "secure"  # the key chose the tenant: one link per customer
    audit_count(server, at_least=1)
    assert audit_rows(server)[0][:5] == ("secure", key_id, "127.0.0.1", "dial.php", 1)
    log = (server.workdir / "server.log").read_text()
    assert key not in log
    if how == "query":
        assert "key=***" in log


def test_keys_are_stored_hashed_and_revocation_works(server: Server) -> None:
    key_id, key = new_key(server)
    [stored] = query(server, "SELECT * FROM api_keys WHERE id = :id", id=key_id)
    assert key not in " ".join(map(str, stored))
    assert f"{key_id}  secure" in cli(server, "list", "--tenant", "secure")
    cli(server, "revoke", str(key_id))
    with server.client() as client:
        for bad in (key, "c2c_not-a-key", "bad key\r\n"):
            reply = client.get("/web/dial.php", params=DIAL, headers={"X-API-Key": bad.strip()})
            assert reply.status_code == 401
            assert reply.text.endswith("error: invalid or revoked API key\n")
            assert bad.strip() not in reply.text


def test_a_key_cannot_act_for_another_tenant(server: Server) -> None:
    _, key = new_key(server)
    agent = server.peer("agent_busy.xml", server.pbx_port)
    with server.client() as client:
        default_call_id = placed(client.get("/web/dial.php", params=DIAL).text)  # open tenant
        assert agent.wait(10) == 0
        reply = client.get(
            "/voipe/dial_external.php",
            params={"client": "voipe16", "phone": "0502760206", "destination": "0502760206"},
            headers={"X-API-Key": key},
        )
        assert reply.status_code == 403
        assert reply.json()["error"] == "this API key does not belong to client 'voipe16'"
        open_call = client.post(
            "/api/v1/calls", json={"extension": "200", "destination": "0502760206", "tenant": "x"}
        )
        assert open_call.status_code == 404
        mine = client.get("/api/v1/calls", headers={"X-API-Key": key}).json()["calls"]
        hidden = client.get(f"/api/v1/calls/{default_call_id}", headers={"X-API-Key": key})
        visible = client.get(f"/api/v1/calls/{default_call_id}")  # its open tenant's rules
    assert {c["tenant"] for c in mine} <= {"secure"}
    assert hidden.status_code == 404
    assert visible.json()["tenant"] == "default"


def _signed(params: dict[str, str], expires: float) -> dict[str, str]:
    query = {**params, "tenant": "secure", "exp": str(int(expires))}
    return {**query, "sig": sign(query.items(), SECRET)}


def test_signed_links(server: Server, silent_peers: list[socket.socket]) -> None:
    good = _signed(DIAL, time.time() + 300)
    tampered = {**good, "destination": "0509999999"}
    expired = _signed(DIAL, time.time() - 1)
    forged = {**good, "sig": "0" * 64}
    with server.client() as client:
        for params, why in (
            (tampered, "signature does not match"),
            (forged, "signature does not match"),
            (expired, "the link has expired"),
            ({**DIAL, "tenant": "secure", "exp": good["exp"]}, "needs both exp and sig"),
        ):
            reply = client.get(f"/web/dial.php?{urlencode(params)}")
            assert reply.status_code == 401, params
            assert why in reply.text
            assert good["sig"] not in reply.text
    with server.client() as client:  # nothing unsigned may ride along in a form
        smuggled = client.post(f"/web/dial.php?{urlencode(good)}", data={"outboundcid": "1"})
    assert smuggled.status_code == 401
    assert "signed query" in smuggled.text
    assert_nothing_received(silent_peers)
    for sock in silent_peers:
        sock.close()
    agent = server.peer("agent_busy.xml", server.pbx_port)
    with server.client() as client:
        reply = client.get(f"/web/dial.php?{urlencode(good)}")
    placed(reply.text)
    assert agent.wait(10) == 0
    assert "sig=***" in (server.workdir / "server.log").read_text()


def test_a_signed_link_opens_nothing_but_its_own_link(
    server: Server, silent_peers: list[socket.socket]
) -> None:
    # The signature covers the query, not the path: replayed elsewhere it must not read the
    # tenant's history, follow its feed or hang up its calls.
    query = urlencode(_signed(DIAL, time.time() + 300))
    with server.client() as client:
        replies = [
            client.get(f"/api/v1/calls.csv?{query}"),
            client.get(f"/api/v1/calls?{query}"),
            client.get(f"/api/v1/calls/1/events?{query}"),
            client.post(f"/api/v1/calls/1/hangup?{query}"),
        ]
    for reply in replies:
        assert reply.status_code in (403, 404), reply.text
        if reply.status_code == 403:
            assert "use an API key" in reply.text
    assert replies[0].status_code == 403 and replies[1].status_code == 403
    assert_nothing_received(silent_peers)


def test_allowed_addresses(server: Server) -> None:
    agent = server.peer("agent_busy.xml", server.pbx_port)
    with server.client() as client:
        office = client.get("/web/dial.php", params={**DIAL, "tenant": "office"})
        secure = client.get("/web/dial.php", params={**DIAL, "tenant": "secure"})
    placed(office.text)  # 127.0.0.1 is inside 127.0.0.0/8
    assert secure.status_code == 401  # 127.0.0.1 is not inside 192.0.2.0/24
    assert agent.wait(10) == 0


def test_refused_reads_are_audited_and_allowed_reads_are_not(server: Server) -> None:
    with server.client() as client:
        before = audit_count(server)
        assert client.get("/api/v1/calls", params={"tenant": "closed"}).status_code == 401
        audit_count(server, at_least=before + 1)
        refused = audit_rows(server)[0]
        assert client.get("/api/v1/calls").status_code == 200  # the open default tenant
        time.sleep(0.3)  # what the allowed read would have written is written by now
        after = audit_count(server)
    assert refused[3:5] == ("v1.list", 0)
    assert after == before + 1  # the refusal only


def test_health_tells_each_tenant_s_details_only_to_who_may_read_it(server: Server) -> None:
    _, key = new_key(server, "secure")
    with server.client() as client:
        anonymous = client.get("/api/v1/health").json()["tenants"]
        with_key = client.get("/api/v1/health", headers={"X-API-Key": key}).json()["tenants"]
    # An open tenant shows itself to anyone; a closed one only its up/down state.
    assert anonymous["default"]["peers"] and "127.0.0.1" in str(anonymous["default"])
    assert anonymous["secure"]["peers"] == [] and anonymous["secure"]["detail"] in ("ok", "down")
    assert with_key["secure"]["peers"]
    assert with_key["default"]["peers"] == []  # a key reads its own tenant only
