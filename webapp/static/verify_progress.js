// The dashboard's verification progress (R-SEC-40): polls the run's JSON every few seconds
// and updates the text and the bar; when the run has finished, the page is reloaded to show
// the stored result. A static file (the Content-Security-Policy allows no inline script).
(function () {
  "use strict";
  var box = document.querySelector(".integrity-run[data-status-url]");
  if (!box) { return; }
  var url = box.getAttribute("data-status-url");
  var label = box.querySelector(".run-status");
  var text = box.querySelector(".run-text");
  var bar = box.querySelector(".run-bar");
  var names = { queued: "Queued", running: "Running", stale: "Stale" };

  function show(s) {
    box.className = "integrity-run integrity-" + s.status;
    if (label && names[s.status]) { label.textContent = names[s.status]; }
    if (s.status === "running" && text) {
      text.textContent = s.checked + " of " + s.total + " audit events checked" +
        (s.heartbeat ? " (last heartbeat " + s.heartbeat.replace("T", " ").slice(0, 19) + " UTC)" : "") + ".";
    }
    if (bar) { bar.max = s.total || 1; bar.value = s.checked; bar.textContent = s.percent + " %"; }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) { return; }
        if (s.finished) { window.location.reload(); return; }
        show(s);
        if (s.status !== "stale") { window.setTimeout(poll, 3000); }
      })
      .catch(function () { window.setTimeout(poll, 10000); });
  }
  window.setTimeout(poll, 3000);
}());
