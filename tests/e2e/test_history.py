"""History in the browser: the history API's filters, pages, the CSV, a call's page."""

from __future__ import annotations

import csv
import io

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Dashboard, sign_in
from tests.e2e.test_dashboard import dial


@pytest.fixture
def busy_calls(dashboard: Dashboard) -> list[int]:
    """Three calls the agent refused (busy), tagged so no other test's calls match."""
    agent = dashboard.peer("agent_busy.xml", dashboard.pbx_port, calls=3)
    ids = []
    for n in range(3):  # one after the other: the agent's call cap is 2
        ids.append(dial(dashboard, foreignid=f"hist-{n}"))
        assert dashboard.wait_for(ids[-1], "ended")["result"] == "agent_busy"
    assert agent.wait(10) == 0
    return ids


def test_filters_pages_and_csv(page: Page, dashboard: Dashboard, busy_calls: list[int]) -> None:
    sign_in(page, dashboard)
    page.goto(f"{dashboard.base_url}/ui/history?result=agent_busy&limit=2")
    rows = page.locator("#history-calls tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("hist-2")  # newest first
    page.get_by_role("button", name="Next page").click()
    expect(rows.first).to_contain_text("hist-0")

    page.get_by_label("Foreign id").fill("hist-1")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("agent busy")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    text = download.value.path().read_text(encoding="utf-8")
    table = list(csv.DictReader(io.StringIO(text)))
    assert [(r["foreignid"], r["result"]) for r in table] == [("hist-1", "agent_busy")]

    rows.first.get_by_role("link").click()
    expect(page.locator("#timeline")).to_contain_text("ended: agent busy")
    expect(page.locator("#call-facts")).to_contain_text("SIP 486 Busy Here")
