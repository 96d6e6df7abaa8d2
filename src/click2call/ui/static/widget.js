// click2call widget: one line in any page turns its tel: links into click-to-call.
//   <script src="https://<server>/widget.js" data-token="<widget token>"></script>
// Optional: data-scan="CSS selector" also turns phone numbers written in those elements
// into links. The token (minted by the page's own server with POST /api/v1/widget-tokens)
// names the agent whose phone rings first; this script never sees an API key.
// Each step is also announced to the page as a "click2call:call" event on document, with
// { id, state, result, cause, destination, text } in its detail, for CRMs that keep a log.
(() => {
  "use strict";
  const script = document.currentScript;
  if (!script || window.click2callWidget) return;
  const token = script.dataset.token || "";
  const server = new URL(script.src, location.href).origin;
  const scan = script.dataset.scan || "";
  const NUMBER = /\+?\d[\d\s().-]{5,}\d/g;
  const STATES = {
    queued: "Ringing your phone…",
    agent_dialing: "Ringing your phone…",
    agent_ringing: "Ringing your phone…",
    agent_answered: "Calling {d}…",
    destination_dialing: "Calling {d}…",
    destination_ringing: "Calling {d}…",
    connected: "Connected to {d}",
  };
  const RESULTS = {
    completed: "Call ended",
    agent_busy: "Your phone was busy",
    agent_no_answer: "Your phone did not answer",
    agent_failed: "Your phone could not be reached",
    destination_busy: "{d} is busy",
    destination_no_answer: "{d} did not answer",
    destination_failed: "{d} could not be reached",
    canceled: "Call canceled",
    rejected: "Call refused",
    error: "Call failed",
  };

  // --- the toast: a shadow root keeps the page's styles out and ours in ---------------
  const host = document.createElement("div");
  host.setAttribute("data-click2call", "toast");
  const root = host.attachShadow({ mode: "open" });
  root.innerHTML = `<style>
    .toast { position: fixed; right: 16px; bottom: 16px; max-width: min(360px, calc(100vw - 32px));
      background: #102a43; color: #fff; font: 15px/1.4 system-ui, sans-serif; padding: 12px 40px 12px 14px;
      border-radius: 8px; box-shadow: 0 4px 16px rgba(0,0,0,.25); z-index: 2147483647; }
    .toast[hidden] { display: none; }
    .toast.error { background: #7a1010; }
    .toast.done { background: #1d3b2a; }
    .detail { opacity: .85; font-size: 13px; }
    button { position: absolute; top: 6px; right: 6px; background: none; border: 0; color: inherit;
      font-size: 20px; cursor: pointer; line-height: 1; padding: 4px 8px; }
    button:focus-visible { outline: 2px solid #ffb020; }
  </style><div class="toast" role="status" aria-live="polite" hidden>
    <div class="message"></div><div class="detail"></div>
    <button type="button" aria-label="Close">×</button></div>`;
  const toast = root.querySelector(".toast");
  const message = root.querySelector(".message");
  const detail = root.querySelector(".detail");
  let hideTimer = null;
  let following = 0;
  root.querySelector("button").addEventListener("click", () => { toast.hidden = true; });

  function show(text, kind = "", more = "") {
    if (!host.isConnected) document.body.append(host);
    clearTimeout(hideTimer);
    message.textContent = text;
    detail.textContent = more;
    toast.className = `toast ${kind}`;
    toast.setAttribute("role", kind === "error" ? "alert" : "status");
    toast.hidden = false;
    if (kind) hideTimer = setTimeout(() => { toast.hidden = true; }, 8000);
  }

  function announce(detail) {
    document.dispatchEvent(new CustomEvent("click2call:call", { detail }));
  }

  function words(template, destination) {
    return template.replace("{d}", destination);
  }

  // --- the server ---------------------------------------------------------------------
  async function request(path, options = {}) {
    let response;
    try {
      response = await fetch(server + path, {
        ...options,
        mode: "cors",
        credentials: "omit",
        headers: { "Content-Type": "application/json", "X-Widget-Token": token },
      });
    } catch (_) {
      throw new Error("click2call cannot be reached from this page (is this site allowed?)");
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error(body?.error?.message || `click2call answered ${response.status}`);
    return body;
  }

  function tokenOrigins() {
    try {
      const payload = token.split(".")[0].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(payload)).origins || [];
    } catch (_) {
      return null;
    }
  }

  async function follow(call, destination) {
    const mine = ++following;
    let last = null;
    while (mine === following) {
      if (call.state === "ended") {
        const failed = call.result !== "completed";
        const text = words(RESULTS[call.result] || "Call ended", destination);
        show(text, failed ? "error" : "done", failed && call.cause ? call.cause : "");
        announce({ id: call.id, state: call.state, result: call.result, cause: call.cause, destination, text });
        return;
      }
      if (call.state !== last) {
        last = call.state;
        const text = words(STATES[call.state] || call.state, destination);
        show(text);
        announce({ id: call.id, state: call.state, result: null, cause: null, destination, text });
      }
      await new Promise((resolve) => setTimeout(resolve, 700));
      try {
        call = await request(`/api/v1/widget/calls/${call.id}`);
      } catch (error) {
        // The call goes on; only this page stopped seeing it (token expired, network).
        show("Lost sight of the call", "error", error.message);
        return;
      }
    }
  }

  async function dial(number) {
    const destination = number.replace(/[^\d+]/g, "");
    const origins = tokenOrigins();
    if (origins && !origins.includes(location.origin)) {
      refused(destination, "Calls cannot be placed from this page",
        `${location.origin} is not among the origins this widget token allows.`);
      return;
    }
    show("Placing the call…", "", destination);
    try {
      const call = await request("/api/v1/widget/calls", {
        method: "POST",
        body: JSON.stringify({ destination }),
      });
      await follow(call, destination);
    } catch (error) {
      refused(destination, "The call was not placed", error.message);
    }
  }

  function refused(destination, text, reason) {
    show(text, "error", reason);
    announce({ id: null, state: "refused", result: null, cause: reason, destination, text });
  }

  // --- the page: tel: links, and numbers written in data-scan elements ----------------
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest('a[href^="tel:"]');
    if (!link || event.defaultPrevented || event.button !== 0) return;
    event.preventDefault();
    dial(decodeURIComponent(link.getAttribute("href").slice(4)));
  });

  function linkNumbers(element) {
    const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT, {
      acceptNode: (node) => node.parentElement.closest("a, script, style, textarea, input")
        ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
    });
    const texts = [];
    while (walker.nextNode()) texts.push(walker.currentNode);
    for (const text of texts) {
      const value = text.nodeValue;
      const parts = [];
      let last = 0;
      for (const match of value.matchAll(NUMBER)) {
        parts.push(value.slice(last, match.index));
        const link = document.createElement("a");
        link.href = `tel:${match[0].replace(/[^\d+]/g, "")}`;
        link.textContent = match[0];
        parts.push(link);
        last = match.index + match[0].length;
      }
      if (parts.length) {
        parts.push(value.slice(last));
        text.replaceWith(...parts);
      }
    }
  }

  function start() {
    if (scan) document.querySelectorAll(scan).forEach(linkNumbers);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
  window.click2callWidget = { dial };
})();
