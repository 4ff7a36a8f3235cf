/* Placeholder for the seat map: shows the access token's expiry countdown. */
(function () {
  "use strict";

  var BO = window.BO;
  var eventId = BO.eventIdFromPath();
  var expiresAt = null;
  var warned = false;

  function $(id) { return document.getElementById(id); }

  function showOut(text) {
    $("view-in").hidden = true;
    $("view-out").hidden = false;
    if (text) $("out-text").textContent = text;
    $("out-heading").focus();
  }

  function tick() {
    if (expiresAt === null) return;
    var rest = expiresAt - BO.now();
    if (rest <= 0) {
      expiresAt = null;
      BO.session.removeItem(BO.accessKey(eventId));
      BO.session.removeItem(BO.accessExpiresKey(eventId));
      showOut("Your turn to choose seats ran out. You can rejoin the waiting room.");
      return;
    }
    $("expiry-countdown").textContent = BO.formatCountdown(rest);
    if (!warned && rest <= 60000) {
      warned = true;
      $("expiry-announcer").textContent = "Less than a minute left in your turn.";
    }
  }

  /** The token from this tab, or from the queue place remembered for this event. */
  async function findAccess() {
    var token = BO.session.getItem(BO.accessKey(eventId));
    var expires = BO.session.getItem(BO.accessExpiresKey(eventId));
    if (token && expires && Date.parse(expires) > BO.now()) return { token: token, expires: expires };
    var queueId = BO.local.getItem(BO.queueKey(eventId));
    if (!queueId) return null;
    var r = await BO.api("/api/queue/" + encodeURIComponent(queueId), { tries: 4 });
    if (r.status === 200 && r.body && r.body.state === "admitted" && r.body.access_token) {
      BO.session.setItem(BO.accessKey(eventId), r.body.access_token);
      BO.session.setItem(BO.accessExpiresKey(eventId), r.body.access_expires_at);
      return { token: r.body.access_token, expires: r.body.access_expires_at };
    }
    return null;
  }

  async function start() {
    $("back-link").href = "/e/" + encodeURIComponent(eventId);
    try {
      var ev = await BO.api("/api/events/" + encodeURIComponent(eventId), { tries: 4 });
      if (ev.ok && ev.body) {
        $("event-name").textContent = ev.body.name;
        $("event-meta").textContent = ev.body.venue + " · " + BO.formatDateTime(ev.body.starts_at);
        document.title = "Choose your seats — " + ev.body.name;
      }
      var access = await findAccess();
      if (!access) {
        showOut();
        return;
      }
      expiresAt = Date.parse(access.expires);
      $("expiry-until").textContent = "Until " + BO.formatTime(access.expires) + ".";
      $("view-in").hidden = false;
      tick();
      setInterval(tick, 1000);
    } catch (e) {
      showOut("We could not reach Boxoffice. Please reload the page.");
    }
  }

  document.addEventListener("DOMContentLoaded", start);
})();
