// Live calls: the server pushes the whole table as a Server-Sent Event whenever it changes.
// Rows are rebuilt with textContent only (no HTML from data). EventSource reconnects by itself.
"use strict";
(function () {
  const table = document.getElementById("live-calls");
  if (!table || !window.EventSource) return;
  const body = table.tBodies[0];
  const status = document.getElementById("live-status");
  const empty = document.getElementById("live-empty");
  const lost = document.getElementById("live-lost");
  const source = new EventSource(table.dataset.events);

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  source.addEventListener("calls", function (event) {
    const data = JSON.parse(event.data);
    lost.hidden = true;
    const rows = document.createDocumentFragment();
    for (const c of data.calls) {
      const tr = document.createElement("tr");
      tr.dataset.call = c.id;
      tr.dataset.state = c.state;
      const link = document.createElement("a");
      link.href = c.url;
      link.textContent = c.id;
      cell(tr, "").appendChild(link);
      cell(tr, c.tenant);
      cell(tr, c.scenario);
      cell(tr, c.to);
      const badge = document.createElement("span");
      badge.className = "state state-" + c.state;
      badge.textContent = c.state_name;
      cell(tr, "").appendChild(badge);
      cell(tr, String(c.attempts));
      cell(tr, String(c.age));
      rows.appendChild(tr);
    }
    body.replaceChildren(rows);
    if (status.textContent !== data.status) status.textContent = data.status;
    empty.hidden = data.calls.length > 0;
    table.dataset.updated = String(Date.now());
  });
  source.addEventListener("signed-out", function () {
    source.close();
    window.location.assign("/console/login?next=%2Fconsole%2F");
  });
  source.onerror = function () { lost.hidden = false; };
})();
