// Coffer console: the one script. It follows a running copy job's progress
// on the job's page (the element with data-job) and reloads the page when
// the job ends, or when the answer is not the job's progress (signed out,
// say: the reloaded page says what happened). Everything else works
// without it.
(function () {
  "use strict";
  var el = document.querySelector("[data-job]");
  if (!el) { return; }
  var id = el.getAttribute("data-job");
  var bar = el.querySelector("progress");
  var label = el.querySelector(".pct");
  function tick() {
    fetch("/console/jobs/" + encodeURIComponent(id) + "/progress",
          { credentials: "same-origin", redirect: "manual" })
      .then(function (r) {
        var json = (r.headers.get("content-type") || "").indexOf("application/json") === 0;
        if (!r.ok || !json) { window.location.reload(); return null; }
        return r.json();
      })
      .then(function (j) {
        if (!j) { return; }
        var pct = j.bytes_total > 0 ? Math.min(100, Math.floor(j.bytes_done * 100 / j.bytes_total)) : 100;
        if (bar) { bar.value = pct; }
        if (label) { label.textContent = pct + "%"; }
        if (j.state !== "running") { window.location.reload(); return; }
        window.setTimeout(tick, 2000);
      })
      .catch(function () { window.setTimeout(tick, 5000); });
  }
  window.setTimeout(tick, 2000);
})();
