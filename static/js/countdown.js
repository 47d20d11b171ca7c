// Live countdowns for time-bound access: <… class="countdown" data-expires="ISO 8601">.
// The server renders the remaining time; this only keeps it current (the page works without it).
// The format matches grants.views.inbox.time_left.
(function () {
  "use strict";

  function timeLeft(ms) {
    var seconds = Math.floor(ms / 1000);
    if (seconds <= 0) return "expired";
    var days = Math.floor(seconds / 86400);
    var hours = Math.floor((seconds % 86400) / 3600);
    var minutes = Math.floor((seconds % 3600) / 60);
    if (days) return days + " d " + hours + " h";
    if (hours) return hours + " h " + minutes + " min";
    if (minutes) return minutes + " min";
    return "under a minute";
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll(".countdown[data-expires]").forEach(function (el) {
      var ends = Date.parse(el.getAttribute("data-expires"));
      if (isNaN(ends)) return;
      var text = timeLeft(ends - now);
      if (el.textContent !== text) el.textContent = text;
      if (text === "expired") {
        var item = el.closest(".inbox-item");
        if (item) item.classList.add("inbox-expired");
      }
    });
  }

  tick();
  window.setInterval(tick, 1000);
})();
