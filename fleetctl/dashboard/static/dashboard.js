// fleetctl dashboard: live updates (server-sent events), keyboard navigation, copy buttons.
// No inline script anywhere (the page's Content Security Policy forbids it); nothing from
// the server is ever written as HTML here: live updates swap in the server's own escaped
// rendering of the same page, parsed as an inert document.
"use strict";
(function () {
  const page = document.body.dataset.page;

  // ---- live: refresh the grid when something this page shows changed ----
  let pending = null;
  let last = 0;
  function typing() {
    const grid = document.getElementById("grid");
    const active = document.activeElement;
    if (grid && active && grid.contains(active) && active.tagName === "INPUT") return true;
    return Array.from(document.querySelectorAll("#grid form.judge input[name=comment]"))
      .some(function (input) { return input.value !== input.defaultValue; });
  }
  function refresh() {
    if (pending) return;
    // the Status page looks at the bus on each refresh: at most every 5 s for heartbeats
    const wait = page === "status" ? Math.max(250, 5000 - (Date.now() - last)) : 250;
    pending = setTimeout(async function () {
      pending = null;
      if (typing()) { refresh(); return; }  // never swap away a comment being written
      last = Date.now();
      try {
        const response = await fetch(location.href, { headers: { accept: "text/html" } });
        if (!response.ok) return;
        const doc = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = doc.getElementById("grid");
        const grid = document.getElementById("grid");
        if (fresh && grid) grid.replaceWith(document.adoptNode(fresh));
      } catch (e) { /* the next change tries again */ }
    }, wait);
  }
  if (window.EventSource && (page === "tasks" || page === "task" || page === "status")) {
    const live = document.getElementById("live");
    const source = new EventSource("/events");
    source.addEventListener("open", function () { live.dataset.state = "on"; });
    source.addEventListener("error", function () { live.dataset.state = "off"; });
    source.addEventListener("change", function (e) {
      let change;
      try { change = JSON.parse(e.data); } catch (err) { return; }
      if (page === "status") { if (change.kind === "status") refresh(); }
      else if (change.kind === "status") return;
      else if (page === "tasks") refresh();
      else if (change.task_id === document.getElementById("main").dataset.taskId) refresh();
    });
  }

  // ---- copy the `results --apply` command ----
  document.addEventListener("click", function (e) {
    const button = e.target.closest ? e.target.closest("button.copy-button") : null;
    if (!button) return;
    const text = button.dataset.copy || "";
    if (navigator.clipboard) navigator.clipboard.writeText(text).then(function () {
      button.textContent = "copied";
    }, function () {});
  });

  // ---- keyboard: j/k move, Enter opens, 1-3 modes, g back to the tasks ----
  function items() {
    return Array.from(document.querySelectorAll(page === "tasks" ? "tr.task-row" : "section.answer"));
  }
  let at = -1;
  function select(i) {
    const all = items();
    if (!all.length) return;
    at = Math.max(0, Math.min(all.length - 1, i));
    all.forEach(function (el, n) { el.classList.toggle("selected", n === at); });
    all[at].scrollIntoView({ block: "nearest" });
  }
  // hotkeys-js (vendored from npm, static/vendor/) ignores keys typed into inputs and selects.
  if (window.hotkeys) {
    window.hotkeys("j", function () { select(at + 1); });
    window.hotkeys("k", function () { select(at - 1); });
    window.hotkeys("g", function () { location.href = "/tasks"; });
    window.hotkeys("enter", function () {
      if (page !== "tasks" || at < 0) return;
      const link = items()[at].querySelector("a.task-link");
      if (link) location.href = link.href;
    });
    window.hotkeys("1,2,3", function (e, handler) {
      if (page !== "task") return;
      const chosen = document.querySelectorAll("a.mode")[Number(handler.key) - 1];
      if (chosen) location.href = chosen.href;
    });
  }
})();
