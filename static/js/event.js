/* The event page's facts on /e/<event>: image, description, date, venue, sale time and prices
 * in the page's language and the venue's time zone (named), and the order limit among the
 * rules of the queue. waiting.js calls EventPage.render(event) with GET /api/events/<id>. */
(function () {
  "use strict";

  var I18N = window.I18N;
  var t = I18N.t;
  var LONG = {
    weekday: "long", day: "numeric", month: "long", year: "numeric",
    hour: "2-digit", minute: "2-digit", timeZoneName: "short",
  };

  function $(id) { return document.getElementById(id); }

  /** "New York" for America/New_York: the zone's place, as people say it. */
  function zonePlace(zone) {
    return String(zone || "UTC").split("/").pop().replace(/_/g, " ");
  }

  function prices(ev) {
    var amounts = (ev.sections || []).map(function (s) { return s.price; });
    if (!amounts.length) return "";
    var low = Math.min.apply(null, amounts);
    var high = Math.max.apply(null, amounts);
    if (low === high) return I18N.money(low, ev.currency);
    return t("event.price_range", {
      low: I18N.money(low, ev.currency), high: I18N.money(high, ev.currency),
    });
  }

  function priceList(ev) {
    var list = $("event-price-list");
    list.textContent = "";
    (ev.sections || []).forEach(function (s) {
      var li = document.createElement("li");
      li.textContent = t(s.rows ? "event.section_seated" : "event.section_standing", {
        name: s.name, price: I18N.money(s.price, ev.currency),
      });
      list.appendChild(li);
    });
  }

  function image(ev) {
    var img = $("event-image");
    if (!ev.image_url) { img.hidden = true; img.removeAttribute("src"); return; }
    img.alt = "";  // decorative: the heading next to it names the event
    img.src = ev.image_url;
    img.hidden = false;
  }

  function render(ev) {
    image(ev);
    var text = $("event-description");
    text.textContent = ev.description || "";
    text.hidden = !ev.description;
    $("event-date").textContent = I18N.dateTime(ev.starts_at, LONG, ev.timezone);
    $("event-venue").textContent = ev.venue;
    $("event-sale").textContent = I18N.dateTime(ev.sale_starts_at, LONG, ev.timezone);
    $("event-prices").textContent = prices(ev);
    priceList(ev);
    $("event-zone").textContent = t("event.zone", { place: zonePlace(ev.timezone) });
    var limit = $("rule-limit");
    limit.hidden = !ev.max_seats_per_order;
    if (ev.max_seats_per_order) {
      limit.textContent = t("event.rule.limit", { count: ev.max_seats_per_order });
    }
    $("event-about").hidden = false;
  }

  window.EventPage = { render: render };
})();
