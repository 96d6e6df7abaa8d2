// One call: its facts, its event timeline and its webhook deliveries.
"use strict";

(() => {
  const { el } = C2C;
  const ref = document.getElementById("call-ref").dataset.ref;
  const status = document.getElementById("call-status");
  const facts = document.getElementById("call-facts");
  const timeline = document.getElementById("timeline");
  const deliveries = document.querySelector("#deliveries tbody");
  const note = document.getElementById("deliveries-note");
  const id = encodeURIComponent(ref);

  function fact(name, value) {
    return [el("dt", { text: name }), el("dd", { text: value ?? "" })];
  }

  function showCall(call) {
    facts.replaceChildren(
      ...fact("State", C2C.stateText(call)),
      ...fact("Cause", call.cause || ""),
      ...fact("Agent", C2C.agentText(call.agent)),
      ...fact("Destination", call.destination),
      ...fact("Caller ID shown", call.destination_caller_id),
      ...fact("Foreign id", call.foreignid || ""),
      ...fact("Unique id", call.uniqueid),
      ...fact("Created", C2C.when(call.created_at)),
      ...fact("Agent answered", C2C.when(call.agent_answered_at)),
      ...fact("Connected", C2C.when(call.connected_at)),
      ...fact("Ended", C2C.when(call.ended_at)),
      ...fact("Ring time", C2C.duration(C2C.ringSeconds(call))),
      ...fact("Talk time", C2C.duration(C2C.talkSeconds(call))));
  }

  function showEvents(events) {
    timeline.replaceChildren(...events.map((e) => {
      const words = e.state === "ended" ? C2C.stateText(e) : C2C.STATE_WORDS[e.state] || e.state;
      return el("li", {}, el("time", { datetime: e.at, title: C2C.when(e.at), text: C2C.clock(e.at) }), ` ${words}`,
        e.cause ? el("span", { class: "cause", text: ` (${e.cause})` }) : null);
    }));
  }

  function showDeliveries(list) {
    deliveries.replaceChildren(...list.map((d) => el("tr", {},
      el("td", { "data-label": "Endpoint", text: d.url }),
      el("td", { "data-label": "Event", text: `${d.type} (#${d.sequence})` }),
      el("td", { "data-label": "State", text: d.state }),
      el("td", { "data-label": "Attempts", text: d.attempts }),
      el("td", { "data-label": "Last status", text: d.last_status ?? d.last_error ?? "" }),
      el("td", { "data-label": "Next try", text: d.state === "pending" ? C2C.when(d.next_attempt_at) : "" }))));
    note.textContent = list.length ? "" : "No webhook deliveries for this call.";
  }

  async function load() {
    let again = false;
    try {
      const call = await C2C.getJSON(`/api/v1/calls/${id}`);
      showCall(call);
      showEvents((await C2C.getJSON(`/api/v1/calls/${call.id}/events`)).events);
      await C2C.getJSON(`/api/v1/calls/${call.id}/webhooks`)
        .then((body) => {
          const list = body.deliveries || [];
          showDeliveries(list);
          again = list.some((d) => d.state === "pending");
        })
        .catch((error) => {
          note.textContent = error.message;
        });
      const ended = call.state === "ended";
      C2C.say(status, ended ? "" : "In progress: this page refreshes itself.");
      // Follow the call while it runs, and its webhooks while some are still to be sent.
      if (!ended) setTimeout(load, 1000);
      else if (again) setTimeout(load, 3000);
    } catch (error) {
      C2C.say(status, error.message, true);
    }
  }
  load();
})();
