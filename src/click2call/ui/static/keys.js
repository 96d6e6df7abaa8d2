// Keys (admin keys only): list, create (the key is shown once), revoke.
"use strict";

(() => {
  const { el } = C2C;
  const tbody = document.querySelector("#keys tbody");
  const form = document.getElementById("create-key");
  const shown = document.getElementById("new-key");
  const value = document.getElementById("new-key-value");

  function revokeForm(key) {
    return el("form", { method: "post", action: `/ui/keys/${key.id}/revoke`, class: "revoke" },
      el("input", { type: "hidden", name: "csrf", value: C2C.csrf }),
      el("button", { type: "submit", "aria-label": `Revoke key ${key.id}`, text: "Revoke" }));
  }

  function row(key) {
    const state = key.revoked_at ? `revoked ${C2C.when(key.revoked_at)}` : key.yours ? "active (yours)" : "active";
    return el("tr", {},
      el("td", { "data-label": "Id", text: key.id }),
      el("td", { "data-label": "Key" }, el("code", { text: `${key.prefix}…` })),
      el("td", { "data-label": "Label", text: key.label || "" }),
      el("td", { "data-label": "Admin", text: key.admin ? "yes" : "no" }),
      el("td", { "data-label": "Created", text: C2C.when(key.created_at) }),
      el("td", { "data-label": "State", text: state }),
      el("td", {}, key.revoked_at || key.yours ? "" : revokeForm(key)));
  }

  async function load() {
    const body = await C2C.getJSON("/ui/api/keys");
    tbody.replaceChildren(...body.keys.map(row));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const key = await C2C.post(form.action, new FormData(form));
      value.textContent = key.key;
      shown.hidden = false;
      form.reset();
      await load();
    } catch (error) {
      value.textContent = error.message;
      shown.hidden = false;
    }
  });

  tbody.addEventListener("submit", async (event) => {
    event.preventDefault();
    await C2C.post(event.target.action, new FormData(event.target)).catch((e) => alert(e.message));
    await load();
  });

  load();
})();
