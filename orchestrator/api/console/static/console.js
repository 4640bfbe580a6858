/* sipagent console: what every page shares. No inline script anywhere (the CSP forbids it): data comes from
   <script type="application/json"> blocks (rendered with Jinja2's tojson) or from /console/data/*. */
"use strict";
(function () {
  var EVENT_TYPES = ["call.started", "call.ringing", "call.answered", "call.transferred", "call.ended",
                     "agent.failed", "trunk.down", "trunk.up"];

  function status(text, on) {
    var el = document.getElementById("live");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("on", !!on);
    el.classList.toggle("off", !on);
  }

  /* Subscribe to the live event stream (/console/data/events relays GET /v1/events). onEvent(type, data) for
     each event; onState(true|false) when the stream opens or is unavailable (the page then polls). */
  function live(onEvent, onState) {
    if (!window.EventSource) {
      onState(false);
      return null;
    }
    var opened = false;
    var source = new EventSource("/console/data/events");
    source.onopen = function () { opened = true; onState(true); };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED || !opened) {
        source.close();
        onState(false);
      } else {
        onState(false);  /* reconnecting: EventSource retries by itself, the page polls meanwhile */
      }
    };
    function handler(type) {
      return function (ev) {
        var data = null;
        try { data = JSON.parse(ev.data); } catch (e) { data = null; }
        onEvent(type, data, ev.lastEventId);
      };
    }
    EVENT_TYPES.forEach(function (t) { source.addEventListener(t, handler(t)); });
    source.onmessage = handler("message");
    return source;
  }

  function readJson(id) {
    var el = document.getElementById(id);
    if (!el) return null;
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  }

  function utcDate(ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); }

  /* x-axis labels in UTC, 24-hour: HH:MM (seconds too when asked) */
  function utcTicks(withSeconds) {
    return function (u, splits) {
      return splits.map(function (v) { return new Date(v * 1e3).toISOString().slice(11, withSeconds ? 19 : 16); });
    };
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "className") node.className = attrs[k]; else node.setAttribute(k, attrs[k]);
    });
    if (text !== undefined && text !== null) node.textContent = String(text);  /* text only: never HTML */
    return node;
  }

  window.SipConsole = { live: live, status: status, readJson: readJson, utcDate: utcDate, utcTicks: utcTicks, el: el };
})();
