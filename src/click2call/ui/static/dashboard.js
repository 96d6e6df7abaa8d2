// Helpers every dashboard page uses. Plain JavaScript, no library, no build step.
// Everything from the server is written with textContent, never as HTML.
"use strict";

const C2C = (() => {
  const csrf = document.querySelector('meta[name="csrf"]')?.content || "";

  const STATE_WORDS = {
    queued: "queued",
    agent_dialing: "calling the agent",
    agent_ringing: "agent's phone ringing",
    agent_answered: "agent answered",
    destination_dialing: "dialling the destination",
    destination_ringing: "destination ringing",
    connected: "connected",
    ended: "ended",
  };
  const RESULT_WORDS = {
    completed: "completed",
    agent_busy: "agent busy",
    agent_no_answer: "agent did not answer",
    agent_failed: "agent's phone failed",
    destination_busy: "destination busy",
    destination_no_answer: "destination did not answer",
    destination_failed: "destination failed",
    canceled: "canceled",
    rejected: "refused by policy",
    error: "error",
  };

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : document.createTextNode(String(child)));
      }
    }
    return node;
  }

  async function reply(response) {
    if (response.status === 401 && location.pathname !== "/ui/signin") {
      location.assign("/ui/signin");
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const error = new Error(body?.error?.message || `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(reply);
  }

  function post(url, data = new FormData()) {
    data.set("csrf", csrf);
    return fetch(url, {
      method: "POST",
      body: data,
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    }).then(reply);
  }

  function seconds(fromIso, toIso) {
    if (!fromIso) return null;
    const end = toIso ? Date.parse(toIso) : Date.now();
    return Math.max(0, (end - Date.parse(fromIso)) / 1000);
  }

  function duration(value) {
    if (value === null || value === undefined) return "";
    const total = Math.floor(value);
    const m = Math.floor(total / 60);
    const s = String(total % 60).padStart(2, "0");
    return m >= 60 ? `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  // Ring time runs from the order until the destination answers (or the call ends);
  // talk time from then until the end.
  function ringSeconds(call) {
    return seconds(call.created_at, call.connected_at || call.ended_at);
  }
  function talkSeconds(call) {
    return call.connected_at ? seconds(call.connected_at, call.ended_at) : null;
  }

  function agentText(agent) {
    if (!agent) return "";
    return agent.kind === "extension"
      ? `${agent.number} (${(agent.tech || "sip").toUpperCase()})`
      : `mobile ${agent.number}`;
  }

  function stateText(call) {
    if (call.state === "ended") {
      return `ended: ${RESULT_WORDS[call.result] || call.result || "unknown"}`;
    }
    return STATE_WORDS[call.state] || call.state;
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "";
  }

  // A step of a call: the time of day to the tenth of a second (steps come quickly).
  function clock(iso) {
    return new Date(iso).toLocaleTimeString([], { hour12: false, fractionalSecondDigits: 1 });
  }

  function hangupForm(call) {
    const form = el("form", { method: "post", action: `/ui/calls/${call.id}/hangup`, class: "hangup" },
      el("input", { type: "hidden", name: "csrf", value: csrf }),
      el("button", { type: "submit", "aria-label": `Hang up call ${call.id}`, text: "Hang up" }));
    return form;
  }

  function say(node, text, isError = false) {
    node.textContent = text;
    node.classList.toggle("error", isError);
    node.setAttribute("role", isError ? "alert" : "status");
  }

  return {
    csrf, el, getJSON, post, duration, ringSeconds, talkSeconds, agentText, stateText, when, clock,
    hangupForm, say, STATE_WORDS, RESULT_WORDS,
  };
})();
