/* The list of events on sale or upcoming, each linking to its waiting room. */
(function () {
  "use strict";

  var BO = window.BO;
  var t = window.I18N.t;
  var STATES = ["scheduled", "prequeue", "on_sale", "sold_out", "closed"];

  function item(ev) {
    var li = document.createElement("li");
    var a = document.createElement("a");
    a.className = "event-link";
    a.href = "/e/" + encodeURIComponent(ev.id);
    var name = document.createElement("strong");
    name.textContent = ev.name;
    var meta = document.createElement("span");
    meta.className = "muted";
    meta.textContent = t("common.venue_and_date", {
      venue: ev.venue, date: BO.formatDateTime(ev.starts_at, ev.timezone),
    });
    var state = document.createElement("span");
    state.className = "cta";
    var label = STATES.indexOf(ev.state) >= 0 ? t("index.state." + ev.state) : ev.state;
    if (ev.state === "scheduled" || ev.state === "prequeue") {
      label = t("index.state_with_sale", {
        state: label, sale: BO.formatDateTime(ev.sale_starts_at, ev.timezone),
      });
    }
    state.textContent = label;
    a.appendChild(name);
    a.appendChild(meta);
    a.appendChild(document.createElement("br"));
    a.appendChild(state);
    li.appendChild(a);
    return li;
  }

  async function load() {
    var status = document.getElementById("events-status");
    var list = document.getElementById("events");
    try {
      var r = await BO.api("/api/events", {
        tries: 6,
        onWait: function (ms) {
          status.textContent = t("index.busy_retry", { count: Math.ceil(ms / 1000) });
        },
      });
      if (!r.ok || !Array.isArray(r.body)) throw new Error("bad answer");
      list.textContent = "";
      r.body.forEach(function (ev) { list.appendChild(item(ev)); });
      status.textContent = r.body.length ? t("index.count", { count: r.body.length })
        : t("index.none");
    } catch (e) {
      status.textContent = t("index.failed");
    }
  }

  document.addEventListener("DOMContentLoaded", load);
})();
