// The dashboard's few behaviours. Everything works without this file; it adds live
// refresh, keyboard shortcuts and range selection. No eval and no inline handlers,
// so the Content-Security-Policy stays strict.
(function () {
  "use strict";

  // Live refresh: a region with data-refresh="N" is reloaded every N seconds (0: off)
  // while the tab is visible and no dialog is open. The server clamps N.
  var lastRefresh = Date.now();
  setInterval(function () {
    var region = document.querySelector("[data-refresh]");
    var seconds = region ? parseInt(region.getAttribute("data-refresh"), 10) : 0;
    if (!region || !seconds || document.hidden || document.querySelector("dialog[open]")) {
      return;
    }
    if (region.contains(document.activeElement) && document.activeElement !== document.body) {
      return; // never pull a control out from under the keyboard
    }
    if (Date.now() - lastRefresh >= seconds * 1000 && window.htmx) {
      lastRefresh = Date.now();
      window.htmx.trigger(region, "entroq:refresh");
    }
  }, 500);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { lastRefresh = 0; } // fresh figures on return
  });

  // A message about a failed request (a timeout) stands until a request succeeds.
  document.addEventListener("htmx:afterSwap", function (event) {
    var alerts = document.getElementById("alerts");
    if (alerts && event.detail.target !== alerts) { alerts.textContent = ""; }
  });

  // "As of" times count up between refreshes.
  setInterval(function () {
    document.querySelectorAll("time[data-since]").forEach(function (el) {
      var seconds = Math.max(0, Math.round((Date.now() - Date.parse(el.dateTime)) / 1000));
      el.title = seconds + " s ago";
    });
  }, 1000);

  function openDialog(id) {
    var dialog = document.getElementById(id);
    if (dialog && !dialog.open) { dialog.showModal(); }
  }

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-open-dialog]");
    if (opener) { openDialog(opener.getAttribute("data-open-dialog")); }
  });

  // Selection: "select all", shift-click ranges, and a count.
  var lastBox = null;
  function boxes() {
    return Array.prototype.slice.call(document.querySelectorAll('#selection input[name="task"]'));
  }
  function showCount() {
    var count = boxes().filter(function (b) { return b.checked; }).length;
    document.querySelectorAll("[data-selected-count]").forEach(function (el) {
      el.textContent = count ? count + " selected" : "";
    });
  }
  document.addEventListener("click", function (event) {
    var box = event.target;
    if (!(box instanceof HTMLInputElement) || box.type !== "checkbox") { return; }
    if (box.hasAttribute("data-select-all")) {
      boxes().forEach(function (b) { b.checked = box.checked; });
    } else if (box.name === "task") {
      var all = boxes();
      if (event.shiftKey && lastBox && all.indexOf(lastBox) >= 0) {
        var from = all.indexOf(lastBox), to = all.indexOf(box);
        all.slice(Math.min(from, to), Math.max(from, to) + 1).forEach(function (b) {
          b.checked = box.checked;
        });
      }
      lastBox = box;
    }
    showCount();
  });

  // Keyboard shortcuts, ignored while typing.
  var pendingG = false;
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    var typing = target.closest && target.closest(
      "textarea, select, [contenteditable], input:not([type=checkbox]):not([type=radio]):not([type=button]):not([type=submit])"
    );
    if (typing || event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (pendingG) {
      pendingG = false;
      var nav = document.querySelector('.top nav a[data-go="' + event.key + '"]');
      if (nav) { nav.click(); return; }
    }
    pendingG = event.key === "g";
    if (event.key === "/") {
      var search = document.getElementById("goto");
      if (search) { event.preventDefault(); search.focus(); search.select(); }
    } else if (event.key === "?") {
      event.preventDefault();
      openDialog("help");
    } else if (event.key === "[" || event.key === "]") {
      var link = document.querySelector('.pager a[data-key="' + event.key + '"]');
      if (link) { link.click(); }
    }
  });
})();
