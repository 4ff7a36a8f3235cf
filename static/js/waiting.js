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
    var t = Date.now();
    if (pos === a.position) return;
    var first = a.position === null;
    var big = !first && Math.abs(a.position - pos) >= Math.max(1, Math.ceil(a.position * 0.1));
    var near = pos <= 3;
    if (first || near || (big && t - a.at >= 15000) || t - a.at >= 60000) {
      a.position = pos;
      a.at = t;
      speak(pos === 1 ? "You are next in line." : "You are number " + pos + " in line.");
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
  var BADGES = {
    loading: ["Connecting", "info"],
    checking: ["Checking", "info"],
    blocked: ["Problem", "bad"],
    scheduled: ["Opens soon", "info"],
    prequeue: ["Pre-queue", "info"],
    waiting: ["Waiting", "info"],
    admitted: ["Your turn", "ok"],
    sold_out: ["Sold out", "bad"],
    closed: ["Ended", "bad"],
    expired: ["Expired", "warn"],
    tickets: ["You have tickets", "ok"],
    error: ["Problem", "bad"],
  };
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
    badge.textContent = BADGES[state][0];
    badge.setAttribute("data-tone", BADGES[state][1]);
    var heading = $("view-" + state).querySelector("h2");
    if (heading && panel.getAttribute("aria-labelledby") !== heading.id) {
      if (!heading.id) heading.id = "heading-" + state;
      panel.setAttribute("aria-labelledby", heading.id);
    }
    if (!changed) return;
    if (FOCUS_ON[state] && heading) heading.focus();
    var name = S.event ? S.event.name : "the sale";
    var titles = {
      admitted: "It's your turn — " + name,
      sold_out: "Sold out — " + name,
      closed: "Sale ended — " + name,
      expired: "Place expired — " + name,
    };
    if (titles[state]) document.title = titles[state];
    var spoken = {
      checking: "Checking your browser before giving you a place in line. This takes a few seconds.",
      blocked: "Your browser could not run the check. " + $("blocked-text").textContent,
      scheduled: "The waiting room opens soon. Stay on this page.",
      prequeue: "You are in the pre-queue. Places are shuffled when the sale starts.",
      admitted: "It's your turn! You can now choose your seats.",
      sold_out: "The sale is sold out.",
      closed: "The sale has ended.",
      expired: "Your place has expired. You can rejoin the queue.",
      tickets: "You have tickets for this event.",
      error: "Something went wrong. You can try again.",
    };
    if (spoken[state]) speak(spoken[state]);
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
    var when = BO.formatDateTime(ev.starts_at, ev.timezone);
    $("event-meta").textContent = ev.venue + (when ? " · " + when : "");
    document.title = "Waiting room — " + ev.name;
    $("scheduled-sale").textContent = "The sale starts " + BO.formatDateTime(ev.sale_starts_at, ev.timezone)
      + ". Everyone who enters the waiting room before then gets a random place in line.";
  }

  function renderWaiting() {
    var pos = S.position;
    $("position").textContent = pos == null ? "–" : pos.toLocaleString();
    $("ahead").textContent = pos == null ? "–"
      : pos <= 1 ? "Nobody — you're next" : (pos - 1).toLocaleString();
    var eta = $("eta");
    var note = $("eta-note");
    $("paused-note").hidden = !S.paused;
    S.etaAt = null;
    if (S.paused) {
      eta.textContent = "paused";
      note.textContent = "";
    } else if (pos == null || !S.rate || S.rate <= 0) {
      eta.textContent = "unknown";
      note.textContent = "The line isn't moving right now, so we can't estimate your wait yet. "
        + "Your place is safe.";
    } else {
      var seconds = Math.ceil(pos * 60 / S.rate);
      eta.textContent = BO.formatDuration(seconds);
      S.etaAt = BO.now() + seconds * 1000;
      var r = S.rate < 10 ? Math.round(S.rate * 10) / 10 : Math.round(S.rate);
      note.textContent = "Estimate based on the pace of the line: about " + r.toLocaleString()
        + (r === 1 ? " fan" : " fans") + " let in per minute.";
    }
    renderEtaClock();
    var pct = 0;
    if (pos != null && S.first) pct = Math.max(0, Math.min(100, Math.round((S.first - pos) / S.first * 100)));
    $("progress-fill").style.width = pct + "%";
    var bar = $("progress");
    bar.setAttribute("aria-valuenow", String(pct));
    bar.setAttribute("aria-valuetext", pct + "% of the way to your turn");
    if (pos != null) {
      document.title = "#" + pos.toLocaleString() + " in line — " + (S.event ? S.event.name : "Boxoffice");
      announcePosition(pos);
    }
  }

  /** "Your turn around 20:45 CET · updated 3 s ago" (the venue's zone). */
  function renderEtaClock() {
    var el = $("eta-clock");
    el.hidden = S.etaAt == null || S.state !== "waiting";
    if (el.hidden) return;
    var ago = Math.max(0, Math.round((Date.now() - S.updatedAt) / 1000));
    el.textContent = "Your turn around " + BO.formatClock(S.etaAt, S.event && S.event.timezone)
      + " · updated " + ago + " s ago";
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

  function onTick(t) {
    S.lastAdmitted = t.admitted_total;
    S.rate = t.rate_per_min;
    S.updatedAt = Date.now();
    S.paused = !!t.paused;
    if (S.state === "prequeue") {
      if (t.state === "on_sale") refreshExact();
      return;
    }
    if (S.state !== "waiting") return;
    if (S.base) {
      if (S.base.admitted == null) S.base.admitted = t.admitted_total;
      S.position = Math.max(1, S.base.position - Math.max(0, t.admitted_total - S.base.admitted));
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
    $("expired-text").textContent = "We couldn't find your place in line any more. "
      + "A place is released when its page is away for longer than " + windowText() + ".";
    handleClosed("expired");
  }

  // ---- clocks: countdowns for scheduled / prequeue / admitted -------------------------------

  function updateClock() {
    var ev = S.event;
    var now = BO.now();
    if (S.state === "checking" && S.checkingSince) {
      var spent = Math.floor((Date.now() - S.checkingSince) / 1000);
      $("checking-elapsed").textContent = spent < 1 ? "" : "Working for " + spent + " s.";
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
      $("prequeue-countdown").textContent = left > 0 ? BO.formatCountdown(left) : "Starting…";
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
        $("expired-text").textContent = "Your turn to choose seats ran out. You can rejoin the queue.";
        showView("expired");
        return;
      }
      $("admitted-expiry").textContent = "Time left to choose your seats: " + BO.formatCountdown(rest)
        + " (until " + BO.formatClock(Date.parse(S.accessExpiresAt), S.event && S.event.timezone) + ").";
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
      setConnection("live", "Live updates — connected");
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
      setConnection("connecting", "Reconnecting… you keep your place.");
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
    setConnection("polling", "Live updates unavailable — checking every few seconds.");
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
      if (S.polling) setConnection("polling", "Live updates unavailable — checking every few seconds.");
      applyStatus(r.body, S.ws ? S.lastAdmitted : null);
    } else if (r.status === 404 || r.status === 403 || r.status === 422) {
      placeLost();
    }
  }

  // ---- entering the queue -------------------------------------------------------------------

  async function loadEvent() {
    var r = await BO.api("/api/events/" + encodeURIComponent(eventId), { tries: 8 });
    if (r.status === 404) throw new Error("This event does not exist.");
    if (!r.ok || !r.body) throw new Error((r.body && r.body.detail) || "The event could not be loaded.");
    renderEvent(r.body);
  }

  function waitingText(ms, why) {
    setConnection(why === "busy" ? "polling" : "offline", retryText(ms, why));
  }

  /** Why we wait, truthfully: the server said it is busy, or the request never got through
   * (this device's connection) — never the one for the other. */
  function retryText(ms, why) {
    var again = ms ? " Trying again in " + Math.ceil(ms / 1000) + " s." : " Trying again.";
    if (why === "busy") {
      return "The waiting room is very busy." + again + " You keep your place.";
    }
    return "This device seems to be offline." + again + " Your place waits for you for "
      + windowText() + ".";
  }

  function windowText() {
    return BO.formatDuration(S.returnWindow).replace(/^about /, "");
  }

  function showWindow() {
    var words = windowText();
    Array.prototype.forEach.call(document.querySelectorAll(".away-window"), function (el) {
      el.textContent = words;
    });
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

  var BLOCKED_TEXT = {
    unsupported: "Before giving you a place in line, this waiting room runs a short check that "
      + "keeps ticket bots out, and this browser cannot run it (it needs Web Workers and Web "
      + "Crypto over a secure connection). Please open this page in an up-to-date Chrome, Edge, "
      + "Firefox or Safari.",
    blocked: "Before giving you a place in line, this waiting room runs a short check that keeps "
      + "ticket bots out, and its script did not load. A content blocker, a script blocker or a "
      + "network filter may be stopping it: allow scripts from this site (or pause the blocker "
      + "here), check your connection, then press Try again.",
    failed: "Before giving you a place in line, this waiting room runs a short check that keeps "
      + "ticket bots out, and it stopped before finishing. Press Try again. If it keeps "
      + "failing, allow scripts and web workers for this site, or use another browser.",
  };

  function showBlocked(kind) {
    stopEverything();
    S.checkingSince = 0;
    $("blocked-text").textContent = BLOCKED_TEXT[kind] || BLOCKED_TEXT.failed;
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
        checkingStep("Step 1 of 2: checking your browser");
        var payload = await BO.challenge.solve(challengeUrl, waitingText);
        if (gen !== S.generation) return null;
        checkingStep("Step 2 of 2: taking your place in line");
        speak("Check done. Taking your place in line.");
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
    throw new Error("The waiting room did not accept this browser's check after "
      + CHALLENGE_TRIES + " tries. Please try again in a minute.");
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
        if (r.status === 404) throw new Error("This event does not exist.");
        if (!r.ok || !r.body) {
          throw new Error((r.body && r.body.detail) || "We could not put you in the queue.");
        }
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
      setConnection("connecting", "Connecting to live updates…");
      applyStatus(status, null);
      if (!S.finished) connect();
    } catch (err) {
      if (gen !== S.generation) return;
      if (err && BLOCKED_TEXT[err.kind]) {
        showBlocked(err.kind);
        return;
      }
      showError(err && err.message && err.message !== "Failed to fetch"
        ? err.message : "We could not reach the waiting room. Check your connection and try again.");
    }
  }

  /** Sold out: tickets may come back (released holds, refunds); rejoin when the sale reopens. */
  async function checkReopened() {
    var r = await BO.api("/api/events/" + encodeURIComponent(eventId), { tries: 1 })
      .catch(function () { return null; });
    if (S.state !== "sold_out" || !r || !r.ok || !r.body) return;
    if (r.body.state === "on_sale" || r.body.state === "prequeue") {
      S.event = r.body;
      speak("Tickets are back on sale. Joining the queue for you.");
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
        var n = o.tickets.length;
        a.textContent = "Open your " + (n === 1 ? "ticket" : n + " tickets");
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
    $("expired-text").textContent = "Your place in line was released: this page was away for "
      + "longer than " + windowText() + ", or your turn to buy ran out.";
    showView("loading");
    enterQueue();
  }

  // ---- the turn alert (opt-in: a click asks for the notification permission) ----------------

  function showAlerts(permission) {
    var on = BO.alerts.on();
    var button = $("alerts-button");
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.textContent = on ? "Alerts on — turn off" : "Alert me when it's my turn";
    var note = "A sound, a vibration and a notification if this tab is in the background.";
    if (on && permission === "granted") {
      note = "We will play a sound, vibrate and show a notification when it's your turn.";
    } else if (on) {
      note = "We will play a sound and vibrate when it's your turn (no notification: "
        + (permission === "denied" ? "notifications are blocked for this site in your browser's settings"
          : permission === "default" ? "notifications were not allowed"
            : "this browser has none") + ").";
    }
    $("alerts-note").textContent = note
      + " When your turn comes, this page moves on to the seat map by itself.";
  }

  async function toggleAlerts() {
    if (BO.alerts.on()) {
      BO.alerts.disable();
      showAlerts(BO.alerts.notifications());
      speak("Alerts are off.");
      return;
    }
    var permission = await BO.alerts.enable();
    showAlerts(permission);
    speak(permission === "granted" ? "Alerts are on, with notifications." : "Alerts are on.");
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
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") wake();
    });
    window.addEventListener("online", wake);
    window.addEventListener("pageshow", function (e) {
      if (e.persisted) $("admitted-moving").hidden = true; // back from the seats, as we left it
    });
    setInterval(updateClock, 1000);
    if (!eventId) {
      showError("This page address does not name an event.");
      return;
    }
    enterQueue();
    loadMyOrders();
  });
})();
