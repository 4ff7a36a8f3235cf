/* The console's accessible seats control, in the event's Seats card: ops type seat ids (a run of
 * one row as A-3-1..4), the confirmation says how many seats that is and how many change, and the
 * change goes through PATCH /api/admin/events/<id>/seats (audited there). The seats accessible now
 * are listed from the seat map admin.js draws (its bo:seats event). Refusals are said next to the
 * field, a malformed id by name. Uses window.BOAdmin from admin.js. */
(function () {
  "use strict";

  // A run of one row: A-3-1..4 or A-3-1..A-3-4.
  var RUN = /^([A-Za-z0-9]+)-([1-9][0-9]*)-([1-9][0-9]*)\.\.(?:\1-\2-)?([1-9][0-9]*)$/;
  var MAX_SEATS = 2000; // the API's most seats a call: a longer run is sent as typed, and refused
  var SHOWN = 12; // seat ids named before "and N more"
  var accessibleNow = [];
  var $ = function (id) { return document.getElementById(id); };

  /** The seat ids typed, each once, in the order typed; a run stands for its seats. Anything
   *  else is kept as typed, for the API to refuse by name. */
  function seatsOf(text) {
    var seen = {};
    var found = [];
    text.split(/[\s,;]+/).forEach(function (word) {
      if (!word) return;
      var ids = [word];
      var run = RUN.exec(word);
      if (run && Number(run[4]) >= Number(run[3]) && Number(run[4]) - Number(run[3]) < MAX_SEATS) {
        ids = [];
        for (var n = Number(run[3]); n <= Number(run[4]); n++) ids.push(run[1] + "-" + run[2] + "-" + n);
      }
      ids.forEach(function (id) {
        if (!seen[id]) { seen[id] = true; found.push(id); }
      });
    });
    return found;
  }

  function named(ids) {
    if (ids.length <= SHOWN) return ids.join(", ");
    return ids.slice(0, SHOWN).join(", ") + " and " + (ids.length - SHOWN) + " more";
  }

  function seats(n) { return n + (n === 1 ? " seat" : " seats"); }

  function showNow(ids) {
    accessibleNow = ids.slice();
    $("acc-now").textContent = ids.length
      ? "Accessible now (" + ids.length + "): " + named(ids) + "."
      : "No accessible seats.";
  }

  function fromSeatMap(map) {
    var ids = [];
    (map.sections || []).forEach(function (section) {
      (section.rows || []).forEach(function (row) {
        row.seats.forEach(function (seat) { if (seat.accessible) ids.push(seat.id); });
      });
    });
    return ids;
  }

  /** What the confirmation asks: the seats, their count, and how many of them change. */
  function question(ids, mark) {
    var now = {};
    accessibleNow.forEach(function (id) { now[id] = true; });
    var unchanged = ids.filter(function (id) { return mark ? now[id] : !now[id]; }).length;
    var text = (mark ? "Mark " + seats(ids.length) + " accessible: " : "Unmark " + seats(ids.length)
      + " (no longer accessible): ") + named(ids) + "?";
    if (unchanged) text += " " + unchanged + (mark ? " already accessible." : " not accessible now.");
    return text;
  }

  /** A 422's problems with each malformed seat named: "A-01-1: Seats must be written …". */
  function byName(answer, ids) {
    var body = answer.body || {};
    if (!body.fields) return answer;
    var fields = body.fields.map(function (f) {
      var at = /^seats\[(\d+)\]$/.exec(f.path);
      return at && ids[Number(at[1])] !== undefined
        ? { path: f.path, message: ids[Number(at[1])] + ": " + f.message } : f;
    });
    return { status: answer.status, body: Object.assign({}, body, { fields: fields }) };
  }

  async function onSubmit(ev) {
    ev.preventDefault();
    var form = $("accessible-form");
    var mark = !(ev.submitter && ev.submitter.value === "unmark");
    BOAdmin.clearErrors(form);
    $("acc-status").textContent = "";
    var ids = seatsOf($("acc-seats").value);
    if (!ids.length) { BOAdmin.showError(form, "seats: enter seat ids such as A-3-17"); return; }
    if (!(await BOAdmin.confirm(question(ids, mark)))) return;
    var url = "/api/admin/events/" + encodeURIComponent(BOAdmin.eventId()) + "/seats";
    var answer = await BOAdmin.call(url, { method: "PATCH", body: { seats: ids, accessible: mark }, tries: 1 });
    if (!answer.ok) { BOAdmin.showErrors(form, byName(answer, ids), "acc-status"); return; }
    var changed = answer.body.changed;
    $("acc-status").textContent = (changed.length
      ? (mark ? "Marked " : "Unmarked ") + seats(changed.length) + (mark ? " accessible: " : ": ") + named(changed)
      : "Nothing changed") + "; " + seats(answer.body.accessible.length) + " accessible in all.";
    showNow(answer.body.accessible);
    $("acc-seats").value = "";
    BOAdmin.refreshSeats();
    BOAdmin.refreshAudit();
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("accessible-form").addEventListener("submit", onSubmit);
  });
  document.addEventListener("bo:seats", function (ev) { showNow(fromSeatMap(ev.detail)); });
  document.addEventListener("bo:event-open", function () {
    accessibleNow = [];
    $("acc-now").textContent = "";
    $("acc-status").textContent = "";
    $("acc-seats").value = "";
  });
})();
