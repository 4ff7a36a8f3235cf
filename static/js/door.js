/* The door page, /door: door staff sign in once per tab with a door (`checkin`) token, pick the
 * event, and scan tickets' QR codes with the phone camera — the browser's BarcodeDetector where
 * it exists, else the vendored jsQR decoder on canvas frames — or type a code. Each scan is
 * POST /api/events/<id>/checkins; the answer fills a big green (admitted) or red panel with the
 * seat, and the admitted/expected counter follows GET /api/events/<id>/checkins. The events come
 * from GET /api/admin/door/events: a token with the `checkin` scope alone reads all of this. */
(function () {
  "use strict";

  var BO = window.BO;
  var TOKEN_KEY = "bo_door_token";
  var EVENT_KEY = "bo_door_event";
  var SAME_CODE_MS = 4000;   // the same QR in front of the camera is one scan, not many
  var FRAME_MS = 150;        // camera frames looked at, at most this often
  var COUNT_MS = 10000;      // counter refresh while idle

  var S = { token: null, eventId: null, stream: null, detector: null, busy: false,
            last: { code: null, at: 0 }, canvas: null, timer: null };

  function $(id) { return document.getElementById(id); }

  function auth() { return { "Authorization": "Bearer " + S.token }; }

  function show(view) {
    $("view-signin").hidden = view !== "signin";
    $("view-scan").hidden = view !== "scan";
  }

  var REFUSALS = {
    already_checked_in: "Already in",
    ticket_refunded: "Refunded",
    wrong_event: "Wrong event",
    invalid_ticket: "Not a ticket",
  };

  function seatText(body) {
    if (!body) return "";
    if (body.seat) {
      var m = /^([^-]+)-(\d+)-(\d+)$/.exec(body.seat);
      return m ? "Section " + m[1] + " · Row " + m[2] + " · Seat " + m[3] : body.seat;
    }
    return body.section ? "Section " + body.section + " · Standing" : "";
  }

  function showResult(tone, word, seat, detail) {
    var el = $("result");
    el.setAttribute("data-tone", tone);
    $("result-word").textContent = word;
    $("result-seat").textContent = seat;
    $("result-detail").textContent = detail || "";
    if (navigator.vibrate) navigator.vibrate(tone === "ok" ? 80 : [60, 60, 60]);
  }

  async function checkIn(code) {
    code = (code || "").trim();
    if (!code || S.busy || !S.eventId) return;
    var t = Date.now();
    if (code === S.last.code && t - S.last.at < SAME_CODE_MS) return;
    S.last = { code: code, at: t };
    S.busy = true;
    try {
      var r = await BO.api("/api/events/" + encodeURIComponent(S.eventId) + "/checkins",
        { method: "POST", body: { code: code }, headers: auth(), tries: 3 });
      if (r.status === 401) { signOut("The token was refused. Sign in again."); return; }
      var b = r.body || {};
      if (r.status === 200) {
        showResult("ok", "Admitted", seatText(b), "");
      } else if (REFUSALS[b.error]) {
        var when = b.checked_in_at ? "at " + BO.formatTime(b.checked_in_at) : "";
        showResult("bad", REFUSALS[b.error], seatText(b), b.error === "already_checked_in"
          ? "Checked in " + when : b.detail || "");
      } else {
        showResult("bad", "Error", "", b.detail || "Try again.");
      }
      refreshCount();
    } catch (err) {
      showResult("bad", "Offline", "", "No answer from the box office. Try again.");
    } finally {
      S.busy = false;
    }
  }

  async function refreshCount() {
    if (!S.eventId) return;
    var r = await BO.api("/api/events/" + encodeURIComponent(S.eventId) + "/checkins",
      { headers: auth(), tries: 1 }).catch(function () { return null; });
    if (!r || !r.ok || !r.body) return;
    $("count-admitted").textContent = String(r.body.checked_in);
    $("count-expected").textContent = String(r.body.tickets_expected);
  }

  // ---- camera -----------------------------------------------------------------------------------

  async function makeDetector() {
    if (!("BarcodeDetector" in window)) return null;
    try {
      var formats = await window.BarcodeDetector.getSupportedFormats();
      if (formats.indexOf("qr_code") < 0) return null;
      return new window.BarcodeDetector({ formats: ["qr_code"] });
    } catch (e) {
      return null;
    }
  }

  async function decodeFrame(video) {
    if (S.detector) {
      var found = await S.detector.detect(video);
      return found.length ? found[0].rawValue : null;
    }
    if (!window.jsQR || !video.videoWidth) return null;
    var canvas = S.canvas || (S.canvas = document.createElement("canvas"));
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    var ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
    var image = ctx.getImageData(0, 0, canvas.width, canvas.height);
    var qr = window.jsQR(image.data, image.width, image.height, { inversionAttempts: "dontInvert" });
    return qr ? qr.data : null;
  }

  async function scanLoop() {
    var video = $("video");
    if (!S.stream) return;
    try {
      var code = await decodeFrame(video);
      if (code) await checkIn(code);
    } catch (e) {
      /* a frame that cannot be read yet: the next one will do */
    }
    S.timer = setTimeout(scanLoop, FRAME_MS);
  }

  async function startCamera() {
    if (S.stream) { stopCamera(); return; }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      $("camera-note").textContent = "This browser cannot use the camera here; type codes below.";
      return;
    }
    try {
      S.stream = await navigator.mediaDevices.getUserMedia(
        { video: { facingMode: "environment" }, audio: false });
    } catch (err) {
      $("camera-note").textContent = "No camera: " + (err && err.name ? err.name : "refused")
        + ". Type codes below.";
      return;
    }
    var video = $("video");
    video.srcObject = S.stream;
    video.hidden = false;
    await video.play().catch(function () {});
    S.detector = await makeDetector();
    $("camera-note").textContent = "Scanning with " + (S.detector ? "the browser's detector" : "jsQR") + ".";
    $("camera-button").textContent = "Stop camera";
    scanLoop();
  }

  function stopCamera() {
    clearTimeout(S.timer);
    if (S.stream) S.stream.getTracks().forEach(function (t) { t.stop(); });
    S.stream = null;
    $("video").hidden = true;
    $("camera-button").textContent = "Start camera";
  }

  // ---- sign in and event ------------------------------------------------------------------------

  async function loadEvents() {
    var r = await BO.api("/api/admin/door/events", { headers: auth(), tries: 3 });
    if (r.status === 401) { signOut("The token was refused."); return false; }
    if (r.status === 403) { signOut("This token may not check tickets in: ask for a door (checkin) token."); return false; }
    if (!r.ok || !Array.isArray(r.body)) {
      $("signin-error").textContent = "The box office could not be reached.";
      $("signin-error").hidden = false;
      return false;
    }
    var select = $("event");
    select.textContent = "";
    r.body.forEach(function (ev) {
      var option = document.createElement("option");
      option.value = ev.id;
      option.textContent = ev.name + " — " + BO.formatDateTime(ev.starts_at, ev.timezone);
      select.appendChild(option);
    });
    var saved = BO.session.getItem(EVENT_KEY);
    var wanted = new URLSearchParams(location.search).get("event") || saved;
    if (wanted && r.body.some(function (ev) { return ev.id === wanted; })) select.value = wanted;
    S.eventId = select.value || null;
    return true;
  }

  async function signIn(token) {
    S.token = token;
    if (!(await loadEvents())) return;
    BO.session.setItem(TOKEN_KEY, token);
    show("scan");
    refreshCount();
  }

  function signOut(why) {
    stopCamera();
    BO.session.removeItem(TOKEN_KEY);
    S.token = null;
    $("signin-error").textContent = why || "";
    $("signin-error").hidden = !why;
    show("signin");
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("signin-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var token = $("token").value.trim();
      if (token) signIn(token);
    });
    $("event").addEventListener("change", function () {
      S.eventId = $("event").value;
      BO.session.setItem(EVENT_KEY, S.eventId);
      S.last = { code: null, at: 0 };
      showResult("idle", "Ready", "Scan a ticket", "");
      refreshCount();
    });
    $("camera-button").addEventListener("click", startCamera);
    $("manual-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var code = $("code").value;
      S.last = { code: null, at: 0 }; // typed on purpose: always sent
      checkIn(code);
      $("code").value = "";
    });
    $("signout").addEventListener("click", function () { signOut(""); });
    setInterval(function () { if (!S.busy && S.token) refreshCount(); }, COUNT_MS);
    var token = BO.session.getItem(TOKEN_KEY);
    if (token) signIn(token);
    else show("signin");
  });
})();
