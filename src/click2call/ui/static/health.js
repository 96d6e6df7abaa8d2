// Health: the tenant's engine, its active calls and the latest refused requests.
"use strict";

(() => {
  const { el } = C2C;
  const status = document.getElementById("health-status");
  const facts = document.getElementById("health-facts");
  const refusals = document.querySelector("#refusals tbody");

  async function load() {
    try {
      const health = await C2C.getJSON("/ui/api/health");
      const engine = health.engine;
      C2C.say(status, engine.ok ? `The ${engine.name} engine is up.` : `The ${engine.name} engine is down: ${engine.detail}`, !engine.ok);
      const rows = [
        ["Tenant", health.tenant],
        ["Engine", `${engine.name}: ${engine.ok ? "up" : "down"}`],
        ["Link", engine.detail],
        ["Active calls", health.active_calls],
      ];
      rows.push(
        ["Webhooks waiting", health.webhooks.pending],
        ["Webhooks delivered", health.webhooks.delivered],
        ["Webhooks given up", health.webhooks.failed]);
      facts.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
      refusals.replaceChildren(...health.refusals.map((r) => el("tr", {},
        el("td", { "data-label": "When", text: C2C.when(r.at) }),
        el("td", { "data-label": "Endpoint", text: r.endpoint }),
        el("td", { "data-label": "Reason", text: r.reason || "" }))));
    } catch (error) {
      C2C.say(status, error.message, true);
    }
  }
  load();
  setInterval(load, 5000);
})();
