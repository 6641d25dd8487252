/* Idle-timeout warning (docs/security.md): a while before the server would end the login
   session for inactivity, a box offers "Stay signed in" (which records activity on the
   server); just before the end, open forms save their drafts ("qms:session-ending"); at the
   end the page reloads, and the server sends the person to the login page. No inline script:
   the Content-Security-Policy allows scripts from this site only. */
(function () {
  "use strict";
  var body = document.body;
  var idle = parseInt(body.getAttribute("data-idle-seconds") || "0", 10);
  var box = document.getElementById("timeout-warning");
  if (!idle || !box) { return; }
  var lead = parseInt(body.getAttribute("data-warn-seconds") || "120", 10);
  var keepaliveUrl = body.getAttribute("data-keepalive-url");
  var statusUrl = body.getAttribute("data-status-url");
  var meta = document.querySelector('meta[name="csrf-token"]');
  var token = meta ? meta.getAttribute("content") : "";
  var left = box.querySelector(".timeout-left");
  var stay = document.getElementById("timeout-stay");
  var deadline = performance.now() + idle * 1000;
  var ending = false, checking = false, shown = false, timer = null;

  function words(s) {
    var m = Math.floor(s / 60), r = s % 60, out = [];
    if (m) { out.push(m + (m === 1 ? " minute" : " minutes")); }
    if (r || !m) { out.push(r + (r === 1 ? " second" : " seconds")); }
    return out.join(" ");
  }
  function reset(seconds) {
    deadline = performance.now() + seconds * 1000;
    ending = false;
    hide();
  }
  function show(rest) {
    left.textContent = words(rest);
    if (!shown) {
      shown = true;
      box.hidden = false;
      stay.focus();
    }
  }
  function hide() {
    if (shown) { shown = false; box.hidden = true; }
  }
  function expire() {
    clearInterval(timer);
    // a GET of this page: the server answers with the login page and says why
    window.location.assign(window.location.href);
  }
  /* another tab may have kept the session alive: ask before warning (not counted as
     activity by the server) */
  function check() {
    if (checking || !statusUrl) { return; }
    checking = true;
    fetch(statusUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : {idle_seconds: 0}; })
      .then(function (j) {
        var rest = Math.round((deadline - performance.now()) / 1000);
        if (j.idle_seconds > rest + 5) { reset(j.idle_seconds); }
      })
      .catch(function () {})
      .then(function () { checking = false; });
  }
  function tick() {
    var rest = Math.round((deadline - performance.now()) / 1000);
    if (rest <= 0) { expire(); return; }
    if (rest <= Math.min(10, lead) && !ending) {
      ending = true;
      document.dispatchEvent(new CustomEvent("qms:session-ending"));
    }
    if (rest <= lead) {
      if (!shown) { check(); }
      show(rest);
    }
  }
  stay.addEventListener("click", function () {
    stay.disabled = true;
    fetch(keepaliveUrl, {method: "POST", credentials: "same-origin",
                         headers: {"X-CSRFToken": token, "Accept": "application/json"}})
      .then(function (r) {
        if (r.status === 401) { expire(); return null; }
        return r.json();
      })
      .then(function (j) { if (j) { reset(j.idle_seconds); } })
      .catch(function () {})
      .then(function () { stay.disabled = false; });
  });
  timer = setInterval(tick, 1000);
})();
