/* Small helpers shared by the fan pages. No build step, no dependencies. */
(function () {
  "use strict";

  // Server time minus local time. Learned from the `server_time` the API puts in queue
  // statuses, websocket messages and holds (millisecond resolution; the midpoint of the request
  // for HTTP), and kept for the tab so the seat page starts with what the waiting room learned;
  // until then from the Date header (one-second resolution: only clocks clearly off).
  var CLOCK_KEY = "bo_clock_offset";
  var clockOffsetMs = 0;
  var clockPrecise = false;

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

  /** Correct the clock with the server's time `iso`, seen in an answer to a request sent at
   * local `sentAt` and received at `receivedAt` (a websocket message: no `sentAt`). */
  function learnServerTime(iso, sentAt, receivedAt) {
    var server = Date.parse(iso);
    if (!iso || isNaN(server)) return;
    var local = sentAt ? (sentAt + receivedAt) / 2 : receivedAt;
    clockOffsetMs = Math.round(server - local);
    clockPrecise = true;
    try { window.sessionStorage.setItem(CLOCK_KEY, String(clockOffsetMs)); } catch (e) { /* private mode */ }
  }

  function restoreClock() {
    try {
      var saved = Number(window.sessionStorage.getItem(CLOCK_KEY));
      if (window.sessionStorage.getItem(CLOCK_KEY) !== null && isFinite(saved)) {
        clockOffsetMs = saved;
        clockPrecise = true;
      }
    } catch (e) { /* private mode: learn again */ }
  }
  restoreClock();

  /** Milliseconds until a deadline the server gave (RFC 3339), by the corrected clock. */
  function msLeft(iso) {
    return Date.parse(iso) - now();
  }

  function learnClock(response) {
    if (clockPrecise) return;
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
      var sentAt = Date.now();
      try {
        response = await fetch(path, init);
      } catch (err) {
        if (attempt >= tries) throw err;
        if (opts.onWait) opts.onWait(delay, "network");
        await sleep(jitter(delay));
        delay = Math.min(delay * 2, 30000);
        continue;
      }
      var receivedAt = Date.now();
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
      if (body && typeof body.server_time === "string") learnServerTime(body.server_time, sentAt, receivedAt);
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

  // ---- the turn alert: sound, vibration and a notification, opted into by the fan -----------

  var ALERTS_KEY = "bo_turn_alerts";
  var audio = null;

  function alertsOn() {
    return store("localStorage").getItem(ALERTS_KEY) === "on";
  }

  function notificationsState() {
    return "Notification" in window ? Notification.permission : "unsupported";
  }

  /** Two short beeps (Web Audio, no file to load); quiet failure where audio is not allowed. */
  function beep() {
    try {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return;
      audio = audio || new Ctx();
      if (audio.state === "suspended") audio.resume();
      [0, 0.35].forEach(function (at) {
        var osc = audio.createOscillator();
        var gain = audio.createGain();
        osc.frequency.value = 880;
        gain.gain.setValueAtTime(0.2, audio.currentTime + at);
        gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + at + 0.25);
        osc.connect(gain);
        gain.connect(audio.destination);
        osc.start(audio.currentTime + at);
        osc.stop(audio.currentTime + at + 0.3);
      });
    } catch (e) { /* no sound: the title and the notification still tell */ }
  }

  /** Turn alerts on — called from a click, the only moment a browser lets a page ask for
   * notifications or start audio. Answers the notification permission. */
  async function enableAlerts() {
    store("localStorage").setItem(ALERTS_KEY, "on");
    beep(); // the sound the fan will hear, and audio unlocked by this gesture
    if (notificationsState() === "default") {
      try { await Notification.requestPermission(); } catch (e) { /* refused or unsupported */ }
    }
    return notificationsState();
  }

  function disableAlerts() {
    store("localStorage").setItem(ALERTS_KEY, "off");
  }

  /** The fan's turn came: sound and vibration if they opted in, and a notification when this
   * tab is not the one they are looking at. */
  function alertTurn(title, body) {
    if (!alertsOn()) return;
    beep();
    try { if (navigator.vibrate) navigator.vibrate([300, 150, 300]); } catch (e) { /* no motor */ }
    if (document.visibilityState !== "hidden" || notificationsState() !== "granted") return;
    try {
      var n = new Notification(title, { body: body, tag: "boxoffice-turn", requireInteraction: true });
      n.onclick = function () { window.focus(); n.close(); };
    } catch (e) { /* e.g. Android Chrome wants a service worker: the sound and title remain */ }
  }

  window.BO = {
    sleep: sleep,
    jitter: jitter,
    now: now,
    msLeft: msLeft,
    learnServerTime: learnServerTime,
    api: api,
    formatDateTime: formatDateTime,
    formatTime: formatTime,
    formatCountdown: formatCountdown,
    formatClock: formatClock,
    formatDuration: formatDuration,
    eventIdFromPath: eventIdFromPath,
    alerts: {
      on: alertsOn,
      enable: enableAlerts,
      disable: disableAlerts,
      notifications: notificationsState,
      turn: alertTurn,
    },
    local: store("localStorage"),
    session: store("sessionStorage"),
    queueKey: function (eventId) { return "bo_queue_" + eventId; },
    accessKey: function (eventId) { return "bo_access_" + eventId; },
    accessExpiresKey: function (eventId) { return "bo_access_" + eventId + "_expires"; },
    turnKey: function (eventId) { return "bo_turn_" + eventId; },
  };
})();
