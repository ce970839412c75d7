// Keeps the dashboard live: fetches the server-rendered fragment every few seconds and puts it
// in place. Without this script the page falls back to a meta refresh.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) {
    return;
  }
  var every = Number(live.getAttribute("data-refresh-ms")) || 3000;
  var busy = false;
  function refresh() {
    if (busy) {
      return;
    }
    busy = true;
    fetch("/live", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) {
          window.location.assign("/login");
          return null;
        }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html !== null) {
          live.innerHTML = html;
        }
      })
      .catch(function () {
        // Unreachable for now: the next round tries again.
      })
      .then(function () {
        busy = false;
      });
  }
  window.setInterval(refresh, every);
})();
