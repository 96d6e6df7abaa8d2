// History: the history API's filters, page by page, and a CSV of the same filter.
"use strict";

(() => {
  const { el } = C2C;
  const form = document.getElementById("filters");
  const tbody = document.querySelector("#history-calls tbody");
  const status = document.getElementById("history-status");
  const csv = document.getElementById("csv");
  const next = document.getElementById("next-page");
  const first = document.getElementById("first-page");
  const PAGE = Number(new URLSearchParams(location.search).get("limit")) || 25;
  const TIMES = ["since", "until"];
  let nextUrl = null;

  // The form's values as the API's query: times in UTC, empty fields left out.
  function query() {
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (!value) continue;
      params.set(name, TIMES.includes(name) ? new Date(value).toISOString() : value);
    }
    return params;
  }

  function fill() {
    const params = new URLSearchParams(location.search);
    for (const [name, value] of params) {
      const input = form.elements.namedItem(name);
      if (!input) continue;
      if (TIMES.includes(name)) {
        const date = new Date(value);
        if (Number.isNaN(date.getTime())) continue;
        const local = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
        input.value = local.toISOString().slice(0, 16);
      } else {
        input.value = value;
      }
    }
  }

  function row(call) {
    return el("tr", {},
      el("td", { "data-label": "Call" }, el("a", { href: `/ui/calls/${call.id}`, text: `#${call.id}` })),
      el("td", { "data-label": "Started", text: C2C.when(call.created_at) }),
      el("td", { "data-label": "Agent", text: C2C.agentText(call.agent) }),
      el("td", { "data-label": "Destination", text: call.destination }),
      el("td", { "data-label": "Result", text: call.result ? C2C.RESULT_WORDS[call.result] || call.result : C2C.stateText(call) }),
      el("td", { "data-label": "Cause", text: call.cause || "" }),
      el("td", { "data-label": "Talk", text: C2C.duration(C2C.talkSeconds(call)) }),
      el("td", { "data-label": "Foreign id", text: call.foreignid || "" }));
  }

  async function load(url) {
    C2C.say(status, "Loading…");
    try {
      const body = await C2C.getJSON(url);
      tbody.replaceChildren(...body.calls.map(row));
      nextUrl = body.next || null;
      next.disabled = !nextUrl;
      C2C.say(status, body.calls.length ? `${body.calls.length} call(s) shown.` : "No calls match.");
    } catch (error) {
      C2C.say(status, error.message, true);
    }
  }

  function apply() {
    const params = query();
    csv.href = `/api/v1/calls.csv?${params}`;  // every matching call, not one page
    params.set("limit", PAGE);
    history.replaceState(null, "", `/ui/history?${params}`);
    load(`/api/v1/calls?${params}`);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  next.addEventListener("click", () => nextUrl && load(nextUrl));
  first.addEventListener("click", apply);
  fill();
  apply();
})();
