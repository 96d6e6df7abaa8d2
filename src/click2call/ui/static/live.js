// Live calls: the event feed (/api/v1/events) keeps the table current without reloading.
"use strict";

(() => {
  const { el } = C2C;
  const tbody = document.querySelector("#live-calls tbody");
  const empty = document.getElementById("live-empty");
  const status = document.getElementById("feed-status");
  const rows = new Map(); // call id -> { call, tr }
  const loadedAt = Date.now();
  const MAX_ROWS = 100;
  const TYPES = ["queued", "agent_dialing", "agent_ringing", "agent_answered",
    "destination_dialing", "destination_ringing", "connected", "ended", "rejected"]
    .map((name) => `call.${name}`);
  const ORDER = ["queued", "agent_dialing", "agent_ringing", "agent_answered",
    "destination_dialing", "destination_ringing", "connected", "ended"];

  function cells(call) {
    const ended = call.state === "ended";
    return [
      el("a", { href: `/ui/calls/${call.id}`, text: `#${call.id}` }),
      el("span", { class: `state state-${call.state} result-${call.result || ""}`, text: C2C.stateText(call) }),
      C2C.agentText(call.agent),
      call.destination,
      call.destination_caller_id,
      call.foreignid || "",
      C2C.duration(C2C.ringSeconds(call)),
      C2C.duration(C2C.talkSeconds(call)),
      ended ? "" : C2C.hangupForm(call),
    ];
  }
  const LABELS = ["Call", "State", "Agent", "Destination", "Caller ID", "Foreign id", "Ring", "Talk", ""];

  function render(entry) {
    const fresh = cells(entry.call);
    entry.tr.replaceChildren(...fresh.map((content, i) =>
      el("td", { "data-label": LABELS[i], class: `col-${i}` }, content)));
    entry.tr.classList.toggle("ended", entry.call.state === "ended");
  }

  function upsert(call) {
    let entry = rows.get(call.id);
    if (entry) {
      // The list and the feed may cross (and events repeat after a reconnect): a call
      // never goes back, so keep the furthest state.
      if (ORDER.indexOf(call.state) < ORDER.indexOf(entry.call.state)) return;
      entry.call = call;
    } else {
      entry = { call, tr: el("tr", { "data-call-id": call.id }) };
      rows.set(call.id, entry);
      tbody.prepend(entry.tr);
      while (rows.size > MAX_ROWS) {
        const oldest = rows.keys().next().value;
        rows.get(oldest).tr.remove();
        rows.delete(oldest);
      }
    }
    render(entry);
    empty.hidden = rows.size > 0;
  }

  // Ring and talk times tick once a second; only those two cells change.
  setInterval(() => {
    for (const { call, tr } of rows.values()) {
      if (call.state === "ended") continue;
      tr.querySelector(".col-6").textContent = C2C.duration(C2C.ringSeconds(call));
      tr.querySelector(".col-7").textContent = C2C.duration(C2C.talkSeconds(call));
    }
  }, 1000);

  tbody.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const call = await C2C.post(form.action, new FormData(form));
      C2C.say(status, `Hang-up sent for call #${call.id}.`);
    } catch (error) {
      button.disabled = false;
      C2C.say(status, `Hang-up refused: ${error.message}`, true);
    }
  });

  function keep(call) {
    return call.state !== "ended" || rows.has(call.id) || Date.parse(call.created_at) >= loadedAt - 2000;
  }

  async function loadActive() {
    const body = await C2C.getJSON("/api/v1/calls?limit=100");
    for (const call of body.calls.slice().reverse()) if (keep(call)) upsert(call);
  }

  // Without the event feed (an older server), poll twice a second.
  function poll() {
    C2C.say(status, "Updating every half second (the event feed is not available).");
    const tick = () => loadActive().catch((e) => C2C.say(status, e.message, true));
    setInterval(tick, 500);
  }

  function listen() {
    const feed = new EventSource("/api/v1/events");
    let opened = false;
    feed.addEventListener("open", () => {
      opened = true;
      C2C.say(status, "Live: updated from the event feed.");
      // The feed starts at the next event: read the list again so a call stored between
      // the first read and this moment is not missed.
      loadActive().catch((e) => C2C.say(status, e.message, true));
    });
    for (const type of TYPES) {
      feed.addEventListener(type, (event) => upsert(JSON.parse(event.data).call));
    }
    feed.addEventListener("error", () => {
      if (feed.readyState === EventSource.CLOSED) {
        if (opened) setTimeout(listen, 1000); else poll();
      } else {
        C2C.say(status, "Reconnecting to the event feed…");
      }
    });
  }

  loadActive()
    .catch((e) => C2C.say(status, e.message, true))
    .finally(listen);
})();
