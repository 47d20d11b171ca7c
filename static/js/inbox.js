// Inbox behaviour: a "select all" box for bulk approval (the page works without it).
(function () {
  "use strict";

  function boxes(formId) {
    return document.querySelectorAll('input[type=checkbox][name=grant][form="' + formId + '"]');
  }

  function ready() {
    document.querySelectorAll("input[data-select-all]").forEach(function (all) {
      var wrapper = all.closest(".inbox-select-all");
      if (wrapper) wrapper.hidden = false;
    });
  }

  document.addEventListener("change", function (event) {
    var el = event.target;
    if (!el.matches) return;
    if (el.matches("input[data-select-all]")) {
      boxes(el.getAttribute("data-select-all")).forEach(function (box) { box.checked = el.checked; });
    } else if (el.matches('input[type=checkbox][name=grant][form]')) {
      var all = document.querySelector('input[data-select-all="' + el.getAttribute("form") + '"]');
      if (!all) return;
      var list = Array.prototype.slice.call(boxes(el.getAttribute("form")));
      var checked = list.filter(function (box) { return box.checked; }).length;
      all.checked = checked === list.length && list.length > 0;
      all.indeterminate = checked > 0 && checked < list.length;
    }
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
