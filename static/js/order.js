/* The fan's order page, /orders/<order_id>?key=<order_key>: the order and one QR code per
 * ticket, opened from the secret link on any device (no cookie needed). Without a key it falls
 * back to this browser's own order. A broken link offers "send my tickets again" by email. */
(function () {
  "use strict";

  var BO = window.BO;

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

  function money(amount, currency) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: currency })
        .format(amount / 100);
    } catch (e) {
      return (amount / 100).toFixed(2) + " " + currency;
    }
  }

  function seatName(seatId) {
    var m = /^([^-]+)-(\d+)-(\d+)$/.exec(seatId || "");
    return m ? "Section " + m[1] + ", row " + m[2] + ", seat " + m[3] : seatId;
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
    $("event-meta").textContent = ev.venue + " · " + BO.formatDateTime(ev.starts_at, ev.timezone);
    document.title = "Your tickets — " + ev.name;
  }

  function render(order) {
    $("order-id").textContent = order.order_id;
    $("order-amount").textContent = money(order.amount, order.currency);
    $("order-email").textContent = order.email;
    var refunded = order.status === "refunded";
    $("refunded-note").hidden = !refunded;
    $("keep-note").hidden = refunded;
    $("order-badge").textContent = refunded ? "Refunded" : "Confirmed";
    $("order-badge").setAttribute("data-tone", refunded ? "bad" : "ok");
    $("order-heading").textContent = refunded ? "This order was refunded" : "You're going!";
    $("view-order").classList.toggle("admitted", !refunded);
    var list = $("tickets");
    list.textContent = "";
    if (!refunded) {
      order.tickets.forEach(function (t) {
        var li = document.createElement("li");
        li.className = "ticket";
        var what = document.createElement("span");
        what.className = "ticket-seat";
        what.textContent = t.seat_id ? seatName(t.seat_id) : "Section " + t.section_id + ", standing";
        var qr = document.createElement("img");
        qr.className = "ticket-qr";
        qr.alt = "QR code for ticket " + t.code;
        qr.src = withKey("/api/orders/" + encodeURIComponent(order.order_id) + "/tickets/"
          + t.number + ".svg");
        qr.width = 132;
        qr.height = 132;
        var code = document.createElement("code");
        code.className = "ticket-code";
        code.textContent = t.code;
        code.setAttribute("aria-label", "Ticket code " + t.code.split("").join(" "));
        li.appendChild(what);
        li.appendChild(qr);
        li.appendChild(code);
        list.appendChild(li);
      });
    }
    show("order");
    speak(refunded ? "This order was refunded."
      : order.tickets.length + (order.tickets.length === 1 ? " ticket" : " tickets") + " below.");
  }

  async function load() {
    if (!orderId) { showError("This address does not name an order."); return; }
    var r;
    try {
      r = await BO.api(withKey("/api/orders/" + encodeURIComponent(orderId)), { tries: 5 });
    } catch (err) {
      showError("We could not reach the box office. Check your connection and reload.");
      return;
    }
    if (!r.ok || !r.body) {
      showError(r.status === 404 ? "There is no such order. Check the link in your email."
        : "This link doesn't open this order. Check that you copied the whole link.");
      return;
    }
    if (r.body.status !== "paid" && r.body.status !== "refunded") {
      showError("This order isn't paid yet.");
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
      $("resend-error").textContent = "Enter the email you bought the tickets with.";
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
    $("resend-error").textContent = r.status === 429
      ? "Too many requests for now. Please try again later."
      : "That didn't work. Please try again.";
    $("resend-error").hidden = false;
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("print-button").addEventListener("click", function () { window.print(); });
    $("resend-form").addEventListener("submit", resend);
    load();
  });
})();
