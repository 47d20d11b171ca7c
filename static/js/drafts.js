// Usage-guide drafts: follow the generation live (server-sent events), then show the finished draft.
// No inline script: the CSP allows scripts from 'self' only. Without JavaScript a reload shows the result.
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    var panel = document.querySelector("[data-draft-stream]");
    if (!panel || !window.EventSource) return;
    var output = panel.querySelector("[data-draft-output]");
    var note = panel.querySelector("[data-draft-note]");
    var status = document.querySelector("[data-draft-status]");
    var source = new EventSource(panel.getAttribute("data-draft-stream"));

    function setStatus(text, tone) {
      if (!status) return;
      status.textContent = text;
      status.className = "pill " + tone;
    }

    function finish(message) {
      source.close();
      output.setAttribute("aria-busy", "false");
      if (note) note.textContent = message;
      // The finished draft (or the failure) is rendered from the database: reload to review it.
      window.setTimeout(function () { window.location.reload(); }, 300);
    }

    source.addEventListener("meta", function () {
      setStatus("running", "pending");
      if (note) note.textContent = "Writing the draft from the documentation page…";
    });

    source.addEventListener("delta", function (event) {
      var data = JSON.parse(event.data);
      if (typeof data.text === "string") {
        output.textContent += data.text;
        output.scrollTop = output.scrollHeight;
      }
    });

    source.addEventListener("done", function () {
      setStatus("done", "ok");
      finish("Done. Loading the draft for your review…");
    });

    // An "error" event with data is the draft failing; without data it is the connection
    // dropping, which EventSource retries by itself (resuming with Last-Event-ID).
    source.addEventListener("error", function (event) {
      if (!event.data) return;
      var message = "The draft failed.";
      try { message = JSON.parse(event.data).message || message; } catch (ignored) { /* keep the default */ }
      setStatus("failed", "danger");
      finish(message);
    });
  });
})();
