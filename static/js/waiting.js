/* The waiting room: join (idempotent), follow the queue over a websocket, fall back to polling.
 *
 * Position: a `status` message gives the exact position and the admitted_total it was measured
 * at; each `tick` carries the current admitted_total, so the position now is
 *   max(1, status.position - (tick.admitted_total - status.admitted_total))
 * (server/core/rules.py estimated_position, its reference model). ETA = ceil(position * 60 /
 * rate_per_min), unknown while paused or while no rate is known; rate_per_min is the server's
 * estimate (configured and measured rates blended, smoothed: rules.blended_rate,
 * rules.smoothed_rate), the same one behind QueueStatus.eta_seconds. Shown as a clock time in
 * the venue's zone with how long ago the server last told us.
 */
(function () {
  "use strict";

  var BO = window.BO;
  var t = window.I18N.t;
  var PING_MS = 20000;            // client ping cadence
  var SILENCE_MS = 55000;         // no message for this long: the socket is dead, reconnect
  var CONNECT_TIMEOUT_MS = 10000; // a socket that does not open in time counts as a failure
  var FAILS_BEFORE_POLLING = 3;   // failed websocket attempts before polling starts
  var POLL_MS = 4000;             // polling fallback cadence (jittered)
  var MAX_BACKOFF_MS = 30000;
  var CHALLENGE_TRIES = 3;        // fresh challenges tried when a join refuses the solution

  var eventId = BO.eventIdFromPath();
  var queueKey = BO.queueKey(eventId);
  var firstKey = "bo_first_" + eventId;

  var S = {
    event: null,
    generation: 0,      // bumped by every (re)entry so stale loops and sockets stand down
    queueId: null,
    state: "loading",
    finished: false,    // admitted or ended: no more sockets or polling
    base: null,         // {position, admitted}: the last exact position and when it was taken
    lastAdmitted: null, // admitted_total of the latest tick
    position: null,
    first: null,        // position when first seen, for the progress bar
    rate: null,
    paused: false,
    etaAt: null,        // when the turn should come (ms), from the last estimate
    updatedAt: 0,       // when the server last told us the position or the rate (local ms)
    returnWindow: 1800, // seconds a fan may be away and keep the place (the server says)
    ws: null,
    wsFails: 0,
    wsTimer: null,
    pingTimer: null,
    lastMessageAt: 0,
    polling: false,
    nextCheckAt: 0,     // scheduled/prequeue: when to look again
    checkingSince: 0,   // when the current bot check started (ms, local clock)
    accessExpiresAt: null,
    announced: { position: null, at: 0 },
    orders: [],         // this visitor's paid orders of the event (GET …/my-orders)
  };

  function $(id) { return document.getElementById(id); }

  // ---- announcements (aria-live polite, meaningful changes only) ----------------------------

  var announceTimer = null;
  function speak(text) {
    var region = $("announcer");
    clearTimeout(announceTimer);
    region.textContent = "";
    announceTimer = setTimeout(function () { region.textContent = text; }, 60);
  }

  function announcePosition(pos) {
    var a = S.announced;
    var now = Date.now();
    if (pos === a.position) return;
    var first = a.position === null;
    var big = !first && Math.abs(a.position - pos) >= Math.max(1, Math.ceil(a.position * 0.1));
    var near = pos <= 3;
    if (first || near || (big && now - a.at >= 15000) || now - a.at >= 60000) {
      a.position = pos;
      a.at = now;
      speak(pos === 1 ? t("waiting.announce.next") : t("waiting.announce.number", { position: pos }));
    }
  }

  // ---- connection indicator -----------------------------------------------------------------

  function setConnection(mode, text) {
    var el = $("connection");
    el.setAttribute("data-mode", mode);
    $("connection-text").textContent = text;
    el.hidden = mode === "none";
  }

  // ---- views --------------------------------------------------------------------------------

  var VIEWS = ["loading", "checking", "blocked", "scheduled", "prequeue", "waiting", "admitted",
    "sold_out", "closed", "expired", "tickets", "error"];
  var REOPEN_CHECK_MS = 15000;    // sold out: how often to look whether tickets came back
  var TONES = {  // each badge's words: waiting.badge.<state>
    loading: "info", checking: "info", blocked: "bad", scheduled: "info", prequeue: "info",
    waiting: "info", admitted: "ok", sold_out: "bad", closed: "bad", expired: "warn",
    tickets: "ok", error: "bad",
  };
  var TITLED = { admitted: 1, sold_out: 1, closed: 1, expired: 1 };
  var SPOKEN = { checking: 1, scheduled: 1, prequeue: 1, admitted: 1, sold_out: 1, closed: 1,
    expired: 1, tickets: 1, error: 1 };
  var IN_LINE = { loading: 1, checking: 1, scheduled: 1, prequeue: 1, waiting: 1 };
  var FOCUS_ON = { admitted: 1, sold_out: 1, closed: 1, expired: 1, tickets: 1, error: 1, blocked: 1 };

  function showView(state) {
    // A buyer whose place ended sees their tickets, not "your place has expired".
    if (state === "expired" && S.orders.length) state = "tickets";
    var changed = state !== S.state;
    S.state = state;
    VIEWS.forEach(function (v) { $("view-" + v).hidden = v !== state; });
    var panel = $("panel");
    panel.setAttribute("data-state", state);
    panel.classList.toggle("admitted", state === "admitted" || state === "tickets");
    $("my-tickets").hidden = !S.orders.length || state === "tickets";
    $("guidance").hidden = !IN_LINE[state];
    var badge = $("state-badge");
    badge.textContent = t("waiting.badge." + state);
    badge.setAttribute("data-tone", TONES[state]);
    var heading = $("view-" + state).querySelector("h2");
    if (heading && panel.getAttribute("aria-labelledby") !== heading.id) {
      if (!heading.id) heading.id = "heading-" + state;
      panel.setAttribute("aria-labelledby", heading.id);
    }
    if (!changed) return;
    if (FOCUS_ON[state] && heading) heading.focus();
    var name = S.event ? S.event.name : t("common.brand");
    if (TITLED[state]) document.title = t("waiting.title_state." + state, { name: name });
    if (state === "blocked") {
      speak(t("waiting.spoken.blocked", { reason: $("blocked-text").textContent }));
    } else if (SPOKEN[state]) {
      speak(t("waiting.spoken." + state));
    }
  }

  function showError(text) {
    stopEverything();
    $("error-text").textContent = text;
    setConnection("none", "");
    showView("error");
  }

  function renderEvent(ev) {
    S.event = ev;
    $("event-name").textContent = ev.name;
    $("event-meta").textContent = t("common.venue_and_date", {
      venue: ev.venue, date: BO.formatDateTime(ev.starts_at, ev.timezone),
    });
    document.title = t("waiting.title_event", { name: ev.name });
    $("scheduled-sale").textContent = t("waiting.scheduled.sale", {
      date: BO.formatDateTime(ev.sale_starts_at, ev.timezone),
    });
    window.EventPage.render(ev);
  }

  function renderWaiting() {
    var pos = S.position;
    $("position").textContent = pos == null ? "–" : window.I18N.number(pos);
    $("ahead").textContent = pos == null ? "–"
      : pos <= 1 ? t("waiting.ahead_none") : window.I18N.number(pos - 1);
    var eta = $("eta");
    var note = $("eta-note");
    $("paused-note").hidden = !S.paused;
    S.etaAt = null;
    if (S.paused) {
      eta.textContent = t("waiting.eta.paused");
      note.textContent = "";
    } else if (pos == null || !S.rate || S.rate <= 0) {
      eta.textContent = t("waiting.eta.unknown");
      note.textContent = t("waiting.eta.not_moving");
    } else {
      var seconds = Math.ceil(pos * 60 / S.rate);
      eta.textContent = BO.formatDuration(seconds);
      S.etaAt = BO.now() + seconds * 1000;
      var r = S.rate < 10 ? Math.round(S.rate * 10) / 10 : Math.round(S.rate);
      note.textContent = t("waiting.eta.basis", { count: r });
    }
    renderEtaClock();
    var pct = 0;
    if (pos != null && S.first) pct = Math.max(0, Math.min(100, Math.round((S.first - pos) / S.first * 100)));
    $("progress-fill").style.width = pct + "%";
    var bar = $("progress");
    bar.setAttribute("aria-valuenow", String(pct));
    bar.setAttribute("aria-valuetext", t("waiting.progress_text", {
      percent: window.I18N.number(pct / 100, { style: "percent" }),
    }));
    if (pos != null) {
      document.title = t("waiting.title_position", {
        position: pos, name: S.event ? S.event.name : t("common.brand"),
      });
      announcePosition(pos);
    }
  }

  /** "Your turn around 20:45 CET · updated 3 s ago" (the venue's zone). */
  function renderEtaClock() {
    var el = $("eta-clock");
    el.hidden = S.etaAt == null || S.state !== "waiting";
    if (el.hidden) return;
    var ago = Math.max(0, Math.round((Date.now() - S.updatedAt) / 1000));
    el.textContent = t("waiting.eta_clock", {
      time: BO.formatClock(S.etaAt, S.event && S.event.timezone), seconds: ago,
    });
  }

  function rememberFirst(pos) {
    if (pos == null) return;
    if (S.first == null || pos > S.first) {
      S.first = pos;
      BO.local.setItem(firstKey, JSON.stringify({ q: S.queueId, p: pos }));
    }
  }

  function loadFirst() {
    try {
      var saved = JSON.parse(BO.local.getItem(firstKey) || "null");
      S.first = saved && saved.q === S.queueId ? saved.p : null;
    } catch (e) {
      S.first = null;
    }
  }

  // ---- state changes ------------------------------------------------------------------------

  /** An exact status, from the websocket (with admitted_total) or from HTTP (without). */
  function applyStatus(st, admittedTotal) {
    if (st.return_window_seconds) { S.returnWindow = st.return_window_seconds; showWindow(); }
    if (st.state === "admitted") {
      handleAdmitted(st.access_token, st.access_expires_at, st.next_url);
      return;
    }
    if (st.state === "sold_out") { handleClosed("sold_out"); return; }
    if (st.state === "closed") { handleClosed("ended"); return; }
    if (st.state === "expired") { handleClosed("expired"); return; }
    if (st.rate_per_min !== undefined) S.rate = st.rate_per_min;
    S.updatedAt = Date.now();
    if (typeof st.paused === "boolean") S.paused = st.paused;
    if (st.state === "prequeue") {
      S.base = null;
      S.position = null;
      S.nextCheckAt = 0;
      showView("prequeue");
      updateClock();
      return;
    }
    // waiting
    if (st.position != null) {
      S.base = { position: st.position, admitted: admittedTotal == null ? null : admittedTotal };
      S.position = st.position;
      rememberFirst(st.position);
    } else {
      S.nextCheckAt = Date.now() + BO.jitter(3000);
    }
    showView("waiting");
    renderWaiting();
  }

  function onTick(tick) {
    S.lastAdmitted = tick.admitted_total;
    S.rate = tick.rate_per_min;
    S.updatedAt = Date.now();
    S.paused = !!tick.paused;
    if (S.state === "prequeue") {
      if (tick.state === "on_sale") refreshExact();
      return;
    }
    if (S.state !== "waiting") return;
    if (S.base) {
      if (S.base.admitted == null) S.base.admitted = tick.admitted_total;
      S.position = Math.max(1, S.base.position - Math.max(0, tick.admitted_total - S.base.admitted));
    }
    renderWaiting();
  }

  /** Admitted: keep the access token and its expiry (the server's: the one deadline both pages
   * count down to) and move on to the seat map by itself — except when the fan came back to
   * this page with the browser's Back button, who gets the link instead of a loop. */
  function handleAdmitted(token, expiresAt, nextUrl) {
    S.finished = true;
    stopEverything();
    if (token) {
      BO.session.setItem(BO.accessKey(eventId), token);
      if (expiresAt) BO.session.setItem(BO.accessExpiresKey(eventId), expiresAt);
    }
    S.accessExpiresAt = expiresAt || null;
    var link = $("admitted-link");
    link.href = nextUrl || "/e/" + encodeURIComponent(eventId) + "/seats";
    $("progress-fill").style.width = "100%";
    setConnection("none", "");
    showView("admitted");
    updateClock();
    if (token && !cameBack()) {
      BO.session.setItem(BO.turnKey(eventId), "new"); // the seat page greets and alerts once
      $("admitted-moving").hidden = false;
      location.assign(link.href);
    }
  }

  function cameBack() {
    var nav = window.performance && performance.getEntriesByType
      ? performance.getEntriesByType("navigation")[0] : null;
    return !!(nav && nav.type === "back_forward");
  }

  function handleClosed(reason) {
    S.finished = true;
    stopEverything();
    setConnection("none", "");
    if (reason === "sold_out") {
      S.nextCheckAt = Date.now() + BO.jitter(REOPEN_CHECK_MS);
      showView("sold_out");
    }
    else if (reason === "expired") showView("expired");
    else showView("closed");
  }

  function placeLost() {
    BO.local.removeItem(queueKey);
    $("expired-text").textContent = t("waiting.place_lost", { window: windowText() });
    handleClosed("expired");
  }

  // ---- clocks: countdowns for scheduled / prequeue / admitted -------------------------------

  function updateClock() {
    var ev = S.event;
    var now = BO.now();
    if (S.state === "checking" && S.checkingSince) {
      var spent = Math.floor((Date.now() - S.checkingSince) / 1000);
      $("checking-elapsed").textContent = spent < 1 ? "" : t("waiting.checking.elapsed", { count: spent });
    } else if (S.state === "scheduled" && ev) {
      var opens = Date.parse(ev.prequeue_opens_at);
      $("scheduled-countdown").textContent = BO.formatCountdown(opens - now);
      if (Date.now() >= S.nextCheckAt) {
        S.nextCheckAt = Date.now() + BO.jitter(8000);
        enterQueue();
      }
    } else if (S.state === "prequeue" && ev) {
      var starts = Date.parse(ev.sale_starts_at);
      var left = starts - now;
      $("prequeue-countdown").textContent = left > 0 ? BO.formatCountdown(left) : t("waiting.prequeue.starting");
      if (left < -2000 && Date.now() >= S.nextCheckAt) {
        // no tick told us yet (polling, or a slow broadcast): ask for our place
        S.nextCheckAt = Date.now() + BO.jitter(5000);
        refreshExact();
      }
    } else if (S.state === "waiting" && S.etaAt != null) {
      renderEtaClock();
    }
    if (S.state === "waiting" && S.position == null && S.nextCheckAt
               && Date.now() >= S.nextCheckAt) {
      S.nextCheckAt = Date.now() + BO.jitter(5000);
      refreshExact();
    } else if (S.state === "sold_out" && S.nextCheckAt && Date.now() >= S.nextCheckAt) {
      S.nextCheckAt = Date.now() + BO.jitter(REOPEN_CHECK_MS);
      checkReopened();
    } else if (S.state === "admitted" && S.accessExpiresAt) {
      var rest = BO.msLeft(S.accessExpiresAt);
      if (rest <= 0) {
        S.accessExpiresAt = null;
        BO.session.removeItem(BO.accessKey(eventId));
        BO.session.removeItem(BO.accessExpiresKey(eventId));
        $("expired-text").textContent = t("waiting.expired.turn_ran_out");
        showView("expired");
        return;
      }
      $("admitted-expiry").textContent = t("waiting.admitted.time_left", {
        countdown: BO.formatCountdown(rest),
        time: BO.formatClock(Date.parse(S.accessExpiresAt), S.event && S.event.timezone),
      });
    }
  }

  // ---- websocket ----------------------------------------------------------------------------

  function wsUrl() {
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + location.host + "/api/queue/" + encodeURIComponent(S.queueId) + "/ws";
  }

  function stopPing() {
    clearInterval(S.pingTimer);
    S.pingTimer = null;
  }

  function closeSocket() {
    var ws = S.ws;
    S.ws = null;
    stopPing();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000); } catch (e) { /* already closed */ }
    }
  }

  function stopEverything() {
    closeSocket();
    clearTimeout(S.wsTimer);
    S.wsTimer = null;
    S.polling = false;
  }

  function connect() {
    if (S.finished || !S.queueId) return;
    clearTimeout(S.wsTimer);
    S.wsTimer = null;
    if (S.ws) return;
    var gen = S.generation;
    var opened = false;
    var openedAt = 0;
    var ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (e) {
      socketFailed(gen, false, 0);
      return;
    }
    S.ws = ws;
    var timeout = setTimeout(function () {
      if (!opened) { try { ws.close(); } catch (e) { /* ignore */ } }
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = function () {
      opened = true;
      openedAt = Date.now();
      clearTimeout(timeout);
      S.polling = false;
      S.lastMessageAt = Date.now();
      setConnection("live", t("waiting.connection.live"));
      stopPing();
      S.pingTimer = setInterval(function () {
        if (Date.now() - S.lastMessageAt > SILENCE_MS) {
          try { ws.close(); } catch (e) { /* ignore */ }
          return;
        }
        try { ws.send(JSON.stringify({ type: "ping" })); } catch (e) { /* close follows */ }
      }, PING_MS);
    };
    ws.onmessage = function (e) {
      S.lastMessageAt = Date.now();
      var msg;
      try { msg = JSON.parse(e.data); } catch (err) { return; }
      if (gen !== S.generation) return;
      if (msg && msg.server_time) BO.learnServerTime(msg.server_time, 0, S.lastMessageAt);
      handleMessage(msg);
    };
    ws.onerror = function () { /* onclose follows */ };
    ws.onclose = function () {
      clearTimeout(timeout);
      if (S.ws === ws) { S.ws = null; stopPing(); }
      socketFailed(gen, opened, openedAt);
    };
  }

  function socketFailed(gen, opened, openedAt) {
    if (gen !== S.generation || S.finished) return;
    if (opened && Date.now() - openedAt > 10000) S.wsFails = 0; // a healthy socket that dropped
    S.wsFails += 1;
    var cap = Math.min(MAX_BACKOFF_MS, 1000 * Math.pow(2, S.wsFails - 1));
    var delay = Math.round(cap / 2 + Math.random() * cap / 2); // exponential backoff, jitter
    if (S.wsFails >= FAILS_BEFORE_POLLING) {
      startPolling();
    } else {
      setConnection("connecting", t("waiting.connection.reconnecting"));
    }
    S.wsTimer = setTimeout(connect, delay);
  }

  function handleMessage(msg) {
    switch (msg.type) {
      case "status": applyStatus(msg, msg.admitted_total); break;
      case "tick": onTick(msg); break;
      case "admitted": handleAdmitted(msg.access_token, msg.access_expires_at, msg.next_url); break;
      case "closed": handleClosed(msg.reason); break;
      case "pong": break;
      case "error": if (window.console) console.warn("waiting room:", msg.error, msg.detail); break;
      default: break;
    }
  }

  // ---- polling fallback ---------------------------------------------------------------------

  function startPolling() {
    if (S.polling || S.finished) return;
    S.polling = true;
    setConnection("polling", t("waiting.connection.polling"));
    pollLoop(S.generation);
  }

  async function pollLoop(gen) {
    while (S.polling && !S.finished && gen === S.generation) {
      await refreshExact();
      if (!S.polling || S.finished || gen !== S.generation) break;
      await BO.sleep(BO.jitter(POLL_MS));
    }
  }

  /** GET the exact place over HTTP (polling, and the pre-queue's opening). */
  async function refreshExact() {
    var gen = S.generation;
    var r;
    try {
      r = await BO.api("/api/queue/" + encodeURIComponent(S.queueId), {
        tries: 4,
        onWait: function (ms, why) {
          if (S.polling) setConnection(why === "busy" ? "polling" : "offline", retryText(ms, why));
        },
      });
    } catch (e) {
      if (S.polling) setConnection("offline", retryText(0, "network"));
      return;
    }
    if (gen !== S.generation || S.finished) return;
    if (r.status === 200 && r.body) {
      if (S.polling) setConnection("polling", t("waiting.connection.polling"));
      applyStatus(r.body, S.ws ? S.lastAdmitted : null);
    } else if (r.status === 404 || r.status === 403 || r.status === 422) {
      placeLost();
    }
  }

  // ---- entering the queue -------------------------------------------------------------------

  async function loadEvent() {
    var r = await BO.api("/api/events/" + encodeURIComponent(eventId), { tries: 8 });
    if (r.status === 404) throw new Error(t("waiting.error.no_event"));
    if (!r.ok || !r.body) throw new Error(t("waiting.error.event_failed"));
    renderEvent(r.body);
  }

  function waitingText(ms, why) {
    setConnection(why === "busy" ? "polling" : "offline", retryText(ms, why));
  }

  /** Why we wait, truthfully: the server said it is busy, or the request never got through
   * (this device's connection) — never the one for the other. */
  function retryText(ms, why) {
    var again = ms ? t("waiting.retry.in", { count: Math.ceil(ms / 1000) }) : t("waiting.retry.now");
    if (why === "busy") return t("waiting.retry.busy", { again: again });
    return t("waiting.retry.offline", { again: again, window: windowText() });
  }

  /** The return window in words: "30 minutes", "2 hours". */
  function windowText() {
    var minutes = Math.max(1, Math.round(S.returnWindow / 60));
    return minutes % 60 ? t("waiting.window.minutes", { count: minutes })
      : t("waiting.window.hours", { count: minutes / 60 });
  }

  function showWindow() {
    $("away-rule").textContent = t("waiting.away_rule", { window: windowText() });
    if (S.state !== "expired") {
      $("expired-text").textContent = t("waiting.expired.text", { window: windowText() });
    }
  }

  function showScheduled() {
    setConnection("none", "");
    if (!S.nextCheckAt || S.state !== "scheduled") {
      var opens = Date.parse(S.event.prequeue_opens_at) - BO.now();
      S.nextCheckAt = Date.now() + Math.max(0, opens) + BO.jitter(1500, 1);
    }
    showView("scheduled");
    updateClock();
  }

  // ---- the bot check: a new place costs a solved challenge (static/js/challenge.js) ---------

  // what the fan can do when the check cannot run here: waiting.blocked.<kind>
  var BLOCKED_KINDS = { unsupported: 1, blocked: 1, failed: 1 };

  function showBlocked(kind) {
    stopEverything();
    S.checkingSince = 0;
    $("blocked-text").textContent = t("waiting.blocked." + (BLOCKED_KINDS[kind] ? kind : "failed"));
    setConnection("none", "");
    showView("blocked");
  }

  function checkingStep(text) {
    $("checking-step").textContent = text;
  }

  /** Solve a challenge and join with it; a refused solution gets a fresh challenge (bounded). */
  async function joinWithChallenge(gen) {
    var joinPath = "/api/events/" + encodeURIComponent(eventId) + "/queue";
    var challengeUrl = "/api/events/" + encodeURIComponent(eventId) + "/challenge";
    S.checkingSince = Date.now();
    setConnection("none", "");
    showView("checking");
    updateClock();
    try {
      for (var attempt = 1; attempt <= CHALLENGE_TRIES; attempt++) {
        checkingStep(t("waiting.checking.step1"));
        var payload = await BO.challenge.solve(challengeUrl, waitingText);
        if (gen !== S.generation) return null;
        checkingStep(t("waiting.checking.step2"));
        speak(t("waiting.spoken.check_done"));
        var r = await BO.api(joinPath,
          { method: "POST", body: { altcha: payload }, tries: 8, onWait: waitingText });
        if (gen !== S.generation) return null;
        var refused = r.status === 403 && r.body
          && (r.body.error === "challenge_required" || r.body.error === "challenge_failed");
        if (!refused) return r;
        if (r.body.challenge) challengeUrl = r.body.challenge;
      }
    } finally {
      S.checkingSince = 0;
    }
    throw new Error(t("waiting.error.check_refused", { count: CHALLENGE_TRIES }));
  }

  async function enterQueue() {
    var gen = ++S.generation;
    stopEverything();
    S.finished = false;
    S.base = null;
    S.position = null;
    S.wsFails = 0;
    try {
      if (!S.event) await loadEvent();
      var status = null;
      var stored = BO.local.getItem(queueKey);
      if (stored) {
        var got = await BO.api("/api/queue/" + encodeURIComponent(stored), { tries: 8, onWait: waitingText });
        if (gen !== S.generation) return;
        if (got.status === 200 && got.body) {
          status = got.body;
        } else if (got.status >= 400 && got.status < 500) {
          BO.local.removeItem(queueKey); // not ours or long gone: join afresh
        }
      }
      if (!status) {
        // Not open yet: no check and no join until it is (the server would say 409 not_open).
        if (Date.parse(S.event.prequeue_opens_at) - BO.now() > 2000) {
          showScheduled();
          return;
        }
        var r = await joinWithChallenge(gen);
        if (!r) return;
        if (r.status === 409 && r.body && r.body.error === "not_open") {
          showScheduled();
          return;
        }
        if (r.status === 404) throw new Error(t("waiting.error.no_event"));
        if (!r.ok || !r.body) throw new Error(t("waiting.error.join_failed"));
        status = r.body;
      }
      if (!status.queue_id) {
        applyStatus(status, null); // refused: sold out or closed
        return;
      }
      S.queueId = status.queue_id;
      BO.local.setItem(queueKey, S.queueId);
      loadFirst();
      S.announced = { position: null, at: 0 };
      setConnection("connecting", t("waiting.connection.to_live"));
      applyStatus(status, null);
      if (!S.finished) connect();
    } catch (err) {
      if (gen !== S.generation) return;
      if (err && BLOCKED_KINDS[err.kind]) {
        showBlocked(err.kind);
        return;
      }
      if (err && err.kind === "server") {
        showError(t("waiting.error.check_server"));
        return;
      }
      showError(err && err.message && !(err instanceof TypeError)
        ? err.message : t("waiting.error.unreachable_full"));
    }
  }

  /** Sold out: tickets may come back (released holds, refunds); rejoin when the sale reopens. */
  async function checkReopened() {
    var r = await BO.api("/api/events/" + encodeURIComponent(eventId), { tries: 1 })
      .catch(function () { return null; });
    if (S.state !== "sold_out" || !r || !r.ok || !r.body) return;
    if (r.body.state === "on_sale" || r.body.state === "prequeue") {
      S.event = r.body;
      speak(t("waiting.spoken.reopened"));
      showView("loading");
      enterQueue();
    }
  }

  /** The visitor's paid orders of this event: links to their tickets' pages. */
  async function loadMyOrders() {
    var r = await BO.api("/api/events/" + encodeURIComponent(eventId) + "/my-orders", { tries: 3 })
      .catch(function () { return null; });
    if (!r || !r.ok || !Array.isArray(r.body)) return;
    S.orders = r.body.filter(function (o) { return o.order_url; });
    ["tickets-links", "my-tickets-links"].forEach(function (id) {
      var list = $(id);
      list.textContent = "";
      S.orders.forEach(function (o) {
        var li = document.createElement("li");
        var a = document.createElement("a");
        a.href = o.order_url;
        a.className = id === "tickets-links" ? "button big" : "";
        a.textContent = t("waiting.open_tickets", { count: o.tickets.length });
        li.appendChild(a);
        list.appendChild(li);
      });
    });
    if (S.state === "expired") showView("expired"); // becomes "tickets"
    else showView(S.state);
  }

  function rejoin() {
    BO.local.removeItem(queueKey);
    BO.local.removeItem(firstKey);
    S.queueId = null;
    S.first = null;
    $("expired-text").textContent = t("waiting.expired.text", { window: windowText() });
    showView("loading");
    enterQueue();
  }

  // ---- the turn alert (opt-in: a click asks for the notification permission) ----------------

  function showAlerts(permission) {
    var on = BO.alerts.on();
    var button = $("alerts-button");
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.textContent = t(on ? "waiting.alerts.on" : "waiting.alerts.off");
    var note = "off";
    if (on) {
      note = permission === "granted" || permission === "denied" || permission === "default"
        ? permission : "none";
    }
    $("alerts-note").textContent = t("waiting.alerts.note_" + note) + " " + t("waiting.alerts.moves_on");
  }

  async function toggleAlerts() {
    if (BO.alerts.on()) {
      BO.alerts.disable();
      showAlerts(BO.alerts.notifications());
      speak(t("waiting.alerts.spoken_off"));
      return;
    }
    var permission = await BO.alerts.enable();
    showAlerts(permission);
    speak(t(permission === "granted" ? "waiting.alerts.spoken_on_notify" : "waiting.alerts.spoken_on"));
  }

  // ---- start --------------------------------------------------------------------------------

  function wake() {
    // phones suspend background tabs and their sockets: reconnect as soon as we are back
    if (!S.finished && S.queueId && !S.ws && (S.state === "waiting" || S.state === "prequeue")) {
      S.wsFails = Math.min(S.wsFails, FAILS_BEFORE_POLLING - 1);
      connect();
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("rejoin").addEventListener("click", rejoin);
    $("retry").addEventListener("click", function () { showView("loading"); enterQueue(); });
    $("blocked-retry").addEventListener("click", function () { showView("loading"); enterQueue(); });
    $("check-again").addEventListener("click", function () { showView("loading"); enterQueue(); });
    $("buy-more").addEventListener("click", rejoin);
    $("alerts-button").addEventListener("click", toggleAlerts);
    showAlerts(BO.alerts.notifications());
    showWindow();
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") wake();
    });
    window.addEventListener("online", wake);
    window.addEventListener("pageshow", function (e) {
      if (e.persisted) $("admitted-moving").hidden = true; // back from the seats, as we left it
    });
    setInterval(updateClock, 1000);
    if (!eventId) {
      showError(t("waiting.error.no_event_in_address"));
      return;
    }
    enterQueue();
    loadMyOrders();
  });
})();
