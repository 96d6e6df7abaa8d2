"""Malformed input on every field of every endpoint: 400 naming the field, nothing dialled."""

from __future__ import annotations

import socket

import pytest

from tests.integration.conftest import Server, assert_nothing_received

DIAL = {"extension": "200", "destination": "0502760206", "tech": "sip"}
EXTERNAL = {"client": "voipe16", "phone": "0502760206", "destination": "0502760206"}

BAD_VALUES = {
    "extension": ["20\r\n0", "200\r\nX-Injected: 1", "2\x000", "abc", "2" * 17, "٢٠٠"],
    "destination": ["050\r\n2760206", "05027602O6", "0" * 41, "0502760206\x00", "+"],
    "phone": ["050\r\n2760206", "phone", "1" * 41],
    "tech": ["iax2", "sip\r\n", "SIP/200"],
    "outboundcid": ["03641\r\n1111", "abc", "1" * 21],
    "foreignid": ["12\r\n3", "a b", "x" * 65, "id\x00", "é"],
    "client": ["voipe16\r\n", "a/b", "x" * 65],
}
MISSING = {
    "/web/dial.php": ["extension", "destination"],
    "/voipe/dial_external.php": list(EXTERNAL),
}


def _cases() -> list[tuple[str, dict[str, str], str]]:
    cases = []
    for field, values in BAD_VALUES.items():
        for value in values:
            if field in ("phone", "client"):
                cases.append(("/voipe/dial_external.php", {**EXTERNAL, field: value}, field))
            else:
                cases.append(("/web/dial.php", {**DIAL, field: value}, field))
                if field != "tech" and field != "extension":
                    cases.append(("/voipe/dial_external.php", {**EXTERNAL, field: value}, field))
    for path, fields in MISSING.items():
        base = DIAL if path == "/web/dial.php" else EXTERNAL
        for field in fields:
            cases.append((path, {k: v for k, v in base.items() if k != field}, field))
    return cases


def _call_count(server: Server) -> int:
    with server.client() as client:
        return len(client.get("/api/v1/calls", params={"limit": 1000}).json()["calls"])


@pytest.mark.parametrize(("path", "params", "field"), _cases())
def test_malformed_input_is_refused_naming_the_field(
    server: Server,
    silent_peers: list[socket.socket],
    path: str,
    params: dict[str, str],
    field: str,
) -> None:
    before = _call_count(server)
    with server.client() as client:
        reply = client.get(path, params=params)
    assert reply.status_code == 400
    if path == "/web/dial.php":
        assert reply.headers["content-type"].startswith("text/plain")
        lines = reply.text.split("\n")
        assert lines[:2] == ["response: false", "unique: "]
        assert lines[2].startswith(f"error: invalid {field}: ")
    else:
        body = reply.json()
        assert body["status"] == "error"
        assert body["error"].startswith(f"invalid {field}: ")
        assert "uniqueid" not in body
    assert "\r" not in reply.text
    assert _call_count(server) == before
    assert_nothing_received(silent_peers)


def test_a_field_given_twice_is_refused(server: Server, silent_peers: list[socket.socket]) -> None:
    with server.client() as client:
        reply = client.get("/web/dial.php?extension=200&extension=201&destination=0502760206")
    assert reply.status_code == 400
    assert reply.text.endswith("error: invalid extension: given more than once\n")
    assert_nothing_received(silent_peers)


def test_unknown_client_is_an_error_not_a_crash(
    server: Server, silent_peers: list[socket.socket]
) -> None:
    with server.client() as client:
        reply = client.get("/voipe/dial_external.php", params={**EXTERNAL, "client": "nobody"})
    assert reply.status_code == 404
    assert reply.text == '{"status":"error","error":"unknown client \'nobody\'"}'
    assert_nothing_received(silent_peers)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"destination": "0502760206"}, "body"),  # neither extension nor phone
        ({"extension": "200", "phone": "0502760206", "destination": "0502760206"}, "body"),
        ({"extension": "20\r\n0", "destination": "0502760206"}, "extension"),
        ({"extension": "200", "destination": "0502760206", "tech": "iax2"}, "tech"),
        ({"extension": "200", "destination": "0502760206", "foreignid": "a\nb"}, "foreignid"),
        ({"extension": "200", "destination": "0502760206", "unknown": "1"}, "unknown"),
        ({"extension": "200"}, "destination"),
        ({"extension": "200", "destination": "0502760206", "tenant": "nobody"}, None),
    ],
)
def test_v1_refuses_bad_orders(
    server: Server,
    silent_peers: list[socket.socket],
    body: dict[str, str],
    field: str | None,
) -> None:
    with server.client() as client:
        reply = client.post("/api/v1/calls", json=body)
    error = reply.json()["error"]
    if field is None:
        assert reply.status_code == 404
        assert error["id"] == "unknown_tenant"
    else:
        assert reply.status_code == 400
        assert error["id"] == "invalid_input"
        assert error["field"] == field
    assert_nothing_received(silent_peers)


def test_unknown_call_is_404(server: Server) -> None:
    with server.client() as client:
        for key in ("999999", "1.999999"):
            reply = client.get(f"/api/v1/calls/{key}")
            assert reply.status_code == 404
            assert reply.json()["error"]["id"] == "call_not_found"


def test_dial_php_accepts_a_posted_form(server: Server) -> None:
    agent = server.peer("agent_busy.xml", server.pbx_port)
    with server.client() as client:
        reply = client.post("/web/dial.php", data={**DIAL, "foreignid": "posted"})
    assert reply.status_code == 200
    assert reply.text.startswith("response: true\nunique: ")
    call_id = reply.text.split("unique: ")[1].strip()
    assert agent.wait(10) == 0
    call = server.wait_for(call_id)
    assert (call["result"], call["foreignid"]) == ("agent_busy", "posted")


def test_calls_are_found_by_foreignid(server: Server) -> None:
    agent = server.peer("agent_busy.xml", server.pbx_port)
    with server.client() as client:
        reply = client.get("/web/dial.php", params={**DIAL, "foreignid": "lookup-me"})
        call_id = int(reply.text.split("unique: ")[1])
        assert agent.wait(10) == 0
        found = client.get("/api/v1/calls", params={"foreignid": "lookup-me"}).json()["calls"]
        assert [c["id"] for c in found] == [call_id]
        by_uniqueid = client.get(f"/api/v1/calls/{found[0]['uniqueid']}").json()
        assert by_uniqueid["id"] == call_id


def test_openapi_documents_the_api(server: Server) -> None:
    with server.client() as client:
        schema = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
    assert {"/api/v1/calls", "/api/v1/calls/{ref}", "/web/dial.php"} <= set(schema["paths"])
