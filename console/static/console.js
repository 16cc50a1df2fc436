// Rampart console: the only script, loaded from this origin (the CSP allows no other). It changes
// nothing on the server: on a request's page it asks for the request's state once a second and
// reloads the page when a decision or a new approval lands, so the requester sees the grant
// without reloading by hand.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) { return; }
  var url = live.getAttribute("data-state-url");
  var version = live.getAttribute("data-version");
  var state = live.getAttribute("data-state");
  if (state !== "pending") { return; }
  // Once the person submits a form (an approval, a denial) or leaves, the page is going away:
  // a reload now would abort that navigation, and the approval's answer with it (the approval
  // itself changes the version this polls for).
  var leaving = false;
  document.addEventListener("submit", function () { leaving = true; }, true);
  window.addEventListener("pagehide", function () { leaving = true; });
  function poll() {
    if (leaving) { return; }
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" }, cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (leaving) { return; }
        if (s && String(s.version) !== version) { window.location.reload(); return; }
        window.setTimeout(poll, 1000);
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 1000);
})();
