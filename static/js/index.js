/* The list of events on sale or upcoming, each linking to its waiting room. */
(function () {
  "use strict";

  var BO = window.BO;
  var STATES = {
    scheduled: "Sale opens soon",
    prequeue: "Pre-queue open",
    on_sale: "On sale now",
    sold_out: "Sold out",
    closed: "Sale ended",
  };

  function item(ev) {
    var li = document.createElement("li");
    var a = document.createElement("a");
    a.className = "event-link";
    a.href = "/e/" + encodeURIComponent(ev.id);
    var name = document.createElement("strong");
    name.textContent = ev.name;
    var meta = document.createElement("span");
    meta.className = "muted";
    meta.textContent = ev.venue + " · " + BO.formatDateTime(ev.starts_at, ev.timezone);
    var state = document.createElement("span");
    state.className = "cta";
    var label = STATES[ev.state] || ev.state;
    if (ev.state === "scheduled" || ev.state === "prequeue") {
      label += " — sale starts " + BO.formatDateTime(ev.sale_starts_at, ev.timezone);
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
          status.textContent = "Very busy — trying again in " + Math.ceil(ms / 1000) + " s…";
        },
      });
      if (!r.ok || !Array.isArray(r.body)) throw new Error("bad answer");
      list.textContent = "";
      r.body.forEach(function (ev) { list.appendChild(item(ev)); });
      status.textContent = r.body.length ? r.body.length + (r.body.length === 1 ? " event" : " events")
        : "No sales right now. Check back soon.";
    } catch (e) {
      status.textContent = "We could not load the events. Please reload the page.";
    }
  }

  document.addEventListener("DOMContentLoaded", load);
})();
