// Refresh the page's content every 15 seconds without a full reload (no flash, scroll position kept), on
// pages that ask for it (<body data-refresh>). Not while someone is typing or choosing in a form. Without
// scripts the page still works: a <noscript> meta refresh reloads it every 30 seconds.
(function () {
  "use strict";
  var PERIOD = 15000;
  function busy() {
    var active = document.activeElement;
    return active && active.closest && active.closest("form") !== null;
  }
  function refresh() {
    if (document.hidden || busy()) return;
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html || busy()) return;
        var next = new DOMParser().parseFromString(html, "text/html");
        var main = next.getElementById("main");
        var stamp = next.getElementById("generated");
        var open = Array.prototype.map.call(document.querySelectorAll("details[open][id]"), function (d) { return d.id; });
        if (main) document.getElementById("main").replaceWith(main);
        if (stamp) document.getElementById("generated").replaceWith(stamp);
        open.forEach(function (id) { var d = document.getElementById(id); if (d) d.open = true; });
        document.documentElement.dataset.refreshed = String(Date.now());
      })
      .catch(function () { /* offline for a moment: try again next time */ });
  }
  if (document.body && document.body.hasAttribute("data-refresh")) window.setInterval(refresh, PERIOD);
})();
