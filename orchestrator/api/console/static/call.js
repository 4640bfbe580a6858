/* One call's page: the quality chart (uPlot) from the record's series; a live call's page reloads every 5 s.
   When the far end sent RTCP, its view (what it receives from us) is drawn too: dashed, with the round trip on
   an axis of its own. */
"use strict";
(function () {
  var C = window.SipConsole;
  if (document.querySelector("[data-live='yes']")) setTimeout(function () { window.location.reload(); }, 5000);
  var data = C.readJson("quality-data");
  var target = document.getElementById("quality-chart");
  if (!data || !target || !window.uPlot) return;
  var width = Math.max(320, target.clientWidth || 800);
  var far = Array.isArray(data.out_mos);
  var rtt = Array.isArray(data.rtt_ms);
  var axes = [
    { values: C.utcTicks(true) },
    { scale: "mos", label: "MOS" },
    { scale: "right", side: 1, label: "jitter ms / loss %", grid: { show: false } }
  ];
  var series = [
    { label: "time (UTC)" },
    { label: "MOS", scale: "mos", stroke: "#1d4f91", width: 2, points: { show: true } },
    { label: "jitter (ms)", scale: "right", stroke: "#d08a00", width: 1.5 },
    { label: "loss (%)", scale: "right", stroke: "#b3261e", width: 1.5, dash: [6, 4] }
  ];
  var columns = [data.t, data.mos, data.jitter_ms, data.loss_pct];
  if (far) {
    series.push(
      { label: "far-end MOS", scale: "mos", stroke: "#5b8fd1", width: 2, dash: [4, 3], points: { show: true } },
      { label: "far-end jitter (ms)", scale: "right", stroke: "#e8b24a", width: 1.5, dash: [4, 3] },
      { label: "far-end loss (%)", scale: "right", stroke: "#e0645c", width: 1.5, dash: [2, 3] }
    );
    columns.push(data.out_mos, data.out_jitter_ms || data.t.map(function () { return null; }),
                 data.out_loss_pct || data.t.map(function () { return null; }));
  }
  if (rtt) {
    axes.push({ scale: "rtt", side: 1, label: "round trip ms", grid: { show: false } });
    series.push({ label: "round trip (ms)", scale: "rtt", stroke: "#6a4c93", width: 1 });
    columns.push(data.rtt_ms);
  }
  var opts = {
    width: width, height: 260, tzDate: C.utcDate,
    scales: {
      x: { time: true }, mos: { range: [1, 4.5] },
      right: { range: function (u, min, max) { return [0, Math.max(5, max * 1.1)]; } },
      rtt: { range: function (u, min, max) { return [0, Math.max(50, max * 1.1)]; } }
    },
    axes: axes,
    series: series
  };
  new uPlot(opts, columns, target);
})();
