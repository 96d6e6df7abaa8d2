// Place a call from the dashboard and follow its progress.
"use strict";

(() => {
  const { el } = C2C;
  const form = document.getElementById("place");
  const status = document.getElementById("place-status");
  const progress = document.getElementById("place-progress");
  const extension = form.querySelector(".agent-extension");
  const phone = form.querySelector(".agent-phone");

  function choose() {
    const usePhone = form.elements.namedItem("agent").value === "phone";
    phone.hidden = !usePhone;
    extension.hidden = usePhone;
  }
  form.addEventListener("change", choose);
  choose();

  async function follow(call) {
    let seen = null;
    while (true) {
      if (call.state !== seen) {
        seen = call.state;
        progress.append(el("li", {}, el("time", { text: new Date().toLocaleTimeString() }),
          ` ${C2C.stateText(call)}`, call.cause ? ` (${call.cause})` : ""));
        C2C.say(status, `Call #${call.id}: ${C2C.stateText(call)}`, call.result && call.result !== "completed");
      }
      if (call.state === "ended") return;
      await new Promise((resolve) => setTimeout(resolve, 500));
      call = await C2C.getJSON(`/api/v1/calls/${call.id}`);
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    progress.replaceChildren();
    C2C.say(status, "Placing the call…");
    try {
      const call = await C2C.post("/ui/calls", new FormData(form));
      button.disabled = false;
      await follow(call);
    } catch (error) {
      button.disabled = false;
      C2C.say(status, `Refused: ${error.message}`, true);
    }
  });
})();
