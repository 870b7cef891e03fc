// Coffer console: the one script. It follows a running copy job's progress
// on the job's page (the element with data-job) and reloads the page when
// the job ends. Everything else works without it.
(function () {
  "use strict";
  var el = document.querySelector("[data-job]");
  if (!el) { return; }
  var id = el.getAttribute("data-job");
  var bar = el.querySelector("progress");
  function tick() {
    fetch("/console/jobs/" + encodeURIComponent(id) + "/progress", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (j) {
        var pct = j.bytes_total > 0 ? Math.floor(j.bytes_done * 100 / j.bytes_total) : 100;
        if (bar) { bar.value = pct; bar.textContent = pct + "%"; }
        var label = el.querySelector(".pct");
        if (label) { label.textContent = pct + "%"; }
        if (j.state !== "running") { window.location.reload(); return; }
        window.setTimeout(tick, 2000);
      })
      .catch(function () { window.setTimeout(tick, 5000); });
  }
  window.setTimeout(tick, 2000);
})();
