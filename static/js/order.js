/* The fan's order page, /orders/<order_id>?key=<order_key>: the order and one QR code per
 * ticket, opened from the secret link on any device (no cookie needed). Without a key it falls
 * back to this browser's own order. A broken link offers "send my tickets again" by email. */
(function () {
  "use strict";

  var BO = window.BO;
  var I18N = window.I18N;
  var t = I18N.t;

  function $(id) { return document.getElementById(id); }

  function speak(text) { $("announcer").textContent = text; }

  function orderIdFromPath() {
    var parts = location.pathname.split("/");
    var i = parts.indexOf("orders");
    return i >= 0 && parts[i + 1] ? decodeURIComponent(parts[i + 1]) : "";
  }

  var orderId = orderIdFromPath();
  var key = new URLSearchParams(location.search).get("key");

  function withKey(path) {
    return key ? path + "?key=" + encodeURIComponent(key) : path;
  }

  function seatName(seatId) {
    var m = /^([^-]+)-(\d+)-(\d+)$/.exec(seatId || "");
    return m ? t("common.seat_name", { section: m[1], row: m[2], seat: m[3] }) : seatId;
  }

  function show(view) {
    ["loading", "order", "error"].forEach(function (v) { $("view-" + v).hidden = v !== view; });
    var heading = $("view-" + view).querySelector("h2");
    if (heading && view !== "loading") heading.focus();
  }

  function showError(text) {
    if (text) $("error-text").textContent = text;
    show("error");
  }

  async function loadEvent(eventId) {
    var r = await BO.api("/api/events/" + encodeURIComponent(eventId), { tries: 3 });
    if (!r.ok || !r.body) return;
    var ev = r.body;
    $("event-name").textContent = ev.name;
    $("event-meta").textContent = t("common.venue_and_date", {
      venue: ev.venue, date: BO.formatDateTime(ev.starts_at, ev.timezone),
    });
    document.title = t("order.title_event", { name: ev.name });
  }

  function render(order) {
    $("order-id").textContent = order.order_id;
    $("order-amount").textContent = I18N.money(order.amount, order.currency);
    $("order-for").textContent = t("order.tickets_for", { email: order.email });
    var refunded = order.status === "refunded";
    $("refunded-note").hidden = !refunded;
    $("keep-note").hidden = refunded;
    $("order-badge").textContent = t(refunded ? "order.refunded" : "order.confirmed");
    $("order-badge").setAttribute("data-tone", refunded ? "bad" : "ok");
    $("order-heading").textContent = t(refunded ? "order.refunded_heading" : "order.going");
    $("view-order").classList.toggle("admitted", !refunded);
    var list = $("tickets");
    list.textContent = "";
    if (!refunded) {
      order.tickets.forEach(function (ticket) {
        var li = document.createElement("li");
        li.className = "ticket";
        var what = document.createElement("span");
        what.className = "ticket-seat";
        what.textContent = ticket.seat_id ? seatName(ticket.seat_id)
          : t("common.standing_name", { section: ticket.section_id });
        var qr = document.createElement("img");
        qr.className = "ticket-qr";
        qr.alt = t("order.qr_alt", { code: ticket.code });
        qr.src = withKey("/api/orders/" + encodeURIComponent(order.order_id) + "/tickets/"
          + ticket.number + ".svg");
        qr.width = 132;
        qr.height = 132;
        var code = document.createElement("code");
        code.className = "ticket-code";
        code.textContent = ticket.code;
        code.setAttribute("aria-label", t("order.code_label", { code: ticket.code.split("").join(" ") }));
        li.appendChild(what);
        li.appendChild(qr);
        li.appendChild(code);
        list.appendChild(li);
      });
    }
    show("order");
    speak(refunded ? t("order.refunded_spoken")
      : t("order.tickets_below", { count: order.tickets.length }));
  }

  async function load() {
    if (!orderId) { showError(t("order.no_order_in_address")); return; }
    var r;
    try {
      r = await BO.api(withKey("/api/orders/" + encodeURIComponent(orderId)), { tries: 5 });
    } catch (err) {
      showError(t("order.unreachable"));
      return;
    }
    if (!r.ok || !r.body) {
      showError(t(r.status === 404 ? "order.no_such_order" : "order.wrong_key"));
      return;
    }
    if (r.body.status !== "paid" && r.body.status !== "refunded") {
      showError(t("order.unpaid"));
      return;
    }
    render(r.body);
    loadEvent(r.body.event_id);
  }

  async function resend(e) {
    e.preventDefault();
    var input = $("resend-email");
    var email = input.value.trim();
    $("resend-error").hidden = true;
    if (!/^[^@\s]+@[^@\s]+\.[^@\s]{2,}$/.test(email)) {
      $("resend-error").textContent = t("order.email_needed");
      $("resend-error").hidden = false;
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    input.removeAttribute("aria-invalid");
    $("resend-button").disabled = true;
    var r = await BO.api("/api/orders/resend", { method: "POST", body: { email: email }, tries: 3 })
      .catch(function () { return { status: 0 }; });
    $("resend-button").disabled = false;
    if (r.status === 202) {
      $("resend-done").hidden = false;
      return;
    }
    $("resend-error").textContent = t(r.status === 429 ? "order.too_many" : "order.resend_failed");
    $("resend-error").hidden = false;
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("print-button").addEventListener("click", function () { window.print(); });
    $("resend-form").addEventListener("submit", resend);
    load();
  });
})();
