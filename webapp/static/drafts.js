/* Drafts of unsubmitted forms (workflow/form_drafts.py): a form with data-draft-key saves
   what was typed every few seconds when it changed, and at once when the session is about to
   end ("qms:session-ending", static/session.js) or the page is left. Passwords,
   authentication codes and the CSRF token are never sent. Submitting the form deletes the
   draft on the server. */
(function () {
  "use strict";
  var SECRET = ["csrf_token", "sig_password", "sig_totp", "sig_username"];
  var meta = document.querySelector('meta[name="csrf-token"]');
  var token = meta ? meta.getAttribute("content") : "";
  function fields(form) {
    var out = [];
    new FormData(form).forEach(function (value, name) {
      if (typeof value === "string" && SECRET.indexOf(name) < 0) { out.push([name, value]); }
    });
    return out;
  }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  Array.prototype.forEach.call(document.querySelectorAll("form[data-draft-key]"), function (form) {
    var key = form.getAttribute("data-draft-key");
    var url = form.getAttribute("data-draft-url");
    var every = parseInt(form.getAttribute("data-draft-every") || "5", 10) * 1000;
    var saved = JSON.stringify(fields(form));
    var submitting = false;
    var status = document.createElement("p");
    status.className = "help draft-status";
    status.setAttribute("aria-live", "polite");
    var actions = form.querySelector(".formactions");
    (actions || form).appendChild(status);
    function save() {
      if (submitting) { return; }
      var now = JSON.stringify(fields(form));
      if (now === saved) { return; }
      fetch(url, {method: "POST", credentials: "same-origin", keepalive: true,
                  headers: {"Content-Type": "application/json", "X-CSRFToken": token},
                  body: JSON.stringify({form: key, fields: JSON.parse(now)})})
        .then(function (r) {
          if (r.ok) {
            saved = now;
            var d = new Date();
            status.textContent = "Draft saved at " + pad(d.getHours()) + ":" + pad(d.getMinutes()) +
              ":" + pad(d.getSeconds()) + " (only you see it; not part of the record until you submit).";
          } else if (r.status === 413) {
            status.textContent = "This form is too large to keep as a draft; submit it to keep it.";
          }
        })
        .catch(function () {});
    }
    form.addEventListener("submit", function () { submitting = true; });
    setInterval(save, every);
    document.addEventListener("qms:session-ending", save);
    window.addEventListener("pagehide", save);
  });
})();
