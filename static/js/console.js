// AgentKey console behaviour. No inline handlers: the CSP allows scripts from 'self' and nonces only.
(function () {
  "use strict";

  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el.matches && el.matches("select[data-autosubmit]") && el.form) {
      el.form.requestSubmit();
    }
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy-target]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy-target"));
    if (!source) return;
    var text = source.value !== undefined && source.tagName !== "PRE" && source.tagName !== "CODE" ? source.value : source.textContent;
    navigator.clipboard.writeText(text.trim()).then(function () {
      var original = button.textContent;
      button.textContent = "Copied";
      button.setAttribute("aria-live", "polite");
      setTimeout(function () { button.textContent = original; }, 1600);
    });
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  }, true);

  // htmx: ask before confirmed actions too (hx-confirm is handled by htmx itself).
})();
