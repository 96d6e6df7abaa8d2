"""Every refusal answers in the endpoint's own shape and leaves an audit row saying why."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass

import httpx
import pytest

from tests.integration.conftest import Server, assert_nothing_received
from tests.integration.test_auth import audit_count, audit_rows

FORM = "application/x-www-form-urlencoded"
DIAL = "extension=200&destination=0502760206"
EXTERNAL = "client=voipe16&phone=0502760206&destination=0502760206"


@dataclass
class Case:
    method: str
    path: str
    status: int
    reason: str  # in the reply's error and in the audit row
    content: bytes = b""
    content_type: str | None = None
    query: str = ""


def _multipart(field: str, size: int) -> tuple[bytes, str]:
    body = (
        f'--b\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n'.encode()
        + b"1" * size
        + b"\r\n--b--\r\n"
    )
    return body, "multipart/form-data; boundary=b"


BIG_FIELD, BIG_FIELD_TYPE = _multipart("destination", 10 * 1024 * 1024)
CASES = {
    "junk multipart": lambda path: Case(
        "POST", path, 400, "invalid body: Missing boundary", b"junk", "multipart/form-data"
    ),
    "too many form fields": lambda path: Case(
        "POST", path, 400, "invalid body: Too many fields", b"&".join([b"x=1"] * 2000), FORM
    ),
    "a 10 MB field": lambda path: Case(
        "POST", path, 413, "request body over 65536 bytes", BIG_FIELD, BIG_FIELD_TYPE
    ),
    "wrong method": lambda path: Case("PUT", path, 405, "Method Not Allowed", b"x=1", FORM),
    "thousands of unknown parameters": lambda path: Case(
        "GET", path, 400, "invalid parameters: 6000 unknown", query="&" + "&".join(["u"] * 6000)
    ),
}


def _send(server: Server, case: Case, base_query: str) -> httpx.Response:
    headers = {"Content-Type": case.content_type} if case.content_type else {}
    with server.client() as client:
        return client.request(
            case.method,
            f"{case.path}?{base_query}{case.query}",
            content=case.content,
            headers=headers,
        )


@pytest.mark.parametrize("name", list(CASES))
def test_dial_php_refuses_in_its_own_shape(
    server: Server, silent_peers: list[socket.socket], name: str
) -> None:
    case = CASES[name]("/web/dial.php")
    before = audit_count(server)
    reply = _send(server, case, DIAL)
    assert reply.status_code == case.status
    assert reply.headers["content-type"].startswith("text/plain")
    lines = reply.text.split("\n")
    assert lines[:2] == ["response: false", "unique: "]
    assert lines[2].startswith(f"error: {case.reason}")
    _assert_audited_refusal(server, before, "dial.php", case.reason)
    assert_nothing_received(silent_peers)


@pytest.mark.parametrize("name", list(CASES))
def test_dial_external_php_refuses_in_its_own_shape(
    server: Server, silent_peers: list[socket.socket], name: str
) -> None:
    case = CASES[name]("/voipe/dial_external.php")
    before = audit_count(server)
    reply = _send(server, case, EXTERNAL)
    assert reply.status_code == case.status
    assert reply.headers["content-type"] == "application/json"
    body = json.loads(reply.text)
    assert body["status"] == "error"
    assert body["error"].startswith(case.reason)
    _assert_audited_refusal(server, before, "dial_external.php", case.reason)
    assert_nothing_received(silent_peers)


@pytest.mark.parametrize(
    ("method", "content", "status", "reason"),
    [
        ("POST", b'{"extension": "200", "destination": ', 400, "invalid body: Invalid JSON"),
        ("POST", b"[]", 400, "invalid body: Input should be an object"),
        ("POST", b"x" * 70000, 413, "request body over 65536 bytes"),
        ("PUT", b"{}", 405, "Method Not Allowed"),
    ],
)
def test_v1_refuses_in_its_own_shape(
    server: Server, method: str, content: bytes, status: int, reason: str
) -> None:
    before = audit_count(server)
    with server.client() as client:
        reply = client.request(
            method, "/api/v1/calls", content=content, headers={"Content-Type": "application/json"}
        )
    assert reply.status_code == status
    assert reply.json()["error"]["message"].startswith(reason)
    _assert_audited_refusal(server, before, "v1.calls", reason)


def test_a_few_unknown_parameters_are_ignored(server: Server) -> None:
    unknown = "&".join(f"crm{n}=1" for n in range(20))
    with server.client() as client:
        reply = client.get(f"/web/dial.php?{DIAL}&tenant=closed&{unknown}")
    assert reply.status_code == 401  # went on to authentication: the 20 were ignored


def _assert_audited_refusal(server: Server, before: int, endpoint: str, reason: str) -> None:
    assert audit_count(server, at_least=before + 1) == before + 1
    _tenant, _key, ip, audited_endpoint, allowed, audited_reason = audit_rows(server, 1)[0]
    assert (ip, audited_endpoint, allowed) == ("127.0.0.1", endpoint, 0)
    assert reason in str(audited_reason)
