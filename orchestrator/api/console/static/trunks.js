/* Trunks and nodes: calls and failures per trunk over the last hour (uPlot), and the trunks' live OPTIONS
   state from trunk.down / trunk.up events when the event stream is there. */
"use strict";
(function () {
  var C = window.SipConsole;
  var COLOURS = ["#1d4f91", "#17703a", "#7a3e9d", "#00707a", "#8a5300", "#394457"];
  var data = C.readJson("hour-data");
  var target = document.getElementById("hour-chart");
  if (data && target && window.uPlot) {
    var names = Object.keys(data.trunks).sort(function (a, b) { return data.trunks[b].total - data.trunks[a].total; }).slice(0, 6);
    var series = [{ label: "time (UTC)" }];
    var columns = [data.t];
    names.forEach(function (name, i) {
      var colour = COLOURS[i % COLOURS.length];
      series.push({ label: name + " calls", stroke: colour, width: 2, points: { show: true } });
      columns.push(data.trunks[name].calls);
      series.push({ label: name + " failures", stroke: "#b3261e", width: 1.5, dash: [6, 4], points: { show: true } });
      columns.push(data.trunks[name].failures);
    });
    if (names.length) {
      new uPlot({
        width: Math.max(320, target.clientWidth || 800), height: 220, tzDate: C.utcDate,
        scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(4, max + 1)]; } } },
        axes: [{ values: C.utcTicks(false) }, { label: "calls per 5 min" }],
        series: series
      }, columns, target);
    }
  }

  function mark(name, up) {
    var rows = document.querySelectorAll("#trunk-table tr[data-trunk]");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-trunk") !== name) continue;
      var cell = rows[i].querySelector(".trunk-live");
      cell.textContent = "";
      var badge = C.el("span", { className: "outcome " + (up ? "ok" : "bad") }, (up ? "✓ up" : "✗ down") + " at " + new Date().toISOString().slice(11, 19));
      cell.appendChild(badge);
      cell.classList.remove("muted");
    }
  }

  C.live(function (type, payload) {
    if ((type === "trunk.down" || type === "trunk.up") && payload) {
      var body = payload.data && typeof payload.data === "object" ? payload.data : payload;
      var name = body.trunk || body.name;
      if (typeof name === "string") mark(name, type === "trunk.up");
    }
  }, function (on) {
    C.status(on ? "Live: event stream connected (trunk up/down shows as it happens)."
                : "Live updates unavailable (no event stream): reload for fresh figures.", on);
  });
})();
