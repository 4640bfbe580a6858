/* One call's page: the quality chart (uPlot) from the record's series; a live call's page reloads every 5 s. */
"use strict";
(function () {
  var C = window.SipConsole;
  if (document.querySelector("[data-live='yes']")) setTimeout(function () { window.location.reload(); }, 5000);
  var data = C.readJson("quality-data");
  var target = document.getElementById("quality-chart");
  if (!data || !target || !window.uPlot) return;
  var width = Math.max(320, target.clientWidth || 800);
  var opts = {
    width: width, height: 260, tzDate: C.utcDate,
    scales: { x: { time: true }, mos: { range: [1, 4.5] }, right: { range: function (u, min, max) { return [0, Math.max(5, max * 1.1)]; } } },
    axes: [
      { values: C.utcTicks(true) },
      { scale: "mos", label: "MOS" },
      { scale: "right", side: 1, label: "jitter ms / loss %", grid: { show: false } }
    ],
    series: [
      { label: "time (UTC)" },
      { label: "MOS", scale: "mos", stroke: "#1d4f91", width: 2, points: { show: true } },
      { label: "jitter (ms)", scale: "right", stroke: "#d08a00", width: 1.5 },
      { label: "loss (%)", scale: "right", stroke: "#b3261e", width: 1.5, dash: [6, 4] }
    ]
  };
  new uPlot(opts, [data.t, data.mos, data.jitter_ms, data.loss_pct], target);
})();
