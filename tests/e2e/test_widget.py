"""The widget on a CRM page from another origin, in a real browser, SIPp as the phones."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.conftest import Dashboard, artifact

SLOW_AGENT = Path(__file__).parent / "sipp" / "agent_slow_answer.xml"
# Collects what the widget announces, so the test sees every state, however brief.
RECORD_EVENTS = """
window.__calls = [];
document.addEventListener("click2call:call", (e) => window.__calls.push(e.detail));
"""


def mint(dashboard: Dashboard, minutes: float = 5, **agent: str) -> str:
    with dashboard.client() as client:
        reply = client.post("/api/v1/widget-tokens", json={**agent, "minutes": minutes})
    assert reply.status_code == 201, reply.text
    token: str = reply.json()["token"]
    return token


def crm_url(dashboard: Dashboard, token: str, host: str = "localhost") -> str:
    name = dashboard.crm_page(
        "crm.html",
        f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>CRM</title></head>
        <body><h1>Dana Levi</h1>
        <p>Mobile: <a href="tel:050-276-0206">050-276-0206</a></p>
        <p>Hotline: <a href="tel:1900123456">1-900-123-456</a></p>
        <p class="notes">Asked to be called back on 03-641-1111 after lunch.</p>
        <script src="{dashboard.base_url}/widget.js" data-token="{token}"
                data-scan=".notes"></script></body></html>""",
    )
    return f"http://{host}:{dashboard.crm_port}/{name}"


def toast(page: Page) -> tuple[object, object]:
    host = page.locator("[data-click2call=toast]")
    return host.locator(".message"), host.locator(".detail")


def test_a_tel_link_calls_for_the_tokens_agent_and_the_toast_follows(
    page: Page, dashboard: Dashboard
) -> None:
    agent = dashboard.peer(str(SLOW_AGENT), dashboard.pbx_port)
    destination = dashboard.peer("destination_ring_then_answer.xml", dashboard.trunk_port)
    page.set_viewport_size({"width": 720, "height": 300})
    page.add_init_script(RECORD_EVENTS)
    page.goto(crm_url(dashboard, mint(dashboard, extension="200")))
    page.get_by_role("link", name="050-276-0206").click()
    message, _ = toast(page)
    expect(message).to_have_text("Ringing your phone…")
    expect(message).to_have_text("Calling 0502760206…")
    expect(message).to_have_text("Connected to 0502760206")
    page.screenshot(path=artifact("widget-toast.png"))
    expect(message).to_have_text("Call ended", timeout=10_000)
    assert agent.wait(10) == 0 and destination.wait(10) == 0
    invite = next(m for m in agent.received() if m.startswith("INVITE "))
    assert invite.startswith("INVITE sip:200@")
    states = [e["state"] for e in page.evaluate("window.__calls")]
    assert states[0] in ("queued", "agent_dialing", "agent_ringing")
    assert states[-1] == "ended" and "connected" in states


def test_numbers_in_scanned_elements_become_links(page: Page, dashboard: Dashboard) -> None:
    page.goto(crm_url(dashboard, mint(dashboard, extension="200")))
    link = page.locator(".notes a")
    expect(link).to_have_attribute("href", "tel:036411111")
    expect(link).to_have_text("03-641-1111")


def test_a_token_for_200_cannot_call_as_201(page: Page, dashboard: Dashboard) -> None:
    token = mint(dashboard, extension="200")
    page.goto(crm_url(dashboard, token))
    payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["agent"][2] = "201"
    forged_payload = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    replies = page.evaluate(
        """async ([server, token, forged]) => {
            const post = async (tok, body) => {
              const r = await fetch(server + "/api/v1/widget/calls", {method: "POST",
                headers: {"Content-Type": "application/json", "X-Widget-Token": tok},
                body: JSON.stringify(body)});
              return [r.status, (await r.json()).error.message];
            };
            return [await post(token, {destination: "0502760206", extension: "201"}),
                    await post(forged, {destination: "0502760206"})];
        }""",
        [dashboard.base_url, token, f"{forged_payload}.{signature}"],
    )
    assert replies[0][0] == 400 and "extension" in replies[0][1]
    assert replies[1] == [
        401,
        "the widget token's signature does not match: it was altered or forged",
    ]


def test_an_expired_token_is_refused(page: Page, dashboard: Dashboard) -> None:
    token = mint(dashboard, minutes=0.01, extension="200")  # 0.6 s
    page.goto(crm_url(dashboard, token))
    time.sleep(1.5)
    page.get_by_role("link", name="050-276-0206").click()
    message, detail = toast(page)
    expect(message).to_have_text("The call was not placed")
    expect(detail).to_contain_text("the widget token has expired")


def test_a_page_from_an_origin_not_allowed_is_refused(page: Page, dashboard: Dashboard) -> None:
    token = mint(dashboard, extension="200")
    page.goto(crm_url(dashboard, token, host="127.0.0.1"))  # not in allowed_origins
    page.get_by_role("link", name="050-276-0206").click()
    message, detail = toast(page)
    expect(message).to_have_text("Calls cannot be placed from this page")
    expect(detail).to_contain_text("not among the origins")
    # The server refuses it too, whatever the script does: the browser's preflight fails.
    outcome = page.evaluate(
        """async ([server, token]) => {
            try {
              await fetch(server + "/api/v1/widget/calls", {method: "POST",
                headers: {"Content-Type": "application/json", "X-Widget-Token": token},
                body: JSON.stringify({destination: "0502760206"})});
              return "sent";
            } catch (e) { return "blocked"; }
        }""",
        [dashboard.base_url, token],
    )
    assert outcome == "blocked"


def test_a_number_the_policy_refuses_is_explained_in_the_toast(
    page: Page, dashboard: Dashboard
) -> None:
    page.goto(crm_url(dashboard, mint(dashboard, extension="200")))
    page.get_by_role("link", name="1-900-123-456").click()
    message, detail = toast(page)
    expect(message).to_have_text("The call was not placed")
    expect(detail).to_have_text(
        "premium-rate destination 1900123456 is not allowed (allow_premium)"
    )
