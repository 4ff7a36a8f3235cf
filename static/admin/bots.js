/* The console's bot-check card: challenge counters and the cost level now, the policy select
 * (a PATCH field, audited like the others), the top sources by places taken, and the purge of
 * one source's waiting places — counted first (dry run), then confirmed. Uses window.BOAdmin
 * from admin.js. */
(function () {
  "use strict";

  var REFRESH_MS = 3000;
  var timer = null;
  var $ = function (id) { return document.getElementById(id); };

  function base() { return "/api/admin/events/" + encodeURIComponent(BOAdmin.eventId()); }

  async function refresh() {
    if (!BOAdmin.eventId()) return;
    var answer = await BOAdmin.call(base() + "/bots?limit=10");
    if (!answer.ok || !answer.body) return;
    var v = answer.body;
    $("b-level").textContent = String(v.level);
    $("b-issued").textContent = String(v.challenges_issued);
    $("b-solved").textContent = String(v.challenges_solved);
    $("b-failed").textContent = String(v.challenges_failed);
    $("b-purged").textContent = String(v.purged);
    if (document.activeElement !== $("ctl-challenge")) $("ctl-challenge").value = v.policy;
    var body = $("sources-body");
    body.textContent = "";
    v.sources.forEach(function (row) {
      var tr = document.createElement("tr");
      tr.dataset.source = row.source;
      [row.source, row.places, row.waiting, row.level].forEach(function (value) {
        var td = document.createElement("td");
        td.textContent = String(value);
        tr.appendChild(td);
      });
      var td = document.createElement("td");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "link-button";
      button.textContent = "Purge…";
      button.setAttribute("aria-label", "Purge the waiting places of " + row.source);
      button.disabled = row.waiting === 0;
      button.addEventListener("click", function () { purge(row.source); });
      td.appendChild(button);
      tr.appendChild(td);
      body.appendChild(tr);
    });
    $("sources-empty").hidden = v.sources.length > 0;
  }

  async function purge(source) {
    var form = $("purge-form");
    BOAdmin.clearErrors(form);
    var url = base() + "/sources/purge";
    var counted = await BOAdmin.call(url, { method: "POST", body: { source: source }, tries: 1 });
    if (!counted.ok) {
      BOAdmin.showErrors(form, counted);
      return;
    }
    var n = counted.body.waiting;
    var who = counted.body.source;
    if (n === 0) {
      $("bots-status").textContent = who + " has no places waiting: nothing to purge.";
      return;
    }
    var ok = await BOAdmin.confirm("Remove the " + n + " waiting place" + (n === 1 ? "" : "s") + " of " + who
      + "? They lose their place in line (admitted fans keep their turn).");
    if (!ok) return;
    var done = await BOAdmin.call(url, { method: "POST", body: { source: who, confirm: true }, tries: 1 });
    if (!done.ok) {
      BOAdmin.showErrors(form, done);
      return;
    }
    $("bots-status").textContent = "Purged " + done.body.purged + " waiting place"
      + (done.body.purged === 1 ? "" : "s") + " of " + who + ".";
    BOAdmin.refreshAudit();
    refresh();
  }

  async function onPolicy(ev) {
    ev.preventDefault();
    var form = $("policy-form");
    BOAdmin.clearErrors(form);
    var value = $("ctl-challenge").value;
    if (!(await BOAdmin.confirm("Set the bot check at join to \u201c" + value + "\u201d?"))) return;
    if (await BOAdmin.patch({ challenge: value }, form, "Bot check set to " + value + ".")) refresh();
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("policy-form").addEventListener("submit", onPolicy);
    $("purge-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var source = $("purge-source").value.trim();
      if (!source) { BOAdmin.showError($("purge-form"), "source: enter a client address"); return; }
      purge(source);
    });
  });
  document.addEventListener("bo:event-open", function () {
    clearInterval(timer);
    $("bots-status").textContent = "";
    refresh();
    timer = setInterval(refresh, REFRESH_MS);
  });
  document.addEventListener("bo:event-close", function () {
    clearInterval(timer);
    timer = null;
  });
})();
