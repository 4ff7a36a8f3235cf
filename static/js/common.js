/* Small helpers shared by the fan pages. No build step, no dependencies. */
(function () {
  "use strict";

  var clockOffsetMs = 0; // server time minus local time, learned from Date headers

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  function jitter(ms, spread) {
    var s = spread === undefined ? 0.3 : spread;
    return Math.round(ms * (1 - s + Math.random() * 2 * s));
  }

  function now() {
    return Date.now() + clockOffsetMs;
  }

  function learnClock(response) {
    var date = response.headers.get("Date");
    if (!date) return;
    var server = Date.parse(date);
    if (!isNaN(server)) {
      // Date has one-second resolution: only correct clocks that are clearly off.
      var offset = server - Date.now();
      clockOffsetMs = Math.abs(offset) > 2000 ? offset : 0;
    }
  }

  function retryAfterMs(response, fallbackMs) {
    var value = response.headers.get("Retry-After");
    if (value) {
      var seconds = Number(value);
      if (!isNaN(seconds)) return Math.max(1000, seconds * 1000);
      var when = Date.parse(value);
      if (!isNaN(when)) return Math.max(1000, when - Date.now());
    }
    return fallbackMs;
  }

  /**
   * fetch() that answers {status, body, ok} and waits out 429/503 answers as told by
   * Retry-After (onWait(ms, "busy") is told how long), up to `tries` attempts.
   * Network errors are retried with backoff too (onWait(ms, "network"): the request never
   * reached us, so say so — not that the server is busy); after the last try it throws.
   */
  async function api(path, options) {
    var opts = options || {};
    var tries = opts.tries || 5;
    var init = {
      method: opts.method || "GET",
      credentials: "same-origin",
      headers: { "Accept": "application/json" },
      cache: "no-store",
    };
    if (opts.headers) {
      Object.keys(opts.headers).forEach(function (k) { init.headers[k] = opts.headers[k]; });
    }
    if (opts.body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    var delay = 1000;
    for (var attempt = 1; ; attempt++) {
      var response;
      try {
        response = await fetch(path, init);
      } catch (err) {
        if (attempt >= tries) throw err;
        if (opts.onWait) opts.onWait(delay, "network");
        await sleep(jitter(delay));
        delay = Math.min(delay * 2, 30000);
        continue;
      }
      learnClock(response);
      if ((response.status === 429 || response.status === 503) && attempt < tries) {
        var wait = retryAfterMs(response, delay);
        if (opts.onWait) opts.onWait(wait, "busy");
        await sleep(jitter(wait, 0.2));
        delay = Math.min(delay * 2, 30000);
        continue;
      }
      var body = null;
      if (response.status !== 204) {
        try { body = await response.json(); } catch (e) { body = null; }
      }
      return { status: response.status, ok: response.ok, body: body, response: response };
    }
  }

  // Fan pages load static/js/i18n.js first: dates then speak the page's language (not the
  // browser's). The console has no i18n.js: it keeps the browser's own.
  function dateParts(when, options, timeZone) {
    if (window.I18N) return window.I18N.dateTime(when, options, timeZone);
    var d = when instanceof Date ? when : new Date(when);
    if (isNaN(d.getTime())) return "";
    if (timeZone) options.timeZone = timeZone;
    try {
      return new Intl.DateTimeFormat(undefined, options).format(d);
    } catch (e) {
      delete options.timeZone;
      return new Intl.DateTimeFormat(undefined, options).format(d);
    }
  }

  /** A date and time; with `timeZone` (the event's IANA zone) in that zone, the zone named. */
  function formatDateTime(iso, timeZone) {
    var options = {
      weekday: "short", day: "numeric", month: "short", year: "numeric",
      hour: "2-digit", minute: "2-digit",
    };
    if (timeZone) options.timeZoneName = "short";
    return dateParts(iso, options, timeZone);
  }

  function formatTime(iso) {
    return dateParts(iso, { hour: "2-digit", minute: "2-digit" });
  }

  /** A clock time in a time zone (an IANA name; the browser's own if missing or unknown),
   * with the zone named: "20:45 CET". */
  function formatClock(ms, timeZone) {
    return dateParts(new Date(ms), { hour: "2-digit", minute: "2-digit", timeZoneName: "short" },
      timeZone);
  }

  /** "2 d 03:04:05", "03:04:05" or "04:05" for a countdown. */
  function formatCountdown(ms) {
    var total = Math.max(0, Math.ceil(ms / 1000));
    var d = Math.floor(total / 86400);
    var h = Math.floor((total % 86400) / 3600);
    var m = Math.floor((total % 3600) / 60);
    var s = total % 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    var clock = (h || d ? two(h) + ":" : "") + two(m) + ":" + two(s);
    return d ? d + " d " + clock : clock;
  }

  /** Words for a duration: "less than a minute", "about 4 minutes", "about 1 h 20 min" — in
   * the page's language on fan pages; in English on the console, which has no i18n.js. */
  function formatDuration(seconds) {
    var t = window.I18N ? window.I18N.t : english;
    if (seconds < 60) return t("common.duration.under_minute");
    var minutes = Math.round(seconds / 60);
    if (minutes < 60) return t("common.duration.minutes", { count: minutes });
    var h = Math.floor(minutes / 60);
    var m = minutes % 60;
    return m ? t("common.duration.hours_minutes", { h: h, m: m }) : t("common.duration.hours", { h: h });
  }

  function english(key, params) {
    var p = params || {};
    return {
      "common.duration.under_minute": "less than a minute",  // console: English
      "common.duration.minutes": "about " + p.count + (p.count === 1 ? " minute" : " minutes"),  // console: English
      "common.duration.hours_minutes": "about " + p.h + " h " + p.m + " min",  // console: English
      "common.duration.hours": "about " + p.h + " h",  // console: English
    }[key];
  }

  function eventIdFromPath() {
    var parts = location.pathname.split("/");
    var i = parts.indexOf("e");
    return i >= 0 && parts[i + 1] ? decodeURIComponent(parts[i + 1]) : "";
  }

  function store(kind) {
    try {
      var s = window[kind];
      var probe = "__bo_probe__";
      s.setItem(probe, "1");
      s.removeItem(probe);
      return s;
    } catch (e) {
      var memory = {};
      return {
        getItem: function (k) { return Object.prototype.hasOwnProperty.call(memory, k) ? memory[k] : null; },
        setItem: function (k, v) { memory[k] = String(v); },
        removeItem: function (k) { delete memory[k]; },
      };
    }
  }

  window.BO = {
    sleep: sleep,
    jitter: jitter,
    now: now,
    api: api,
    formatDateTime: formatDateTime,
    formatTime: formatTime,
    formatCountdown: formatCountdown,
    formatClock: formatClock,
    formatDuration: formatDuration,
    eventIdFromPath: eventIdFromPath,
    local: store("localStorage"),
    session: store("sessionStorage"),
    queueKey: function (eventId) { return "bo_queue_" + eventId; },
    accessKey: function (eventId) { return "bo_access_" + eventId; },
    accessExpiresKey: function (eventId) { return "bo_access_" + eventId + "_expires"; },
  };
})();
