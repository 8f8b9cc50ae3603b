// The worklist refreshes its rows every data-refresh seconds (same filters), and a row opens the viewer.
(function () {
  "use strict";
  var table = document.getElementById("worklist");
  if (!table) return;
  var body = table.querySelector("tbody");
  var status = document.getElementById("refresh-status");

  function openRow(event) {
    var row = event.target.closest("tr[data-href]");
    if (!row || event.target.closest("a, button, input, select")) return;
    window.location.assign(row.getAttribute("data-href"));
  }
  table.addEventListener("click", openRow);
  table.addEventListener("keydown", function (event) {
    if (event.key === "Enter") openRow(event);
  });

  function refresh() {
    var url = "/ui/worklist/rows" + window.location.search;
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.redirected || response.status === 401) { window.location.assign("/ui/signin"); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === null) return;
        body.innerHTML = html;
        if (status) status.textContent = status.getAttribute("data-done") + " " + new Date().toLocaleTimeString(document.documentElement.lang);
      })
      .catch(function () { /* keep the rows shown; the next refresh tries again */ });
  }
  setInterval(refresh, 1000 * Math.max(2, Number(table.getAttribute("data-refresh")) || 30));
})();
