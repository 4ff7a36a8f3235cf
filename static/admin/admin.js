/* Boxoffice ops console. Named operators sign in with email, password and a code: the session
   lives in an HttpOnly cookie, and its CSRF token in this page's memory (fetched again on reload).
   While the server still accepts the shared admin token, it can be used instead: it lives in
   sessionStorage (this tab only) and travels as a bearer header, or in the live websocket's
   subprotocol (bearer.<token>, checked before the upgrade) — never in a URL. A high-risk action answered step_up_required asks for a
   fresh code and is sent again with it. */
(function () {
  "use strict";

  var TOKEN_KEY = "bo_admin_token";
  var OPERATOR_KEY = "bo_admin_operator";
  var HISTORY = 300;
  var UNSAFE = { POST: 1, PUT: 1, PATCH: 1, DELETE: 1 };

  var $ = function (id) { return document.getElementById(id); };
  var state = {
    eventId: null,
    event: null,
    samples: [],
    socket: null,
    socketTries: 0,
    timers: [],
    lastEta: null,
    drawPending: false,
    bulkCount: 0,       // the count of the last bulk-cancel dry run (sent back as expected_count)
  };
  // who is signed in: { mode: "token" } or { mode: "session", email, role, csrf, mustChange }
  var auth = null;

  // ---- auth and API --------------------------------------------------------------------------

  function token() { return BO.session.getItem(TOKEN_KEY); }

  function role() { return !auth ? null : auth.mode === "token" ? "owner" : auth.role; }
  function canWrite() { return role() === "owner" || role() === "operator"; }

  function headers(method, otp) {
    var h = {};
    if (auth && auth.mode === "token") {
      h["Authorization"] = "Bearer " + token();
      var who = BO.session.getItem(OPERATOR_KEY);
      if (who) h["X-Boxoffice-Operator"] = who;
    } else if (auth && auth.mode === "session" && UNSAFE[method || "GET"]) {
      h["X-CSRF-Token"] = auth.csrf;
    }
    if (otp) h["X-Boxoffice-OTP"] = otp;
    return h;
  }

  async function call(path, options) {
    var opts = options || {};
    var answer = await BO.api(path, {
      method: opts.method, body: opts.body, headers: headers(opts.method, opts.otp), tries: opts.tries || 2,
    });
    if (answer.status === 401) {
      signOut(auth && auth.mode === "token" ? "Your admin token is no longer accepted. Sign in again."
        : "You were signed out. Sign in again.");
      throw new Error("unauthorized");
    }
    if (answer.status === 403 && answer.body && answer.body.error === "step_up_required") {
      var code = await askCode(opts.otp ? "That code was not accepted (each code works once). Wait for the next one." : "");
      if (code === null) return answer;
      return call(path, Object.assign({}, opts, { otp: code }));
    }
    return answer;
  }

  /** The step-up prompt: resolves with the code typed, or null when cancelled. */
  function askCode(error) {
    var dialog = $("stepup");
    $("stepup-error").textContent = error || "";
    $("stepup-code").value = "";
    return new Promise(function (resolve) {
      dialog.addEventListener("close", function done() {
        dialog.removeEventListener("close", done);
        var code = $("stepup-code").value.trim();
        resolve(dialog.returnValue === "ok" && code ? code : null);
      });
      dialog.returnValue = "";
      dialog.showModal();
      $("stepup-code").focus();
    });
  }

  function applyRole() {
    var r = role();
    document.body.dataset.role = r || "";
    document.querySelectorAll(".needs-write").forEach(function (el) { el.classList.toggle("role-hidden", !canWrite()); });
    document.querySelectorAll(".owner-only").forEach(function (el) { el.classList.toggle("role-hidden", r !== "owner"); });
    document.querySelectorAll(".session-only").forEach(function (el) { el.classList.toggle("role-hidden", !auth || auth.mode !== "session"); });
    $("shared-banner").hidden = !auth || auth.mode !== "token";
    $("whoami").textContent = !auth ? "" : auth.mode === "token" ? "shared admin token" : auth.email + " (" + auth.role + ")";
  }

  function signOut(message) {
    BO.session.removeItem(TOKEN_KEY);
    auth = null;
    applyRole();
    stopEvent();
    $("nav").hidden = true;
    show("view-signin");
    $("signin-error").textContent = "";
    $("login-error").textContent = message || "";
    $("token").value = "";
    $("login-password").value = "";
    $("login-otp").value = "";
    // A deep link (#event/…) opened before signing in is kept for after it; an explicit
    // sign-out (with a message) leaves nothing behind.
    if (location.hash && message) history.replaceState(null, "", location.pathname);
    loadSignInOptions();
  }

  async function loadSignInOptions() {
    var answer = await BO.api("/api/admin/sign-in-options", { tries: 2 });
    $("shared-token-box").hidden = !(answer.ok && answer.body.shared_token);
  }

  async function signIn(ev) {
    ev.preventDefault();
    var value = $("token").value.trim();
    var who = $("operator").value.trim();
    $("signin-error").textContent = "";
    if (!value) { $("signin-error").textContent = "Enter the admin token."; return; }
    if (who && !/^[A-Za-z0-9][A-Za-z0-9 ._@+-]{0,39}$/.test(who)) {
      $("signin-error").textContent = "Your name: up to 40 letters, digits, spaces or . _ @ + -";
      return;
    }
    var answer = await BO.api("/api/admin/events", {
      headers: { "Authorization": "Bearer " + value }, tries: 2,
    });
    if (answer.status === 401) {
      $("signin-error").textContent = "That admin token was not accepted.";
      $("token").setAttribute("aria-invalid", "true");
      $("token").focus();
      return;
    }
    if (!answer.ok) {
      $("signin-error").textContent = "The service did not answer (" + answer.status + "). Try again.";
      return;
    }
    $("token").removeAttribute("aria-invalid");
    BO.session.setItem(TOKEN_KEY, value);
    if (who) BO.session.setItem(OPERATOR_KEY, who); else BO.session.removeItem(OPERATOR_KEY);
    $("token").value = "";
    auth = { mode: "token" };
    enter();
  }

  async function logIn(ev) {
    ev.preventDefault();
    $("login-error").textContent = "";
    var body = { email: $("login-email").value.trim(), password: $("login-password").value, otp: $("login-otp").value.trim() };
    if (!body.email || !body.password) { $("login-error").textContent = "Enter your email and password."; return; }
    var answer = await BO.api("/api/admin/session", { method: "POST", body: body, tries: 1 });
    if (answer.status === 429) {
      $("login-error").textContent = "Too many failed sign-ins: wait " + (answer.response.headers.get("Retry-After") || "a while") + " seconds.";
      return;
    }
    if (!answer.ok) {
      $("login-error").textContent = answer.status === 401 ? "Email, password or code not accepted." : "The service did not answer (" + answer.status + ").";
      $("login-otp").value = "";
      return;
    }
    $("login-otp").value = "";
    var current = $("login-password").value;
    $("login-password").value = "";
    sessionFrom(answer.body);
    if (auth.mustChange) { setup(current); return; }
    enter();
  }

  function sessionFrom(body) {
    auth = { mode: "session", email: body.email, role: body.role, csrf: body.csrf_token, mustChange: body.must_change_password };
  }

  function enter() {
    applyRole();
    $("nav").hidden = false;
    if (!location.hash || location.hash === "#") location.hash = "#events"; else route();
  }

  // ---- first sign-in: password, authenticator, recovery codes ---------------------------------

  function setup(current) {
    applyRole();
    $("nav").hidden = true;
    show("view-setup");
    $("password-form").hidden = false;
    $("enrol-box").hidden = true;
    $("recovery-box").hidden = true;
    $("pw-current").value = current || "";
    $("pw-new").focus();
  }

  async function savePassword(ev) {
    ev.preventDefault();
    $("pw-error").textContent = "";
    var answer = await call("/api/admin/account/password", {
      method: "POST", body: { password: $("pw-current").value, new_password: $("pw-new").value }, tries: 1,
    });
    if (answer.status !== 204) {
      $("pw-error").textContent = (answer.body && answer.body.detail) || "Refused (" + answer.status + ")";
      return;
    }
    $("pw-current").value = ""; $("pw-new").value = "";
    auth.mustChange = false;
    $("password-form").hidden = true;
    await startEnrolment();
  }

  async function startEnrolment() {
    show("view-setup");
    $("password-form").hidden = true;
    $("recovery-box").hidden = true;
    var answer = await call("/api/admin/account/totp", { method: "POST", tries: 1 });
    if (!answer.ok) { $("enrol-error").textContent = "Could not start (" + answer.status + ")."; return; }
    $("enrol-box").hidden = false;
    $("enrol-qr").src = "data:image/svg+xml;base64," + btoa(answer.body.qr_svg);
    $("enrol-secret").textContent = answer.body.totp_secret;
    $("enrol-skip").hidden = role() === "owner" || role() === "operator";
    $("enrol-otp").value = "";
    $("enrol-otp").focus();
  }

  async function confirmEnrolment(ev) {
    ev.preventDefault();
    $("enrol-error").textContent = "";
    var answer = await call("/api/admin/account/totp/confirm", { method: "POST", body: { otp: $("enrol-otp").value.trim() }, tries: 1 });
    if (!answer.ok) {
      $("enrol-error").textContent = (answer.body && answer.body.detail) || "Refused (" + answer.status + ")";
      return;
    }
    $("enrol-box").hidden = true;
    var list = $("recovery-list");
    list.textContent = "";
    answer.body.recovery_codes.forEach(function (c) {
      var li = document.createElement("li"); var code = document.createElement("code");
      code.textContent = c; li.appendChild(code); list.appendChild(li);
    });
    $("recovery-box").hidden = false;
    $("setup-done").focus();
  }

  // ---- views ---------------------------------------------------------------------------------

  var VIEWS = ["view-signin", "view-setup", "view-account", "view-operators", "view-tokens", "view-events", "view-new", "view-event"];

  function show(id) {
    VIEWS.forEach(function (v) { $(v).hidden = v !== id; });
  }

  function route() {
    if (!auth) { signOut(); return; }
    if (auth.mode === "session" && auth.mustChange) { setup(""); return; }
    $("nav").hidden = false;
    applyRole();
    var hash = location.hash.replace(/^#/, "");
    stopEvent();
    if (hash.indexOf("event/") === 0) {
      openEvent(decodeURIComponent(hash.slice(6)));
    } else if (hash === "new" && canWrite()) {
      show("view-new");
      if (!$("sections").children.length) addSection(true);
      defaultTimes();
      $("new-heading").focus();
    } else if (hash === "operators" && role() === "owner") {
      show("view-operators");
      loadOperators();
    } else if (hash === "tokens" && role() === "owner") {
      show("view-tokens");
      loadTokens();
    } else if (hash === "account" && auth.mode === "session") {
      show("view-account");
      $("account-who").textContent = "Signed in as " + auth.email + ", role " + auth.role + ".";
    } else {
      show("view-events");
      loadEvents();
    }
  }

  // ---- account, operators, tokens --------------------------------------------------------------

  async function signOutHere() {
    if (auth && auth.mode === "session") {
      try { await call("/api/admin/session", { method: "DELETE", tries: 1 }); } catch (e) { /* already out */ }
    }
    signOut("Signed out.");
  }

  async function signOutEverywhere() {
    if (!(await confirmAction("Sign out of every device and tab where you are signed in?"))) return;
    var answer = await call("/api/admin/sessions", { method: "DELETE", tries: 1 });
    signOut(answer.ok ? "Signed out everywhere (" + answer.body.ended + " sessions)." : "Signed out.");
  }

  function cell(tr, text) { var td = document.createElement("td"); td.textContent = text; tr.appendChild(td); return td; }

  function button(label, cls, onClick) {
    var b = document.createElement("button");
    b.type = "button"; b.className = "button " + (cls || ""); b.textContent = label;
    b.addEventListener("click", onClick);
    return b;
  }

  async function loadOperators() {
    var answer = await call("/api/admin/operators");
    var body = $("operators-body");
    body.textContent = "";
    if (!answer.ok) { $("operators-status").textContent = "Could not load the operators (" + answer.status + ")."; return; }
    answer.body.forEach(function (op) {
      var tr = document.createElement("tr");
      tr.dataset.email = op.email;
      cell(tr, op.email); cell(tr, op.role);
      cell(tr, op.disabled ? "disabled" : op.must_change_password ? "invited" : "active");
      cell(tr, String(op.sessions));
      var actions = cell(tr, "");
      actions.appendChild(button(op.disabled ? "Enable" : "Disable", op.disabled ? "" : "danger", function () {
        changeOperator(op.email, { disabled: !op.disabled }, (op.disabled ? "Enable " : "Disable ") + op.email + "?");
      }));
      actions.appendChild(button("Reset", "", function () { resetOperator(op.email); }));
      body.appendChild(tr);
    });
  }

  async function changeOperator(email, change, question) {
    if (!(await confirmAction(question + (change.disabled ? " Their sessions end at once." : "")))) return;
    var answer = await call("/api/admin/operators/" + encodeURIComponent(email), { method: "PATCH", body: change, tries: 1 });
    $("operators-status").textContent = answer.ok ? "Saved." : (answer.body && answer.body.detail) || "Refused (" + answer.status + ")";
    loadOperators();
  }

  function showIssued(made) {
    $("issued").hidden = false;
    $("issued-email").textContent = made.email + " (" + made.role + ")";
    $("issued-password").textContent = made.password;
    $("issued-secret").textContent = made.totp_secret;
    $("issued-qr").src = "data:image/svg+xml;base64," + btoa(made.qr_svg);
  }

  async function resetOperator(email) {
    if (!(await confirmAction("Reset " + email + "? A new temporary password and authenticator; their sessions end."))) return;
    var answer = await call("/api/admin/operators/" + encodeURIComponent(email) + "/reset", { method: "POST", tries: 1 });
    if (answer.ok) showIssued(answer.body);
    else $("operators-status").textContent = (answer.body && answer.body.detail) || "Refused (" + answer.status + ")";
    loadOperators();
  }

  async function invite(ev) {
    ev.preventDefault();
    var form = $("invite-form");
    clearErrors(form);
    var answer = await call("/api/admin/operators", {
      method: "POST", body: { email: $("invite-email").value.trim(), role: $("invite-role").value }, tries: 1,
    });
    if (answer.status === 201) { showIssued(answer.body); form.reset(); loadOperators(); }
    else showErrors(form, answer);
  }

  async function loadTokens() {
    var answer = await call("/api/admin/tokens");
    var body = $("tokens-body");
    body.textContent = "";
    if (!answer.ok) return;
    answer.body.forEach(function (t) {
      var tr = document.createElement("tr");
      tr.dataset.name = t.name;
      cell(tr, t.name); cell(tr, t.scopes.join(", "));
      cell(tr, BO.formatDateTime(t.created_at) + " by " + t.created_by);
      cell(tr, t.last_used_at ? BO.formatDateTime(t.last_used_at) + " from " + t.last_used_address : "never");
      cell(tr, t.revoked ? "revoked" : "live");
      var actions = cell(tr, "");
      if (!t.revoked) {
        actions.appendChild(button("Revoke", "danger", async function () {
          if (!(await confirmAction("Revoke the token " + t.name + "? Whatever uses it stops at once."))) return;
          await call("/api/admin/tokens/" + encodeURIComponent(t.name), { method: "DELETE", tries: 1 });
          loadTokens();
        }));
      }
      body.appendChild(tr);
    });
  }

  async function createToken(ev) {
    ev.preventDefault();
    var form = $("token-form");
    clearErrors(form);
    var scopes = [];
    $("token-scopes").querySelectorAll("input:checked").forEach(function (i) { scopes.push(i.value); });
    var answer = await call("/api/admin/tokens", { method: "POST", body: { name: $("token-name").value.trim(), scopes: scopes }, tries: 1 });
    if (answer.status === 201) {
      $("token-issued").hidden = false;
      $("token-issued-name").textContent = answer.body.name;
      $("token-issued-value").textContent = answer.body.token;
      form.reset();
      loadTokens();
    } else {
      showErrors(form, answer);
    }
  }

  // ---- field errors from 422 answers ---------------------------------------------------------

  /** The field a 422 detail names: msgspec's "… - at `$.a[0].b`", "missing required field `x`",
   *  or the service's "field: sentence". */
  function fieldOf(detail) {
    var at = /at `\$\.([^`]+)`/.exec(detail);
    var missing = /(?:missing required|unknown) field `([^`]+)`/.exec(detail);
    if (missing) return (at ? at[1] + "." : "") + missing[1];
    if (at) return at[1];
    var lead = /^([A-Za-z_][\w-]*(?:\[\d+\])?(?:\.[A-Za-z_]\w*)?)(?::|\s)/.exec(detail);
    return lead ? lead[1] : "";
  }

  function clearErrors(root) {
    root.querySelectorAll(".field-error").forEach(function (p) { p.textContent = ""; });
    root.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
  }

  function showError(root, detail, fallbackId) {
    var target = slotFor(root, fieldOf(detail || ""));
    if (!target) target = fallbackId ? $(fallbackId) : root.querySelector('[data-error-for=""]');
    if (!target) target = root.querySelector(".field-error");
    if (!target) return;
    target.textContent = detail;
    var input = target.parentElement && target.parentElement.querySelector("input, select");
    if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
  }

  /** A refused answer's problems, each next to its field: a 422's `fields` (every problem at
   *  once, in words a person reads), else its one `detail`. The first field in trouble gets the
   *  focus. */
  function showErrors(root, answer, fallbackId) {
    var fields = answer.body && answer.body.fields;
    if (!fields || !fields.length) {
      showError(root, (answer.body && answer.body.detail) || "Refused (" + answer.status + ").", fallbackId);
      return;
    }
    var first = null;
    fields.forEach(function (f) {
      var target = slotFor(root, f.path) || (fallbackId ? $(fallbackId) : null) || root.querySelector('[data-error-for=""]');
      if (!target) return;
      target.textContent = target.textContent ? target.textContent + " " + f.message : f.message;
      var input = target.parentElement && target.parentElement.querySelector("input, select, textarea");
      if (input) { input.setAttribute("aria-invalid", "true"); first = first || input; }
    });
    if (first) first.focus();
  }

  /** The error slot of an API path (sections[0].price), or of the nearest enclosing one. */
  function slotFor(root, path) {
    var probe = path;
    while (probe) {
      var target = root.querySelector('[data-error-for="' + probe + '"]');
      if (target) return target;
      var cut = Math.max(probe.lastIndexOf("."), probe.lastIndexOf("["));
      probe = cut > 0 ? probe.slice(0, cut) : "";
    }
    return null;
  }

  // ---- events list ---------------------------------------------------------------------------

  async function loadEvents() {
    $("events-status").textContent = "Loading events…";
    var answer = await call("/api/admin/events");
    var body = $("events-body");
    body.textContent = "";
    if (answer.status === 403) { $("events-status").textContent = "Your role (" + role() + ") has no events to see here: door staff check tickets in at the door."; return; }
    if (!answer.ok) { $("events-status").textContent = "Could not load the events."; return; }
    $("events-status").textContent = answer.body.length ? "" : "No events yet.";
    answer.body.forEach(function (ev) {
      var tr = document.createElement("tr");
      var name = document.createElement("td");
      var a = document.createElement("a");
      a.href = "#event/" + encodeURIComponent(ev.id);
      a.textContent = ev.name;
      name.appendChild(a);
      var small = document.createElement("div");
      small.className = "muted small";
      small.textContent = ev.venue + " · " + ev.id;
      name.appendChild(small);
      tr.appendChild(name);
      [ev.state, BO.formatDateTime(ev.sale_starts_at), ev.settings.rate_per_min,
        ev.settings.max_active, ev.capacity].forEach(function (v) {
        var td = document.createElement("td");
        td.textContent = String(v);
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  // ---- new event form ------------------------------------------------------------------------

  var sectionCount = 0;

  function addSection(first) {
    var i = $("sections").children.length;
    var row = document.createElement("div");
    row.className = "section-row";
    var n = sectionCount++;
    var letters = "ABCDEFGH";
    function cell(label, name, type, value) {
      var wrap = document.createElement("div");
      var id = "s" + n + "-" + name;
      var l = document.createElement("label");
      l.htmlFor = id; l.textContent = label;
      var input = document.createElement(type === "select" ? "select" : "input");
      input.id = id; input.dataset.name = name;
      if (type === "select") {
        ["seated", "standing"].forEach(function (k) {
          var o = document.createElement("option"); o.value = k; o.textContent = k; input.appendChild(o);
        });
      } else {
        input.type = type;
        if (type === "number") input.min = "0";
      }
      if (value !== undefined) input.value = value;
      wrap.appendChild(l); wrap.appendChild(input);
      return wrap;
    }
    row.appendChild(cell("Id", "id", "text", letters[i % 8] + (i >= 8 ? i : "")));
    row.appendChild(cell("Name", "name", "text", first ? "Floor" : ""));
    row.appendChild(cell("Price", "price", "number", first ? "5000" : ""));
    row.appendChild(cell("Kind", "kind", "select"));
    row.appendChild(cell("Rows", "rows", "number", first ? "10" : ""));
    row.appendChild(cell("Seats/row", "seats_per_row", "number", first ? "20" : ""));
    row.appendChild(cell("Capacity", "capacity", "number", ""));
    var remove = document.createElement("button");
    remove.type = "button"; remove.className = "button"; remove.textContent = "Remove";
    remove.addEventListener("click", function () { row.remove(); renumber(); });
    row.appendChild(remove);
    var err = document.createElement("p");
    err.className = "field-error";
    row.appendChild(err);
    var kind = row.querySelector('[data-name="kind"]');
    kind.addEventListener("change", function () { toggleKind(row); });
    $("sections").appendChild(row);
    toggleKind(row);
    renumber();
  }

  function toggleKind(row) {
    var seated = row.querySelector('[data-name="kind"]').value === "seated";
    row.querySelector('[data-name="rows"]').disabled = !seated;
    row.querySelector('[data-name="seats_per_row"]').disabled = !seated;
    row.querySelector('[data-name="capacity"]').disabled = seated;
  }

  /** Error slots named like the API's paths: sections[i] and sections[i].field. */
  function renumber() {
    Array.prototype.forEach.call($("sections").children, function (row, i) {
      row.querySelector(":scope > .field-error").dataset.errorFor = "sections[" + i + "]";
      row.querySelectorAll("input, select").forEach(function (input) {
        var slot = input.parentElement.querySelector(".field-error");
        if (!slot) {
          slot = document.createElement("p");
          slot.className = "field-error";
          input.parentElement.appendChild(slot);
        }
        slot.dataset.errorFor = "sections[" + i + "]." + input.dataset.name;
      });
    });
  }

  function isoFromLocal(value) {
    if (!value) return "";
    var d = new Date(value);
    return isNaN(d.getTime()) ? value : d.toISOString();
  }

  function eventBody() {
    var form = $("event-form");
    var body = {
      name: form.elements.name.value.trim(),
      venue: form.elements.venue.value.trim(),
      starts_at: isoFromLocal(form.elements.starts_at.value),
      sale_starts_at: isoFromLocal(form.elements.sale_starts_at.value),
      currency: form.elements.currency.value.trim().toUpperCase(),
      sections: [],
    };
    ["description", "image_url"].forEach(function (k) {
      var v = form.elements[k].value.trim();
      if (v !== "") body[k] = v;
    });
    ["rate_per_min", "max_active", "session_minutes", "hold_minutes", "max_seats_per_order"]
      .forEach(function (k) {
        var v = form.elements[k].value;
        if (v !== "") body[k] = Number(v);
      });
    Array.prototype.forEach.call($("sections").children, function (row) {
      function val(name) { return row.querySelector('[data-name="' + name + '"]').value.trim(); }
      var s = { id: val("id"), name: val("name"), price: val("price") === "" ? undefined : Number(val("price")) };
      if (val("kind") === "seated") {
        if (val("rows") !== "") s.rows = Number(val("rows"));
        if (val("seats_per_row") !== "") s.seats_per_row = Number(val("seats_per_row"));
      } else if (val("capacity") !== "") {
        s.capacity = Number(val("capacity"));
      }
      body.sections.push(s);
    });
    return body;
  }

  async function createEvent(ev) {
    ev.preventDefault();
    var form = $("event-form");
    clearErrors(form);
    var button = $("create-submit");
    var body = eventBody();
    var sale = Date.parse(body.sale_starts_at);
    if (!isNaN(sale) && sale <= Date.now() && !(await confirmAction(
      "The sale start is not in the future: the sale opens at once, and fans are let in as soon as the event exists. Create it anyway?"))) return;
    button.disabled = true;
    try {
      var answer = await call("/api/admin/events", { method: "POST", body: body, tries: 1 });
      if (answer.status === 201) {
        form.reset();
        $("sections").textContent = "";
        location.hash = "#event/" + encodeURIComponent(answer.body.id);
      } else {
        showErrors(form, answer, "form-error");
      }
    } finally {
      button.disabled = false;
    }
  }

  /** A moment as a datetime-local input holds it (this browser's zone, to the minute). */
  function local(d) {
    var off = d.getTimezoneOffset() * 60000;
    return new Date(d.getTime() - off).toISOString().slice(0, 16);
  }

  function defaultTimes() {
    var form = $("event-form");
    // A sale that opens later by default (tomorrow, on the hour): the default form never opens a
    // live sale at once.
    var sale = new Date(Date.now() + 86400000);
    sale.setMinutes(0, 0, 0);
    if (!form.elements.sale_starts_at.value) form.elements.sale_starts_at.value = local(sale);
    if (!form.elements.starts_at.value) form.elements.starts_at.value = local(new Date(Date.now() + 30 * 86400000));
  }

  // ---- one event: live view ------------------------------------------------------------------

  function stopEvent() {
    state.timers.forEach(clearInterval);
    state.timers = [];
    if (state.socket) {
      var s = state.socket;
      state.socket = null;
      s.onclose = null;
      s.close();
    }
    state.eventId = null;
    state.samples = [];
    document.dispatchEvent(new CustomEvent("bo:event-close"));
  }

  async function openEvent(eventId) {
    show("view-event");
    state.eventId = eventId;
    state.samples = [];
    $("control-status").textContent = "";
    $("eta-needed").textContent = "";
    $("eta-apply").hidden = true;
    clearErrors($("view-event"));
    var answer = await call("/api/admin/events/" + encodeURIComponent(eventId));
    if (answer.status === 404) {
      $("event-heading").textContent = "No such event";
      return;
    }
    if (!answer.ok || state.eventId !== eventId) return;
    showEvent(answer.body, true);
    $("fan-link").href = "/e/" + encodeURIComponent(eventId);
    connect();
    refreshAudit(); refreshEta(); refreshSeats(); loadAutopilot(); refreshDoor();
    $("orders-body").textContent = "";
    state.timers.push(setInterval(refreshDoor, 5000));
    state.timers.push(setInterval(refreshAudit, 10000));
    state.timers.push(setInterval(refreshEta, 3000));
    state.timers.push(setInterval(refreshSeats, 5000));
    state.timers.push(setInterval(loadAutopilot, 15000));
    document.dispatchEvent(new CustomEvent("bo:event-open", { detail: eventId }));
    $("event-heading").focus();
  }

  function showEvent(ev, fillInputs) {
    state.event = ev;
    $("event-heading").textContent = ev.name;
    $("event-meta").textContent = ev.venue + " · sale " + BO.formatDateTime(ev.sale_starts_at) + " · " + ev.id;
    var s = ev.settings;
    var label = s.closed ? "closed" : s.paused ? "paused" : ev.state;
    $("event-state").textContent = label;
    $("event-state").dataset.state = label;
    $("pause-button").textContent = s.paused ? "Resume admission" : "Pause admission";
    $("pause-button").dataset.paused = s.paused ? "1" : "0";
    var before = Date.parse(ev.sale_starts_at) > Date.now();
    $("close-button").hidden = s.closed;
    $("close-button").textContent = before ? "Cancel sale" : "Close sale";
    $("reopen-button").hidden = !s.closed;
    $("sold-out-button").textContent = s.sold_out ? "Back on sale (not sold out)" : "Mark sold out";
    $("sold-out-button").dataset.soldOut = s.sold_out ? "1" : "0";
    showEdit(ev, before, fillInputs);
    var fields = { "ctl-rate": s.rate_per_min, "ctl-max": s.max_active, "ctl-session": s.session_minutes,
      "ctl-hold": s.hold_minutes, "ctl-seats": s.max_seats_per_order };
    Object.keys(fields).forEach(function (id) {
      if (fillInputs || document.activeElement !== $(id)) $(id).value = fields[id];
    });
  }

  function connect() {
    var eventId = state.eventId;
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    // The token travels as a subprotocol, checked before the upgrade (never in the URL); the
    // server answers "boxoffice.admin" and never echoes the token. A refused handshake is a
    // close without a code (1006): the page then asks /api/admin/events whether the token is
    // still good, and signs out if not.
    // Signed in (session cookie): the cookie is the credential; with a token: the subprotocol.
    var protocols = auth && auth.mode === "token" ? ["boxoffice.admin", "bearer." + token()] : ["boxoffice.admin"];
    var ws = new WebSocket(scheme + "//" + location.host + "/api/admin/events/" + encodeURIComponent(eventId) + "/live",
      protocols);
    state.socket = ws;
    setFeed("connecting");
    ws.onmessage = function (m) {
      var msg;
      try { msg = JSON.parse(m.data); } catch (e) { return; }
      if (msg.type === "ready") { state.socketTries = 0; setFeed("live"); }
      else if (msg.type === "history") { state.samples = msg.samples.slice(-HISTORY); schedule(); }
      else if (msg.type === "sample") {
        state.samples.push(msg);
        if (state.samples.length > HISTORY) state.samples.shift();
        schedule();
      }
    };
    ws.onclose = function (e) {
      if (state.socket !== ws) return;
      state.socket = null;
      if (e.code === 4401) { signOut("You were signed out. Sign in again."); return; }
      if (e.code === 4403) { setFeed("lost"); return; }
      if (e.code === 4404) { setFeed("lost"); return; }
      setFeed("lost");
      if (e.code === 1006) {
        // The handshake may have been refused (401): call() signs out when the token is wrong.
        call("/api/admin/events", { tries: 1 }).catch(function () {});
      }
      var delay = Math.min(10000, 500 * Math.pow(2, state.socketTries++));
      setTimeout(function () { if (state.eventId === eventId && !state.socket) connect(); }, BO.jitter(delay));
    };
  }

  function setFeed(mode) {
    $("feed-state").textContent = mode;
    $("feed-state").dataset.state = mode;
  }

  function schedule() {
    if (state.drawPending) return;
    state.drawPending = true;
    requestAnimationFrame(function () { state.drawPending = false; render(); });
  }

  function num(v) { return v === null || v === undefined ? "–" : String(v); }
  function pct(l) { return l ? Math.round(l.p50_ms) + " / " + Math.round(l.p95_ms) : "–"; }

  function render() {
    var xs = state.samples;
    if (!xs.length) return;
    var s = xs[xs.length - 1];
    $("t-waiting").textContent = num(s.waiting);
    $("t-prequeue").textContent = num(s.prequeue);
    $("t-measured").textContent = s.measured_rate_per_min === null ? "–" : String(Math.round(s.measured_rate_per_min));
    $("t-configured").textContent = num(s.rate_per_min);
    $("t-admitted").textContent = num(s.admitted_total);
    $("t-active").textContent = num(s.active);
    $("t-max-active").textContent = num(s.max_active);
    $("t-held").textContent = num(s.seats_held);
    $("t-sold").textContent = num(s.seats_sold);
    $("t-capacity").textContent = num(s.capacity);
    $("t-paid").textContent = num(s.orders_paid);
    $("t-failed").textContent = num(s.orders_failed);
    $("t-pending").textContent = num(s.orders_pending);
    $("t-join").textContent = pct(s.join_latency);
    $("t-hold").textContent = pct(s.hold_latency);
    if (state.event && (state.event.settings.paused !== s.paused || state.event.settings.rate_per_min !== s.rate_per_min
        || state.event.settings.closed !== s.closed || state.event.settings.max_active !== s.max_active)) {
      // Another operator (or the autopilot) changed a setting: follow it.
      var ev = JSON.parse(JSON.stringify(state.event));
      ev.settings.paused = s.paused; ev.settings.rate_per_min = s.rate_per_min;
      ev.settings.closed = s.closed; ev.settings.max_active = s.max_active;
      ev.state = s.state;
      showEvent(ev, false);
    }
    var t = xs.map(function (x) { return x.t; });
    function col(f) { return xs.map(f); }
    BOChart.draw($("c-waiting"), t, [{ values: col(function (x) { return x.waiting + x.prequeue; }) }]);
    BOChart.draw($("c-rate"), t, [
      { values: col(function (x) { return x.measured_rate_per_min; }) },
      { values: col(function (x) { return x.rate_per_min; }), dashed: true },
    ]);
    BOChart.draw($("c-active"), t, [
      { values: col(function (x) { return x.active; }) },
      { values: col(function (x) { return x.max_active; }), dashed: true },
    ]);
    BOChart.draw($("c-seats"), t, [
      { values: col(function (x) { return x.seats_held; }) },
      { values: col(function (x) { return x.seats_sold; }) },
    ]);
    BOChart.draw($("c-orders"), t, [
      { values: col(function (x) { return x.orders_paid; }) },
      { values: col(function (x) { return x.orders_failed; }) },
    ]);
    BOChart.draw($("c-latency"), t, [
      { values: col(function (x) { return x.join_latency ? x.join_latency.p95_ms : null; }) },
      { values: col(function (x) { return x.hold_latency ? x.hold_latency.p95_ms : null; }) },
    ]);
  }

  // ---- controls ------------------------------------------------------------------------------

  function confirmAction(text) {
    var dialog = $("confirm");
    $("confirm-text").textContent = text;
    return new Promise(function (resolve) {
      dialog.addEventListener("close", function done() {
        dialog.removeEventListener("close", done);
        resolve(dialog.returnValue === "ok");
      });
      dialog.returnValue = "";
      dialog.showModal();
      $("confirm-ok").focus();
    });
  }

  var LABELS = {
    rate_per_min: ["admissions per minute", ""],
    max_active: ["max active sessions", ""],
    session_minutes: ["session length", " min"],
    hold_minutes: ["hold length", " min"],
    max_seats_per_order: ["max seats per order", ""],
  };

  async function patch(changes, root, message) {
    var answer = await call("/api/admin/events/" + encodeURIComponent(state.eventId), {
      method: "PATCH", body: changes, tries: 1,
    });
    if (answer.ok) {
      showEvent(answer.body, true);
      $("control-status").textContent = message;
      refreshAudit(); refreshEta();
      return true;
    }
    showErrors(root || $("view-event"), answer, "control-status");
    return false;
  }

  async function onControl(ev) {
    ev.preventDefault();
    var form = ev.currentTarget;
    clearErrors(form);
    var field = form.dataset.field;
    var raw = form.querySelector("input").value;
    var label = LABELS[field];
    if (raw === "" || isNaN(Number(raw))) { showError(form, field + ": enter a number for " + label[0]); return; }
    var value = Number(raw);
    if (!(await confirmAction("Set " + label[0] + " to " + value + label[1] + "?"))) return;
    var change = {};
    change[field] = value;
    await patch(change, form, "Set " + label[0] + " to " + value + label[1] + ".");
  }

  async function onPause() {
    var paused = $("pause-button").dataset.paused === "1";
    var text = paused ? "Resume admission?" : "Pause admission? Nobody new is let in until you resume.";
    if (!(await confirmAction(text))) return;
    await patch({ paused: !paused }, null, paused ? "Admission resumed." : "Admission paused.");
  }

  async function onClose() {
    var cancel = $("close-button").textContent === "Cancel sale";
    var text = cancel ? "Cancel the sale before it starts? Fans in the pre-queue are told it has ended; you can reopen it."
      : "Close the sale? Every waiting fan is told the sale has ended.";
    if (!(await confirmAction(text))) return;
    await patch({ closed: true }, null, cancel ? "Sale cancelled." : "Sale closed.");
  }

  async function onSoldOut() {
    var sold = $("sold-out-button").dataset.soldOut === "1";
    var text = sold ? "Put the sale back on sale? Fans can join and buy again."
      : "Mark the sale sold out? Fans are told so and nobody new joins.";
    if (!(await confirmAction(text))) return;
    await patch({ sold_out: !sold }, null, sold ? "Back on sale." : "Marked sold out.");
  }

  async function onReopen() {
    if (!(await confirmAction("Reopen the sale? Fans can join again (at the sale start, if it is still to come)."))) return;
    await patch({ closed: false }, null, "Sale reopened.");
  }

  var EDITABLE = { "e-name": "name", "e-venue": "venue", "e-starts": "starts_at", "e-sale": "sale_starts_at", "e-prequeue": "prequeue_opens_at" };

  /** The edit card: the event's name, venue and times; the times only until the sale starts. */
  function showEdit(ev, before, fillInputs) {
    var form = $("edit-form");
    ["e-starts", "e-sale", "e-prequeue"].forEach(function (id) { $(id).disabled = !before; });
    $("edit-note").textContent = before
      ? "Until the sale starts, its name, venue and times can change; each change is audited."
      : "The sale has started: its times are fixed (close it instead). The name and venue can still change.";
    if (!fillInputs && form.contains(document.activeElement)) return;
    Object.keys(EDITABLE).forEach(function (id) {
      var v = ev[EDITABLE[id]];
      $(id).value = id === "e-name" || id === "e-venue" ? v : local(new Date(v));
    });
  }

  async function saveEdit(e) {
    e.preventDefault();
    var form = $("edit-form");
    clearErrors(form);
    var change = {};
    var said = [];
    Object.keys(EDITABLE).forEach(function (id) {
      var field = EDITABLE[id], input = $(id);
      if (input.disabled) return;
      var was = state.event[field];
      var value = field === "name" || field === "venue" ? input.value.trim() : isoFromLocal(input.value);
      var same = field === "name" || field === "venue" ? value === was : Date.parse(value) === Date.parse(was);
      if (same) return;
      change[field] = value;
      said.push(input.labels[0].textContent + (field === "name" || field === "venue" ? " to " + value
        : " to " + BO.formatDateTime(value)));
    });
    if (!said.length) { showError(form, "Nothing changed."); return; }
    if (!(await confirmAction("Change " + said.join(", ") + "?"))) return;
    if (await patch(change, form, "Saved: " + said.join(", ") + ".")) refreshAudit();
  }

  async function onAdmit(ev) {
    ev.preventDefault();
    var form = $("admit-form");
    clearErrors(form);
    var count = Number($("ctl-admit").value);
    if (!(await confirmAction("Admit the next " + count + " fans now (beyond the rate, within max active)?"))) return;
    var answer = await call("/api/admin/events/" + encodeURIComponent(state.eventId) + "/admit", {
      method: "POST", body: { count: count }, tries: 1,
    });
    if (answer.ok) {
      $("control-status").textContent = "Admitted " + answer.body.admitted + " now.";
      refreshAudit();
    } else {
      showErrors(form, answer);
    }
  }

  // ---- ETA preview ---------------------------------------------------------------------------

  function wait(seconds) {
    if (seconds === null || seconds === undefined) return "unknown";
    if (seconds === 0) return "no wait";
    return BO.formatDuration(seconds);
  }

  async function refreshEta(ev) {
    if (ev) ev.preventDefault();
    if (!state.eventId) return;
    var form = $("eta-form");
    var local = $("eta-clear-by").value;
    var q = local ? "?clear_by=" + encodeURIComponent(isoFromLocal(local)) : "";
    var answer = await call("/api/admin/events/" + encodeURIComponent(state.eventId) + "/eta" + q);
    if (!answer.ok) {
      if (ev) { clearErrors(form); showError(form, answer.body && answer.body.detail); }
      return;
    }
    if (ev) clearErrors(form);
    var p = answer.body;
    state.lastEta = p;
    $("eta-in-line").textContent = String(p.in_line);
    $("eta-measured").textContent = wait(p.last_fan_wait_seconds_measured);
    $("eta-configured").textContent = wait(p.last_fan_wait_seconds_configured);
    if (p.clear_by && p.in_line === 0) {
      $("eta-needed").textContent = "Nobody is in line: there is nothing to clear, so no rate to propose.";
      $("eta-apply").hidden = true;
    } else if (p.clear_by) {
      if (p.rate_to_clear === null) {
        $("eta-needed").textContent = "No rate can clear the line by then (it is before the sale starts or already past).";
        $("eta-apply").hidden = true;
      } else {
        $("eta-needed").textContent = "To clear the line by " + BO.formatTime(p.clear_by) + ": " + p.rate_to_clear +
          " admissions/min" + (p.configured_rate_clears_in_time ? " — the configured rate already does." : ".");
        $("eta-apply").hidden = p.rate_to_clear === p.configured_rate_per_min || p.rate_to_clear < 1;
        $("eta-apply").textContent = "Set the rate to " + p.rate_to_clear + "/min";
      }
    }
  }

  async function applyEta() {
    var p = state.lastEta;
    if (!p || p.rate_to_clear === null) return;
    if (!(await confirmAction("Set admissions per minute to " + p.rate_to_clear + "?"))) return;
    await patch({ rate_per_min: p.rate_to_clear }, null, "Set admissions per minute to " + p.rate_to_clear + ".");
  }

  // ---- seat heat -----------------------------------------------------------------------------

  async function refreshSeats() {
    if (!state.eventId) return;
    var answer = await BO.api("/api/events/" + encodeURIComponent(state.eventId) + "/seats", { tries: 1 });
    if (!answer.ok) return;
    var heat = $("heat");
    heat.textContent = "";
    answer.body.sections.forEach(function (section) {
      var box = document.createElement("div");
      box.className = "heat-section";
      var h = document.createElement("h3");
      h.textContent = section.name + " (" + section.id + ") — " + section.available + " of " + section.capacity + " available";
      box.appendChild(h);
      if (section.rows) {
        var grid = document.createElement("div");
        grid.className = "heat-grid";
        var width = section.rows.reduce(function (m, r) { return Math.max(m, r.seats.length); }, 0);
        grid.style.gridTemplateColumns = "repeat(" + width + ", minmax(5px, 18px))";
        section.rows.forEach(function (row) {
          row.seats.forEach(function (seat) {
            var cell = document.createElement("span");
            cell.className = seat.status + (seat.accessible ? " accessible" : "");
            cell.title = seat.id + " " + seat.status + (seat.accessible ? ", accessible" : "");
            grid.appendChild(cell);
          });
        });
        grid.setAttribute("role", "img");
        grid.setAttribute("aria-label", section.name + ": " + section.available + " of " + section.capacity + " free");
        box.appendChild(grid);
      } else {
        var bar = document.createElement("div");
        bar.className = "ga-bar";
        var taken = section.capacity - section.available;
        var sold = document.createElement("span");
        sold.className = "sold";
        sold.style.width = (100 * taken / Math.max(1, section.capacity)) + "%";
        bar.appendChild(sold);
        box.appendChild(bar);
      }
      heat.appendChild(box);
    });
    document.dispatchEvent(new CustomEvent("bo:seats", { detail: answer.body }));
  }

  // ---- audit ---------------------------------------------------------------------------------

  var STAMP = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });

  /** An audit row's moment, with its date: rows stay for days. */
  function stamp(iso) {
    var d = new Date(iso);
    return isNaN(d.getTime()) ? "" : STAMP.format(d);
  }

  function show_(v) { return v === null || v === undefined ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v); }

  async function refreshAudit() {
    if (!state.eventId) return;
    var answer = await call("/api/admin/events/" + encodeURIComponent(state.eventId) + "/audit?limit=50");
    if (!answer.ok) return;
    var body = $("audit-body");
    body.textContent = "";
    answer.body.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.dataset.field = r.field;
      tr.dataset.action = r.action;
      [stamp(r.at), r.who, r.action, r.field,
        show_(r.old) + " → " + show_(r.new), r.note || ""].forEach(function (v, i) {
        var td = document.createElement("td");
        if (i === 4) { var c = document.createElement("code"); c.textContent = v; td.appendChild(c); }
        else td.textContent = v;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  // ---- orders: search, refund, bulk cancel, door counts ---------------------------------------

  function money(amount, currency) {
    try { return new Intl.NumberFormat(undefined, { style: "currency", currency: currency }).format(amount / 100); }
    catch (e) { return (amount / 100).toFixed(2) + " " + currency; }
  }

  function reason() { return $("refund-reason").value.trim() || null; }

  async function refreshDoor() {
    if (!state.eventId) return;
    var answer = await call("/api/admin/events/" + encodeURIComponent(state.eventId) + "/stats");
    if (!answer.ok) return;
    $("t-checked-in").textContent = num(answer.body.checked_in);
    $("t-expected").textContent = num(answer.body.tickets_expected);
    $("t-refunded").textContent = num(answer.body.orders_refunded);
  }

  async function searchOrders(ev) {
    if (ev) ev.preventDefault();
    $("order-error").textContent = "";
    var q = "event_id=" + encodeURIComponent(state.eventId);
    var value = $("order-query").value.trim();
    if (value) q += "&" + $("order-field").value + "=" + encodeURIComponent(value);
    var answer = await call("/api/admin/orders?" + q);
    if (!answer.ok) {
      $("order-error").textContent = (answer.body && answer.body.detail) || "Search refused (" + answer.status + ")";
      return;
    }
    var body = $("orders-body");
    body.textContent = "";
    answer.body.forEach(function (o) {
      var tr = document.createElement("tr");
      tr.dataset.order = o.order_id;
      var seats = o.seats.length ? o.seats.join(" ") : (o.quantity ? o.quantity + " × " + o.section : "");
      var inside = o.tickets.filter(function (t) { return t.checked_in_at; }).length;
      [o.order_id, o.email, o.status + (o.status_reason && o.status !== "paid" ? " (" + o.status_reason + ")" : ""),
        seats, money(o.amount, o.currency), o.tickets.length ? inside + " / " + o.tickets.length : ""].forEach(function (v, i) {
        var td = document.createElement("td");
        if (i === 0) { var c = document.createElement("code"); c.textContent = v; td.appendChild(c); }
        else td.textContent = v;
        tr.appendChild(td);
      });
      var act = document.createElement("td");
      if (o.status === "paid") {
        var b = document.createElement("button");
        b.type = "button";
        b.className = "button danger small";
        b.textContent = "Refund";
        b.addEventListener("click", function () { refundOrder(o); });
        act.appendChild(b);
      }
      tr.appendChild(act);
      body.appendChild(tr);
    });
    if (!answer.body.length) {
      var tr = document.createElement("tr");
      var td = document.createElement("td");
      td.colSpan = 7;
      td.textContent = "No orders found.";
      tr.appendChild(td);
      body.appendChild(tr);
    }
  }

  async function refundOrder(o) {
    var text = "Refund order " + o.order_id + " (" + money(o.amount, o.currency) + ", " + o.email
      + ")? Its seats go back on sale and its tickets stop working at the door.";
    if (!(await confirmAction(text))) return;
    var answer = await call("/api/admin/orders/" + encodeURIComponent(o.order_id) + "/refund", {
      method: "POST", body: reason() ? { reason: reason() } : {}, tries: 1,
    });
    $("order-error").textContent = answer.ok ? "" : (answer.body && answer.body.detail) || "Refused (" + answer.status + ")";
    searchOrders(); refreshAudit(); refreshDoor(); refreshSeats();
  }

  function bulkIds() {
    return $("bulk-ids").value.split(/[\s,;]+/).filter(function (s) { return s; });
  }

  async function countBulk(ev) {
    ev.preventDefault();
    $("bulk-go").hidden = true;
    var ids = bulkIds();
    if (!ids.length) { $("bulk-status").textContent = "Paste the order ids first."; return; }
    var answer = await call("/api/admin/orders/cancel?dry_run=1", { method: "POST", body: { order_ids: ids }, tries: 1 });
    if (!answer.ok) { $("bulk-status").textContent = (answer.body && answer.body.detail) || "Refused (" + answer.status + ")"; return; }
    var p = answer.body;
    state.bulkCount = p.count;
    $("bulk-status").textContent = p.count + " to refund; " + p.already_refunded.length + " already refunded, "
      + p.not_paid.length + " not paid, " + p.not_found.length + " not found.";
    $("bulk-go").textContent = "Cancel and refund " + p.count;
    $("bulk-go").hidden = p.count === 0;
  }

  async function runBulk() {
    var ids = bulkIds();
    if (!(await confirmAction("Cancel and refund " + state.bulkCount + " orders? Their seats go back on sale."))) return;
    var answer = await call("/api/admin/orders/cancel", {
      method: "POST", body: { order_ids: ids, reason: reason(), expected_count: state.bulkCount }, tries: 1,
    });
    $("bulk-go").hidden = true;
    if (!answer.ok) { $("bulk-status").textContent = (answer.body && answer.body.detail) || "Refused (" + answer.status + ")"; return; }
    var r = answer.body;
    $("bulk-status").textContent = "Refunded " + r.refunded.length + "; refused " + r.refused.length
      + (r.refused.length ? " (" + r.refused.map(function (x) { return x.order_id + ": " + x.detail; }).join("; ") + ")" : "") + ".";
    searchOrders(); refreshAudit(); refreshDoor(); refreshSeats();
  }

  // ---- autopilot -----------------------------------------------------------------------------

  async function loadAutopilot() {
    if (!state.eventId) return;
    var answer = await call("/api/admin/events/" + encodeURIComponent(state.eventId) + "/autopilot");
    if (!answer.ok) return;
    var c = answer.body.config;
    var form = $("autopilot-form");
    if (!form.contains(document.activeElement)) {
      $("ap-enabled").checked = c.enabled;
      $("ap-target").value = c.target_fraction;
      $("ap-min").value = c.min_rate;
      $("ap-max").value = c.max_rate;
      $("ap-step").value = c.max_step_fraction;
    }
    var last = answer.body.last_decision;
    $("ap-status").textContent = (c.enabled ? "On" : "Off") + (last ? " — last: " + last.reason : "");
  }

  async function saveAutopilot(ev) {
    ev.preventDefault();
    var form = $("autopilot-form");
    clearErrors(form);
    var body = {
      enabled: $("ap-enabled").checked,
      target_fraction: Number($("ap-target").value),
      min_rate: Number($("ap-min").value),
      max_rate: Number($("ap-max").value),
      max_step_fraction: Number($("ap-step").value),
    };
    var text = body.enabled
      ? "Turn the autopilot on? It will set the rate between " + body.min_rate + " and " + body.max_rate + " per minute."
      : "Save the autopilot settings (off)?";
    if (!(await confirmAction(text))) return;
    var answer = await call("/api/admin/events/" + encodeURIComponent(state.eventId) + "/autopilot", {
      method: "PATCH", body: body, tries: 1,
    });
    if (answer.ok) { loadAutopilot(); refreshAudit(); }
    else showErrors(form, answer, "ap-status");
  }

  // What static/admin/bots.js (the bot-check card) and accessible.js use of the console.
  window.BOAdmin = {
    call: call, confirm: confirmAction, patch: patch, refreshAudit: refreshAudit, refreshSeats: refreshSeats,
    showError: showError, showErrors: showErrors, clearErrors: clearErrors,
    eventId: function () { return state.eventId; },
  };

  // ---- tables on a phone ---------------------------------------------------------------------

  /** Each cell of a table.grid carries its column's heading (data-label), which a phone's
   *  stacked layout (admin.css) shows before the value; rows are added by many views, so one
   *  observer per table labels them as they come. */
  function labelCells(table) {
    var heads = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) { return th.textContent.trim(); });
    function label() {
      table.querySelectorAll("tbody tr").forEach(function (tr) {
        Array.prototype.forEach.call(tr.children, function (td, i) {
          if (heads[i] && td.colSpan === 1) td.dataset.label = heads[i]; else delete td.dataset.label;
        });
      });
    }
    new MutationObserver(label).observe(table.querySelector("tbody"), { childList: true });
    label();
  }

  // ---- start ---------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", function () {
    $("signin-form").addEventListener("submit", signIn);
    $("login-form").addEventListener("submit", logIn);
    $("password-form").addEventListener("submit", savePassword);
    $("enrol-form").addEventListener("submit", confirmEnrolment);
    $("enrol-skip").addEventListener("click", function () { location.hash = "#events"; enter(); });
    $("setup-done").addEventListener("click", function () { location.hash = "#events"; enter(); });
    $("new-authenticator").addEventListener("click", startEnrolment);
    $("sign-out-everywhere").addEventListener("click", signOutEverywhere);
    $("invite-form").addEventListener("submit", invite);
    $("token-form").addEventListener("submit", createToken);
    $("sign-out").addEventListener("click", signOutHere);
    $("stepup-cancel").addEventListener("click", function () { $("stepup").close("cancel"); });
    $("add-section").addEventListener("click", function () { addSection(false); });
    $("event-form").addEventListener("submit", createEvent);
    document.querySelectorAll("form.control[data-field]").forEach(function (f) { f.addEventListener("submit", onControl); });
    $("admit-form").addEventListener("submit", onAdmit);
    $("pause-button").addEventListener("click", onPause);
    $("close-button").addEventListener("click", onClose);
    $("reopen-button").addEventListener("click", onReopen);
    $("sold-out-button").addEventListener("click", onSoldOut);
    $("edit-form").addEventListener("submit", saveEdit);
    $("eta-form").addEventListener("submit", refreshEta);
    $("eta-apply").addEventListener("click", applyEta);
    $("autopilot-form").addEventListener("submit", saveAutopilot);
    $("order-search").addEventListener("submit", searchOrders);
    $("bulk-form").addEventListener("submit", countBulk);
    $("bulk-go").addEventListener("click", runBulk);
    document.querySelectorAll("table.grid").forEach(labelCells);
    window.addEventListener("hashchange", route);
    window.addEventListener("resize", schedule);
    defaultTimes();
    resume();
  });

  /** A reload: the shared token from this tab, or the session cookie (its CSRF token again). */
  async function resume() {
    if (token()) { auth = { mode: "token" }; enter(); return; }
    var answer = await BO.api("/api/admin/session", { tries: 2 });
    if (answer.ok) { sessionFrom(answer.body); if (auth.mustChange) setup(""); else enter(); return; }
    signOut();
  }
})();
