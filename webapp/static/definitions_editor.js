/* The definition editor: CodeMirror 5 (vendored, webapp/static/vendor/codemirror) over the
   plain textarea, with line numbers, YAML highlighting and a marker at every line the
   validation found a problem on. Without JavaScript the textarea works as it is. No inline
   script: the CSP allows scripts from 'self' only. */
(function () {
  "use strict";
  function ready(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }
  ready(function () {
    var ta = document.querySelector("textarea[data-editor=yaml]");
    if (!ta || typeof window.CodeMirror === "undefined") { return; }
    var findings = [];
    try { findings = JSON.parse(ta.getAttribute("data-findings") || "[]"); } catch (e) { findings = []; }
    var cm = window.CodeMirror.fromTextArea(ta, {
      mode: "yaml",
      lineNumbers: true,
      readOnly: ta.hasAttribute("readonly"),
      indentUnit: 2,
      tabSize: 2,
      indentWithTabs: false,
      lineWrapping: false,
      gutters: ["qms-problems", "CodeMirror-linenumbers"],
      extraKeys: {
        Tab: function (ed) { ed.replaceSelection("  ", "end"); }
      }
    });
    cm.getWrapperElement().setAttribute("data-qms-editor", "codemirror");
    var byLine = {};
    findings.forEach(function (f) {
      var n = Math.max(1, f.line) - 1;
      (byLine[n] = byLine[n] || []).push(f);
    });
    Object.keys(byLine).forEach(function (key) {
      var n = parseInt(key, 10);
      var list = byLine[n];
      var error = list.some(function (f) { return f.severity === "error"; });
      var mark = document.createElement("span");
      mark.className = "qms-marker " + (error ? "qms-marker-error" : "qms-marker-warning");
      mark.textContent = error ? "●" : "▲";
      mark.title = list.map(function (f) { return f.message; }).join("\n");
      cm.setGutterMarker(n, "qms-problems", mark);
      cm.addLineClass(n, "background", error ? "qms-line-error" : "qms-line-warning");
    });
    var lines = Object.keys(byLine).map(function (k) { return parseInt(k, 10); });
    if (lines.length) {  // show the first problem (CodeMirror draws only the visible lines)
      cm.scrollIntoView({line: Math.min.apply(null, lines), ch: 0}, 120);
    }
    document.querySelectorAll("a.line-link[data-line]").forEach(function (a) {
      a.addEventListener("click", function (ev) {
        ev.preventDefault();
        var n = parseInt(a.getAttribute("data-line"), 10) - 1;
        cm.focus();
        cm.setCursor({line: n, ch: 0});
        cm.scrollIntoView({line: n, ch: 0}, 120);
      });
    });
    var form = document.getElementById("editor-form");
    if (form) { form.addEventListener("submit", function () { cm.save(); }); }
  });
}());
