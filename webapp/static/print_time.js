// The Read view of a controlled document: a printout says when it was printed
// ("Uncontrolled when printed"); the server wrote the page's time, this sets the moment of
// printing (UTC) just before the browser prints.
(function () {
  "use strict";
  function stamp() {
    var now = new Date().toISOString().replace("T", " ").slice(0, 16) + " UTC";
    document.querySelectorAll("[data-print-time]").forEach(function (el) { el.textContent = now; });
  }
  window.addEventListener("beforeprint", stamp);
})();
