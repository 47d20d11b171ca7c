// Tools pages. Progressive: every form works without this file.
(function () {
  "use strict";

  // New tool: the shared-credential fields only matter for shared tools, and
  // "add the credential later" makes the credential input moot.
  function sync(form) {
    var mode = form.querySelector("select[name=credential_mode]");
    var group = form.querySelector("[data-shared-only]");
    var later = form.querySelector("input[name=credential_later]");
    var secret = form.querySelector("input[name=credential]");
    if (!mode || !group) return;
    var shared = mode.value === "shared";
    group.hidden = !shared;
    if (secret) {
      secret.disabled = !shared || (later && later.checked);
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-tool-form]").forEach(function (form) {
      sync(form);
      form.addEventListener("change", function () { sync(form); });
    });
  });
})();
