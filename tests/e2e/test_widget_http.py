"""The widget's HTTP contract without a browser: minting rules, CORS, who may read what."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx

from tests.e2e.conftest import Dashboard, cli, create_key

ALLOWED = "http://localhost:{port}"


def origin(dashboard: Dashboard) -> str:
    return ALLOWED.format(port=dashboard.crm_port)


def mint(dashboard: Dashboard, key: str | None = None, **body: object) -> httpx.Response:
    with dashboard.client(key) as client:
        return client.post("/api/v1/widget-tokens", json={"extension": "200", **body})


def widget_post(
    dashboard: Dashboard, token: str | None, page: str, **body: object
) -> httpx.Response:
    headers = {"Origin": page} | ({"X-Widget-Token": token} if token else {})
    with httpx.Client(base_url=dashboard.base_url, timeout=10) as client:
        return client.post("/api/v1/widget/calls", json=body, headers=headers)


def test_only_an_api_key_of_a_tenant_with_allowed_origins_mints(dashboard: Dashboard) -> None:
    with httpx.Client(base_url=dashboard.base_url) as anonymous:
        assert anonymous.post("/api/v1/widget-tokens", json={"extension": "200"}).status_code == 401
    refused = mint(dashboard, dashboard.other_key)
    assert refused.status_code == 403
    assert "allows the widget on no page" in refused.json()["error"]["message"]
    wrong = mint(dashboard, origins=["https://evil.example"])
    assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "origins"
    both = mint(dashboard, phone="0502760206")
    assert both.status_code == 400
    bad = mint(dashboard, extension="20\r\n0")
    assert bad.status_code == 400


def test_a_token_lives_no_longer_than_the_tenant_allows(dashboard: Dashboard) -> None:
    before = datetime.now().astimezone()
    reply = mint(dashboard, minutes=10_000)
    assert reply.status_code == 201
    body = reply.json()
    expires = datetime.fromisoformat(body["expires_at"])
    assert expires <= before + timedelta(minutes=60, seconds=5)
    assert body["origins"] == [origin(dashboard)]
    assert body["agent"] == {"kind": "extension", "tech": "sip", "number": "200"}


def test_preflight_is_answered_only_for_allowed_origins(dashboard: Dashboard) -> None:
    with httpx.Client(base_url=dashboard.base_url) as client:
        headers = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-widget-token",
        }
        good = client.options(
            "/api/v1/widget/calls", headers=headers | {"Origin": origin(dashboard)}
        )
        assert good.status_code == 204
        assert good.headers["access-control-allow-origin"] == origin(dashboard)
        assert "X-Widget-Token" in good.headers["access-control-allow-headers"]
        evil = client.options(
            "/api/v1/widget/calls", headers=headers | {"Origin": "https://evil.example"}
        )
        assert evil.status_code == 403
        assert "access-control-allow-origin" not in evil.headers


def test_the_server_refuses_other_origins_even_without_a_browser(dashboard: Dashboard) -> None:
    token = mint(dashboard).json()["token"]
    for page in ("https://evil.example", f"http://127.0.0.1:{dashboard.crm_port}"):
        reply = widget_post(dashboard, token, page, destination="0502760206")
        assert reply.status_code == 403
        assert "may not use this widget token" in reply.json()["error"]["message"]
    missing = widget_post(dashboard, None, origin(dashboard), destination="0502760206")
    assert missing.status_code == 401
    assert missing.headers["access-control-allow-origin"] == origin(dashboard)


def test_a_token_reads_only_its_own_calls_and_dies_with_its_key(dashboard: Dashboard) -> None:
    agent, destination = dashboard.phones("agent_answer.xml", "destination_hangup.xml")
    first = mint(dashboard).json()["token"]
    second = mint(dashboard).json()["token"]
    placed = widget_post(dashboard, first, origin(dashboard), destination="0502760206")
    assert placed.status_code == 201, placed.text
    call_id = placed.json()["id"]
    assert placed.json()["agent"]["number"] == "200"
    with httpx.Client(base_url=dashboard.base_url, headers={"Origin": origin(dashboard)}) as page:
        own = page.get(f"/api/v1/widget/calls/{call_id}", headers={"X-Widget-Token": first})
        assert own.status_code == 200 and own.json()["id"] == call_id
        other = page.get(f"/api/v1/widget/calls/{call_id}", headers={"X-Widget-Token": second})
        assert other.status_code == 404
    assert agent.wait(10) == 0 and destination.wait(10) == 0


def test_revoking_the_minting_key_revokes_its_tokens(dashboard: Dashboard) -> None:
    config = dashboard.workdir / "click2call.toml"
    key = create_key(config, "--tenant", "default", "--label", "short-lived")
    token = mint(dashboard, key).json()["token"]
    with dashboard.client(key) as client:
        listing = client.get("/api/v1/calls")
    assert listing.status_code == 200
    key_id = next(
        line.split()[0]
        for line in cli(config, "keys", "list").splitlines()
        if "short-lived" in line
    )
    cli(config, "keys", "revoke", key_id)
    reply = widget_post(dashboard, token, origin(dashboard), destination="0502760206")
    assert reply.status_code == 401
    assert "revoked" in reply.json()["error"]["message"]


def test_the_session_cookie_reads_but_never_acts(dashboard: Dashboard) -> None:
    with httpx.Client(base_url=dashboard.base_url, timeout=10) as browser:
        signin = browser.get("/ui/signin")
        csrf = signin.text.split('name="csrf" value="')[1].split('"')[0]
        done = browser.post("/ui/signin", data={"key": dashboard.admin_key, "csrf": csrf})
        assert done.status_code == 303
        assert browser.get("/api/v1/calls").status_code == 200  # reads with the cookie
        acted = browser.post(
            "/api/v1/calls", json={"extension": "200", "destination": "0502760206"}
        )
        assert acted.status_code == 401  # but a POST needs the key itself
        stale = browser.post("/ui/calls/1/hangup", data={"csrf": "wrong"})
        assert stale.status_code == 403
    with dashboard.client() as client:  # and an API key is no session for the forms
        assert client.post("/ui/keys", data={"label": "x"}).status_code == 401
