/* The Now page: calls in progress, kept live. With the event stream, every call event refreshes the table at once
   (and every 5 s for the quality figures); without it, the table is polled every 2 s. Durations tick each second. */
"use strict";
(function () {
  var C = window.SipConsole;
  var tbody = document.getElementById("now-rows");
  var table = document.getElementById("now-table");
  var empty = document.getElementById("empty");
  var count = document.getElementById("count");
  var csrfMeta = document.querySelector('meta[name="csrf"]');
  var canHangup = table.getAttribute("data-can-hangup") === "yes";
  var rows = [];
  var skew = 0;          /* server clock minus ours */
  var streaming = false;
  var timer = null;
  var pending = null;

  function duration(r) {
    var start = r.answered_at || r.created_at;
    if (!start) return "";
    var s = Math.max(0, Date.now() / 1000 + skew - start);
    if (s < 60) return s.toFixed(1) + " s";
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
    var mm = (h && m < 10 ? "0" : "") + m, ss = (sec < 10 ? "0" : "") + sec;
    return h ? h + ":" + mm + ":" + ss : m + ":" + ss;
  }

  function cell(text, cls) { return C.el("td", cls ? { className: cls } : {}, text); }

  /* "4.37", or "4.37 / 3.92" when the far end's own figure (its RTCP reports) is there too */
  function pair(here, far, digits, unit) {
    function f(v) { return v === undefined ? "–" : v.toFixed(digits) + unit; }
    if (far === undefined) return here === undefined ? "" : f(here);
    return f(here) + " / " + f(far);
  }

  function row(r) {
    var tr = C.el("tr", { "data-id": r.id });
    var td = C.el("td");
    td.appendChild(C.el("a", { href: "/console/calls/" + encodeURIComponent(r.id), className: "state state-" + r.state }, r.state));
    tr.appendChild(td);
    [r.direction, r.trunk, r.from, r.to, r.agent, r.node].forEach(function (v) { tr.appendChild(cell(v)); });
    tr.appendChild(cell(duration(r), "num duration"));
    tr.appendChild(cell(r.codec + (r.rate ? " " + (r.rate / 1000).toFixed(1) + " kHz" : "")));
    tr.appendChild(cell(r.srtp || "no"));
    var q = r.quality;
    if (q) {
      var mos = cell(pair(q.mos, q.out_mos, 2, ""), "num mos" + (r.quality_low ? " bad" : ""));
      if (q.out_mos !== undefined || q.rtt_ms !== undefined) {
        mos.title = "received here / at the far end (its RTCP)" + (q.rtt_ms !== undefined ? "; round trip " + q.rtt_ms.toFixed(0) + " ms" : "");
      }
      tr.appendChild(mos);
      tr.appendChild(cell(pair(q.jitter_ms, q.out_jitter_ms, 1, " ms"), "num"));
      tr.appendChild(cell(pair(q.loss_pct, q.out_loss_pct, 1, " %"), "num"));
    } else {
      ["–", "–", "–"].forEach(function (v) { tr.appendChild(cell(v, "muted")); });
    }
    if (canHangup) {
      var form = C.el("form", { method: "post", action: "/console/calls/" + encodeURIComponent(r.id) + "/hangup", className: "inline" });
      form.appendChild(C.el("input", { type: "hidden", name: "csrf", value: csrfMeta ? csrfMeta.content : "" }));
      form.appendChild(C.el("button", { type: "submit", className: "danger" }, "Hang up"));
      var action = C.el("td");
      action.appendChild(form);
      tr.appendChild(action);
    }
    return tr;
  }

  function render() {
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    rows.forEach(function (r) { tbody.appendChild(row(r)); });
    empty.hidden = rows.length > 0;
    count.textContent = String(rows.length);
  }

  function tick() {
    var cells = tbody.querySelectorAll("td.duration");
    for (var i = 0; i < cells.length && i < rows.length; i++) cells[i].textContent = duration(rows[i]);
  }

  function refresh() {
    fetch("/console/data/calls", { credentials: "same-origin", cache: "no-store" }).then(function (resp) {
      if (resp.status === 401) {
        C.status("Session expired: log in again.", false);
        window.location.assign("/console/login");
        return null;
      }
      return resp.ok ? resp.json() : null;
    }).then(function (body) {
      if (!body) return;
      skew = body.now - Date.now() / 1000;
      rows = body.calls;
      render();
    }).catch(function () {
      C.status("The orchestrator cannot be reached: retrying…", false);
    });
  }

  function schedule() {
    if (timer) clearInterval(timer);
    timer = setInterval(refresh, streaming ? 5000 : 2000);
  }

  C.live(function () {
    if (pending) return;
    pending = setTimeout(function () { pending = null; refresh(); }, 100);
  }, function (on) {
    streaming = on;
    C.status(on ? "Live: event stream connected." : "Live updates unavailable (no event stream): polling every 2 s.", on);
    schedule();
    refresh();
  });
  setInterval(tick, 1000);
  schedule();
  refresh();
})();
