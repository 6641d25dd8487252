/* Add and remove rows of a list field in a step's form (issue 15, control 9).
 *
 * Without JavaScript the "Add a row" button submits the form and the server answers it with
 * one more blank row (nothing is saved), and a row is removed by emptying its cells. With it,
 * rows are added and removed in the page. No inline script: the Content-Security-Policy
 * allows scripts from this origin only.
 */
(function () {
  "use strict";

  function renumber(table) {
    var label = table.getAttribute("data-label");
    var rows = table.tBodies[0].querySelectorAll("tr:not(.row-note)");
    rows.forEach(function (tr, i) {
      var n = i + 1;
      var num = tr.querySelector(".rownum");
      if (num) { num.textContent = String(n); }
      tr.querySelectorAll("input, select, textarea").forEach(function (el) {
        var th = table.tHead.rows[0].cells[el.closest("td").cellIndex];
        if (el.type !== "hidden" && th) {
          el.setAttribute("aria-label", th.textContent.trim() + ", row " + n + " of " + label);
        }
      });
      var rm = tr.querySelector(".row-remove");
      if (rm) { rm.setAttribute("aria-label", "Remove row " + n + " of " + label); }
    });
  }

  function nextIndex(table, prefix) {
    var max = -1;
    var re = new RegExp("^" + prefix + "-(\\d+)-");
    table.querySelectorAll("[name]").forEach(function (el) {
      var m = re.exec(el.name);
      if (m) { max = Math.max(max, parseInt(m[1], 10)); }
    });
    return max + 1;
  }

  function addRow(table) {
    var prefix = table.getAttribute("data-prefix");
    var body = table.tBodies[0];
    var rows = body.querySelectorAll("tr:not(.row-note)");
    var last = rows[rows.length - 1];
    var copy = last.cloneNode(true);
    var index = nextIndex(table, prefix);
    var re = new RegExp("^" + prefix + "-\\d+-");
    copy.querySelectorAll("[name], [id], label[for]").forEach(function (el) {
      ["name", "id", "for"].forEach(function (attr) {
        var v = el.getAttribute(attr);
        if (v && re.test(v)) { el.setAttribute(attr, v.replace(re, prefix + "-" + index + "-")); }
      });
      if (el.tagName === "SELECT") { el.selectedIndex = 0; }
      else if (el.tagName === "INPUT" || el.tagName === "TEXTAREA") { el.value = ""; }
      el.removeAttribute("aria-invalid");
    });
    body.appendChild(copy);
    renumber(table);
    var first = copy.querySelector("input:not([type=hidden]), select, textarea");
    if (first) { first.focus(); }
  }

  function removeRow(button) {
    var tr = button.closest("tr");
    var table = tr.closest("table");
    var rows = table.tBodies[0].querySelectorAll("tr:not(.row-note)");
    if (rows.length > 1) {
      tr.parentNode.removeChild(tr);
    } else {
      tr.querySelectorAll("input, select, textarea").forEach(function (el) {
        if (el.tagName === "SELECT") { el.selectedIndex = 0; } else { el.value = ""; }
      });
    }
    renumber(table);
    var add = document.querySelector('.row-add[data-table="' + table.id + '"]');
    if (add) { add.focus(); }
  }

  document.querySelectorAll(".row-remove").forEach(function (b) { b.hidden = false; });
  document.addEventListener("click", function (e) {
    var add = e.target.closest(".row-add");
    if (add) {
      var table = document.getElementById(add.getAttribute("data-table"));
      if (table) { e.preventDefault(); addRow(table); }
      return;
    }
    var rm = e.target.closest(".row-remove");
    if (rm) { e.preventDefault(); removeRow(rm); }
  });
}());
