"""The dashboard in a real browser: sign-in, the live table, hang-up, sign-out, CSRF."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import Dashboard, artifact, sign_in

KEY_PATTERN = re.compile(r"^c2c_[A-Za-z0-9_-]{20,}$")


def dial(dashboard: Dashboard, extension: str = "200", foreignid: str = "crm-1") -> int:
    with dashboard.client() as client:
        reply = client.get(
            "/web/dial.php",
            params={"extension": extension, "destination": "0502760206", "foreignid": foreignid},
        )
    assert reply.status_code == 200, reply.text
    return int(reply.text.split("unique:")[1].split()[0])


def row(page: Page, call_id: int) -> Locator:
    return page.locator(f'#live-calls tr[data-call-id="{call_id}"]')


def test_a_wrong_key_is_refused_with_a_clear_message(page: Page, dashboard: Dashboard) -> None:
    page.goto(f"{dashboard.base_url}/ui/signin")
    page.get_by_label("API key").fill("c2c_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That API key is not valid or has been revoked.")
    page.goto(f"{dashboard.base_url}/ui/live")
    expect(page).to_have_url(f"{dashboard.base_url}/ui/signin")


def test_the_session_cookie_is_out_of_reach_of_scripts(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard)
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "c2c_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "c2c_session" not in page.evaluate("document.cookie")
    assert dashboard.admin_key not in page.content()


def test_a_dial_php_call_appears_live_and_ends_with_its_result(
    page: Page, dashboard: Dashboard
) -> None:
    sign_in(page, dashboard)
    expect(page.locator("#feed-status")).to_have_text("Live: updated from the event feed.")
    agent, destination = dashboard.phones("agent_answer.xml", "destination_hangup.xml")
    sent = time.monotonic()
    call_id = dial(dashboard)
    live = row(page, call_id)
    expect(live).to_be_visible(timeout=5_000)
    print(f"\ncall visible on the live page {time.monotonic() - sent:.3f} s after dial.php")
    expect(live).to_contain_text("crm-1")
    expect(live).to_contain_text("200 (SIP)")
    expect(live.locator(".col-1")).to_have_text("connected")
    page.screenshot(path=artifact("live-calls.png"))
    expect(live.locator(".col-1")).to_have_text("ended: completed", timeout=10_000)
    expect(live.get_by_role("button", name="Hang up")).to_have_count(0)
    assert agent.wait(10) == 0 and destination.wait(10) == 0


def test_hanging_up_from_the_page_ends_both_legs(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard)
    agent, destination = dashboard.phones("agent_answer.xml", "destination_answer.xml")
    call_id = dial(dashboard, foreignid="hangup-me")
    live = row(page, call_id)
    expect(live.locator(".col-1")).to_have_text("connected")
    button = live.get_by_role("button", name=f"Hang up call {call_id}")
    button.focus()
    page.keyboard.press("Enter")  # keyboard only
    expect(live.locator(".col-1")).to_have_text("ended: completed")
    assert agent.wait(10) == 0 and destination.wait(10) == 0
    assert any(m.startswith("BYE ") for m in agent.received())
    assert any(m.startswith("BYE ") for m in destination.received())
    assert dashboard.call(call_id)["cause"] == "hung up by the API"
    # The call's own page: its timeline, and the webhook delivery of its end.
    live.get_by_role("link", name=f"#{call_id}").click()
    expect(page.locator("#timeline li")).to_have_count(8)  # queued … connected, ended
    expect(page.locator("#timeline")).to_contain_text("ended: completed (hung up by the API)")
    delivery = page.locator("#deliveries tbody tr")
    expect(delivery).to_contain_text("/hooks/click2call")
    expect(delivery).to_contain_text("call.ended")
    expect(delivery).to_contain_text("501")


def test_hanging_up_a_ringing_call_cancels_it(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard)
    agent = dashboard.peer("agent_noanswer.xml", dashboard.pbx_port)
    call_id = dial(dashboard, foreignid="cancel-me")
    live = row(page, call_id)
    expect(live.locator(".col-1")).to_have_text("agent's phone ringing")
    live.get_by_role("button", name=f"Hang up call {call_id}").click()
    expect(live.locator(".col-1")).to_have_text("ended: canceled")
    assert agent.wait(10) == 0
    assert any(m.startswith("CANCEL ") for m in agent.received())


def test_a_cross_site_form_post_to_hang_up_is_refused(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard)
    agent, destination = dashboard.phones("agent_answer.xml", "destination_answer.xml")
    call_id = dial(dashboard, foreignid="csrf-target")
    assert dashboard.wait_for(call_id, "connected")["state"] == "connected"
    # Another origin on the same host (same site: the SameSite cookie still rides along),
    # so only the CSRF check stands between this page and the call.
    attack = dashboard.crm_page(
        "attack.html",
        f"""<!doctype html><title>win a prize</title>
        <form id="f" method="post" action="{dashboard.base_url}/ui/calls/{call_id}/hangup">
        <input type="hidden" name="csrf" value="guessed"></form>
        <script>document.getElementById("f").submit()</script>""",
    )
    with page.expect_response(f"**/ui/calls/{call_id}/hangup") as response:
        page.goto(f"http://127.0.0.1:{dashboard.crm_port}/{attack}")
    assert response.value.status == 403
    expect(page.locator("body")).to_contain_text("refused")
    time.sleep(0.5)
    assert dashboard.call(call_id)["state"] == "connected"
    assert not any(m.startswith("BYE ") for m in agent.received())
    with dashboard.client() as client:
        assert client.post(f"/api/v1/calls/{call_id}/hangup").status_code == 202
    assert agent.wait(10) == 0 and destination.wait(10) == 0


def test_sign_out_ends_the_session(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard)
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "c2c_session"]
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/signin")
    page.goto(f"{dashboard.base_url}/ui/live")
    expect(page).to_have_url(f"{dashboard.base_url}/ui/signin")
    # The old cookie, replayed, opens nothing: the session ended on the server too.
    page.context.add_cookies([cookie])
    assert page.request.get(f"{dashboard.base_url}/api/v1/calls").status == 401
    page.goto(f"{dashboard.base_url}/ui/live")
    expect(page).to_have_url(f"{dashboard.base_url}/ui/signin")


def test_place_a_call_form_shows_live_progress(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard)
    agent, destination = dashboard.phones("agent_answer.xml", "destination_hangup.xml")
    page.get_by_role("link", name="Place a call").click()
    page.get_by_label("Extension", exact=True).fill("200")
    page.get_by_label("Destination", exact=True).fill("0502760206")
    page.get_by_label("Foreign id (optional)").fill("from-form")
    page.get_by_role("button", name="Call").click()
    progress = page.locator("#place-progress")
    expect(progress).to_contain_text("connected")
    expect(progress).to_contain_text("ended: completed", timeout=10_000)
    assert agent.wait(10) == 0 and destination.wait(10) == 0


def test_a_refused_number_is_explained_on_the_place_form(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard)
    page.goto(f"{dashboard.base_url}/ui/place")
    page.get_by_label("Extension", exact=True).fill("200")
    page.get_by_label("Destination", exact=True).fill("1900123456")
    page.get_by_role("button", name="Call").click()
    expect(page.locator("#place-status")).to_contain_text("premium-rate destination")


def test_keys_are_managed_by_admin_keys_only(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, dashboard.user_key)
    expect(page.get_by_role("link", name="Keys")).to_have_count(0)
    page.goto(f"{dashboard.base_url}/ui/keys")
    expect(page.get_by_role("alert")).to_contain_text("Only admin keys")
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, dashboard)
    page.get_by_role("link", name="Keys").click()
    page.get_by_label("Label (who or what uses it)").fill("made in the browser")
    page.get_by_role("button", name="Create key").click()
    new_key = page.locator("#new-key-value")
    expect(new_key).to_have_text(KEY_PATTERN)
    key = new_key.inner_text()
    with dashboard.client(key) as client:
        assert client.get("/api/v1/calls").status_code == 200
    made = page.locator("#keys tr", has_text="made in the browser")
    made.get_by_role("button", name="Revoke").click()
    expect(made).to_contain_text("revoked")
    with dashboard.client(key) as client:
        assert client.get("/api/v1/calls").status_code == 401


def test_health_page_shows_the_engine_and_refusals(page: Page, dashboard: Dashboard) -> None:
    with dashboard.client() as client:
        refused = client.post(
            "/api/v1/calls", json={"extension": "200", "destination": "1900123456"}
        )
    assert refused.status_code == 403
    sign_in(page, dashboard)
    page.get_by_role("link", name="Health").click()
    expect(page.locator("#health-facts")).to_contain_text("Active calls")
    expect(page.locator("#health-facts")).to_contain_text("Webhooks waiting")
    expect(page.locator("#health-status")).to_contain_text("engine is up")
    expect(page.locator("#refusals")).to_contain_text("premium-rate destination")


def test_pages_fit_360_px_and_label_every_control(page: Page, dashboard: Dashboard) -> None:
    page.set_viewport_size({"width": 360, "height": 740})
    sign_in(page, dashboard)
    for name in ("live", "history", "place", "health", "keys"):
        page.goto(f"{dashboard.base_url}/ui/{name}")
        page.wait_for_load_state("load")
        page.wait_for_timeout(300)  # the page's script fills its tables
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"/ui/{name} is {width} px wide"
        unlabelled = page.evaluate(
            """[...document.querySelectorAll('input:not([type=hidden]), select, button')]
               .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                            && !e.textContent.trim())
               .map(e => e.outerHTML)"""
        )
        assert unlabelled == [], f"/ui/{name}: {unlabelled}"
