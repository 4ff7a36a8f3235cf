/* The seat page: seat map (live), hold with countdown, checkout, payment and confirmation.
 *
 * Views: loading → pick → held → pay → done (or failed / out). The URL carries ?order=<id> once
 * an order exists, so a reload shows the payment form or the confirmation again; an active
 * hold is remembered in sessionStorage (bo_hold_<event_id>) for the same reason.
 * The access token from the waiting room is in sessionStorage bo_access_<event_id>.
 */
(function () {
  "use strict";

  var BO = window.BO;
  var I18N = window.I18N;
  var t = I18N.t;
  var DEFAULT_MAX = 6;
  var POLL_MS = 3000;
  var POLL_HIDDEN_MS = 12000;
  var TAKEN_MS = 15000;          // how long a just-taken seat stays highlighted
  var STRIPE_JS = "https://js.stripe.com/v3/";
  var EMAIL_RE = /^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,63}$/;

  var eventId = BO.eventIdFromPath();
  var holdKey = "bo_hold_" + eventId;
  var emailKey = "bo_email";

  var S = {
    view: "loading",
    event: null,
    currency: "EUR",
    map: null,
    access: null,           // {token, expires}
    maxSeats: DEFAULT_MAX,
    selected: [],           // seat ids, in the order picked
    ga: null,               // {section, quantity}
    seatInfo: {},           // seat id -> {label, price, status, section, button}
    sectionNames: {},
    taken: {},              // seat id -> time it was reported taken
    hold: null,
    order: null,
    pollTimer: null,
    busy: false,
    retryUntil: 0,
    stripe: null,
    stripeElements: null,
    warned: {},
    fits: [],               // re-measure the "swipe sideways" hints (and the first zoom)
    cards: {},              // section id -> {card, heading, tile, scroller, grid, size, widest, …}
    filter: { maxPrice: null, accessible: false },
  };

  function $(id) { return document.getElementById(id); }

  // ---- formatting -----------------------------------------------------------------------------

  function money(amount, currency) {
    return I18N.money(amount, currency || S.currency);
  }

  function seatNumber(seatId) {
    var parts = seatId.split("-");
    return parts[parts.length - 1];
  }

  /** "Row 3, seat 17" in the page's language, from the seat's id (section-row-seat). */
  function seatLabel(seat) {
    var parts = seat.id.split("-");
    return parts.length === 3 ? t("seats.seat_label", { row: parts[1], seat: parts[2] }) : seat.label;
  }

  /** "Floor, Row 3, seat 17" for a seat id, from the map when known. */
  function seatName(seatId) {
    var info = S.seatInfo[seatId];
    var parts = seatId.split("-");
    var section = S.sectionNames[parts[0]] || parts[0];
    if (info) return t("seats.seat_in", { section: section, seat: info.label });
    if (parts.length === 3) return t("common.seat_name", { section: section, row: parts[1], seat: parts[2] });
    return seatId;
  }

  // ---- announcements ------------------------------------------------------------------------

  var announceTimer = null;
  function speak(text) {
    var region = $("announcer");
    clearTimeout(announceTimer);
    region.textContent = "";
    announceTimer = setTimeout(function () { region.textContent = text; }, 60);
  }

  function showError(id, text, short) {
    var el = $(id);
    if (id === "pick-error") {
      // the alert sits above the map: repeat it (shortly) by the button, where a phone user looks
      var note = $("bar-note");
      note.hidden = !text;
      note.textContent = !text ? "" : short || (typeof text === "string" ? text : text.textContent);
    }
    if (!text) {
      el.hidden = true;
      el.textContent = "";
      return;
    }
    el.hidden = false;
    el.textContent = "";
    // a fresh node so role=alert announces a repeated message again
    if (typeof text === "string") {
      el.appendChild(document.createTextNode(text));
    } else {
      el.appendChild(text);
    }
  }

  function messageWithLink(text, linkText, href) {
    var frag = document.createDocumentFragment();
    frag.appendChild(document.createTextNode(text + " "));
    var a = document.createElement("a");
    a.href = href;
    a.textContent = linkText;
    frag.appendChild(a);
    return frag;
  }

  // ---- views ----------------------------------------------------------------------------------

  var VIEWS = ["loading", "pick", "held", "pay", "failed", "done", "out"];

  function showView(view) {
    var changed = view !== S.view;
    S.view = view;
    VIEWS.forEach(function (v) { $("view-" + v).hidden = v !== view; });
    // One countdown on the page at a time: the turn while picking, then the hold, then payment
    // (once seats are held the hold is the deadline that counts; checkout needs no turn).
    $("turn-clock").hidden = !(S.access && view === "pick");
    if (view === "pick") {
      startPolling();
      S.fits.forEach(function (f) { f(); });
    } else {
      stopPolling();
    }
    if (!changed) return;
    var heading = $("view-" + view).querySelector("h2");
    if (heading && view !== "loading") heading.focus();
    document.title = t("seats.page_title", {
      view: t("seats.view." + view), name: S.event ? S.event.name : t("common.brand"),
    });
  }

  function setOrderInUrl(orderId) {
    var url = new URL(location.href);
    if (orderId) url.searchParams.set("order", orderId);
    else url.searchParams.delete("order");
    ["payment_intent", "payment_intent_client_secret", "redirect_status"].forEach(function (p) {
      url.searchParams.delete(p);
    });
    history.replaceState(null, "", url.pathname + url.search);
  }

  function clearAccess() {
    S.access = null;
    BO.session.removeItem(BO.accessKey(eventId));
    BO.session.removeItem(BO.accessExpiresKey(eventId));
  }

  function goOut(text, linkText) {
    S.hold = null;
    BO.session.removeItem(holdKey);
    $("out-text").textContent = text || t("seats.out.text");
    $("back-link").textContent = linkText || t("seats.out.back");
    showView("out");
  }

  function turnOver() {
    clearAccess();
    goOut(t("seats.out.turn_ended"), t("seats.out.back_to_room"));
  }

  function accessValid() {
    return !!(S.access && BO.msLeft(S.access.expires) > 0);
  }

  // ---- access ---------------------------------------------------------------------------------

  /** The token from this tab, or from the queue place remembered for this event. */
  async function findAccess() {
    var token = BO.session.getItem(BO.accessKey(eventId));
    var expires = BO.session.getItem(BO.accessExpiresKey(eventId));
    if (token && expires && BO.msLeft(expires) > 0) return { token: token, expires: expires };
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

  // ---- the seat map ---------------------------------------------------------------------------

  var SEAT_MIN = 24;             // px: the smallest seat a finger still hits (zooming stops here)
  var SEAT_MAX = 56;
  var SEAT_FIT_MAX = 44;         // a section opens with its widest row fitted, up to this size
  var ZOOM_STEP = 1.25;

  // a seat's state in words: seats.seat_state.<free|held|sold|selected>
  function seatState(info, selected) {
    return t("seats.seat_state." + (selected ? "selected" : info.status));
  }

  function seatAria(info, selected) {
    var state = seatState(info, selected);
    if (S.taken[info.id] && info.status !== "free") state = t("seats.just_taken_state", { state: state });
    return t(info.accessible ? "seats.seat_aria_accessible" : "seats.seat_aria", {
      seat: info.label, price: money(info.price), state: state,
    });
  }

  /** Hidden by the "accessible seats only" filter (still drawn, so rows keep their shape). */
  function dimmed(info) {
    return S.filter.accessible && !info.accessible;
  }

  function paintSeat(info) {
    var b = info.button;
    var selected = S.selected.indexOf(info.id) >= 0;
    var dim = !selected && dimmed(info);
    b.className = "seat " + (selected ? "selected" : info.status)
      + (info.accessible ? " accessible" : "") + (dim ? " dim" : "")
      + (S.taken[info.id] ? " taken-now" : "");
    b.setAttribute("aria-pressed", selected ? "true" : "false");
    if ((info.status !== "free" || dim) && !selected) b.setAttribute("aria-disabled", "true");
    else b.removeAttribute("aria-disabled");
    var aria = seatAria(info, selected);
    b.setAttribute("aria-label", dim ? t("seats.not_accessible_aria", { seat: aria }) : aria);
    b.title = t(info.accessible ? "seats.seat_title_accessible" : "seats.seat_title", {
      seat: info.label, price: money(info.price), state: seatState(info, selected),
    });
    b.setAttribute("data-status", info.status);
  }

  function smallButton(cls, text, label) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "button secondary " + cls;
    b.textContent = text;
    if (label) b.setAttribute("aria-label", label);
    return b;
  }

  function buildBest(section, card, c) {
    var box = document.createElement("div");
    box.className = "best";
    var label = document.createElement("label");
    label.htmlFor = "best-qty-" + section.id;
    label.textContent = t("seats.best.label");
    var select = document.createElement("select");
    select.id = "best-qty-" + section.id;
    select.className = "field best-qty";
    var go = document.createElement("button");
    go.type = "button";
    go.id = "best-" + section.id;
    go.className = "button";
    go.textContent = t("seats.best.hold");
    go.setAttribute("aria-describedby", "best-help-" + section.id);
    var help = document.createElement("p");
    help.id = "best-help-" + section.id;
    help.className = "muted small best-help";
    help.textContent = t("seats.best.help");
    box.appendChild(label);
    box.appendChild(select);
    box.appendChild(go);
    card.appendChild(box);
    card.appendChild(help);
    go.addEventListener("click", function () { holdBest(section.id); });
    c.bestSelect = select;
    c.bestButton = go;
  }

  function fillBestOptions(sectionId) {
    var c = S.cards[sectionId];
    var select = c && c.bestSelect;
    if (!select) return;
    var most = Math.min(S.maxSeats, c.widest);
    var keep = Math.min(parseInt(select.value, 10) || 2, most);
    select.textContent = "";
    for (var n = 1; n <= most; n++) {
      var o = document.createElement("option");
      o.value = String(n);
      o.textContent = t("seats.n_seats", { count: n });
      select.appendChild(o);
    }
    select.value = String(keep);
  }

  function buildZoom(section, card, c) {
    var bar = document.createElement("div");
    bar.className = "zoom";
    bar.setAttribute("role", "group");
    bar.setAttribute("aria-label", t("seats.zoom.group", { section: section.name }));
    c.zoomOut = smallButton("zoom-out", "−", t("seats.zoom.out", { section: section.name }));
    c.zoomIn = smallButton("zoom-in", "+", t("seats.zoom.in", { section: section.name }));
    var back = smallButton("to-overview", t("seats.zoom.overview"), t("seats.zoom.overview_label"));
    c.zoomOut.addEventListener("click", function () { zoomBy(section.id, 1 / ZOOM_STEP); });
    c.zoomIn.addEventListener("click", function () { zoomBy(section.id, ZOOM_STEP); });
    back.addEventListener("click", toOverview);
    bar.appendChild(c.zoomOut);
    bar.appendChild(c.zoomIn);
    bar.appendChild(back);
    card.appendChild(bar);
  }

  function buildSeated(section, card, c) {
    buildBest(section, card, c);
    buildZoom(section, card, c);
    var stage = document.createElement("div");
    stage.className = "stage";
    stage.setAttribute("aria-hidden", "true");
    stage.textContent = t("seats.stage");
    card.appendChild(stage);
    var scroller = document.createElement("div");
    scroller.className = "seat-scroll";
    var grid = document.createElement("div");
    grid.className = "seat-grid";
    grid.setAttribute("role", "group");
    grid.setAttribute("aria-label", t("seats.grid_label", { section: section.name }));
    grid.setAttribute("data-section", section.id);
    section.rows.forEach(function (row) {
      var line = document.createElement("div");
      line.className = "seat-row";
      line.setAttribute("role", "group");
      line.setAttribute("aria-label", t("seats.row", { row: row.row }));
      var label = document.createElement("span");
      label.className = "row-label";
      label.setAttribute("aria-hidden", "true");
      label.textContent = row.row;
      line.appendChild(label);
      c.widest = Math.max(c.widest, row.seats.length);
      row.seats.forEach(function (seat) {
        var b = document.createElement("button");
        b.type = "button";
        b.id = "seat-" + seat.id;
        b.setAttribute("data-seat", seat.id);
        b.tabIndex = -1;
        b.textContent = seatNumber(seat.id);
        line.appendChild(b);
        var info = {
          id: seat.id, label: seatLabel(seat), price: seat.price, status: seat.status,
          accessible: !!seat.accessible, section: section.id, button: b,
        };
        S.seatInfo[seat.id] = info;
        paintSeat(info);
      });
      grid.appendChild(line);
    });
    scroller.appendChild(grid);
    card.appendChild(scroller);
    c.scroller = scroller;
    c.grid = grid;
    fillBestOptions(section.id);
    var hint = document.createElement("p");
    hint.className = "muted small scroll-hint";
    hint.setAttribute("aria-hidden", "true");
    hint.textContent = t("seats.swipe");
    hint.hidden = true;
    card.appendChild(hint);
    var fits = function () {
      if (!c.size && scroller.clientWidth) setZoom(section.id, fitSize(c));
      hint.hidden = scroller.scrollWidth <= scroller.clientWidth + 1;
    };
    c.fits = fits;
    S.fits.push(fits);
    setTimeout(fits, 0);
    pinchable(scroller, function (ratio, x) {
      zoomBy(section.id, ratio, x - scroller.getBoundingClientRect().left);
    });
    grid.addEventListener("click", onSeatClick);
    grid.addEventListener("keydown", onGridKey);
    grid.addEventListener("focusin", function (e) {
      var b = e.target.closest("button.seat");
      if (b) setRoving(grid, b);
    });
    var first = grid.querySelector("button.seat.free") || grid.querySelector("button.seat");
    if (first) first.tabIndex = 0;
  }

  // ---- zoom -----------------------------------------------------------------------------------

  /** The seat size that fits the section's widest row in its card (within the limits). */
  function fitSize(c) {
    var room = c.scroller.clientWidth - 44;  // the row label and its gap, the padding
    var size = Math.floor(room / (c.widest + (c.widest - 1) / 6));
    return Math.max(SEAT_MIN, Math.min(SEAT_FIT_MAX, size));
  }

  function zoomBy(sectionId, ratio, anchorX) {
    var c = S.cards[sectionId];
    if (c && c.grid) setZoom(sectionId, (c.size || fitSize(c)) * ratio, anchorX);
  }

  /** Seats of `size` px; the point `anchorX` (px from the scroller's left) stays in place. */
  function setZoom(sectionId, size, anchorX) {
    var c = S.cards[sectionId];
    size = Math.max(SEAT_MIN, Math.min(SEAT_MAX, Math.round(size)));
    var old = c.size || size;
    var sc = c.scroller;
    var x = anchorX === undefined ? sc.clientWidth / 2 : anchorX;
    var before = sc.scrollLeft;
    c.size = size;
    c.grid.style.setProperty("--seat", size + "px");
    c.grid.style.setProperty("--gap", Math.max(4, Math.round(size / 6)) + "px");
    sc.scrollLeft = Math.max(0, (before + x) * (size / old) - x);
    c.zoomOut.disabled = size <= SEAT_MIN;
    c.zoomIn.disabled = size >= SEAT_MAX;
    c.card.setAttribute("data-zoom", String(size));
    if (c.fits) setTimeout(c.fits, 0);
  }

  /** Two fingers spread or pinched on `el` (or a trackpad pinch: ctrl + wheel) call
   * onPinch(ratio, x) with the change since the last call and the gesture's middle. */
  function pinchable(el, onPinch) {
    var last = 0;
    function spread(t) {
      return Math.hypot(t[0].clientX - t[1].clientX, t[0].clientY - t[1].clientY);
    }
    el.addEventListener("touchstart", function (e) {
      last = e.touches.length === 2 ? spread(e.touches) : 0;
    }, { passive: true });
    el.addEventListener("touchmove", function (e) {
      if (e.touches.length !== 2 || !last) return;
      e.preventDefault();
      var d = spread(e.touches);
      if (Math.abs(d / last - 1) < 0.06) return;
      onPinch(d / last, (e.touches[0].clientX + e.touches[1].clientX) / 2);
      last = d;
    }, { passive: false });
    el.addEventListener("touchend", function () { last = 0; });
    el.addEventListener("touchcancel", function () { last = 0; });
    el.addEventListener("wheel", function (e) {
      if (!e.ctrlKey) return;
      e.preventDefault();
      onPinch(e.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP, e.clientX);
    }, { passive: false });
  }

  /** From the overview into a section: its card at the top of the screen, its heading focused. */
  function zoomInto(sectionId) {
    var c = S.cards[sectionId];
    if (!c) return;
    c.card.scrollIntoView({ block: "start" });
    c.heading.focus({ preventScroll: true });
  }

  function toOverview() {
    $("overview").scrollIntoView({ block: "start" });
    var tile = document.activeElement && document.activeElement.closest(".map-section");
    var id = tile ? tile.getAttribute("data-section") : null;
    var target = id ? $("ov-" + id) : null;
    if (target && !target.disabled) target.focus({ preventScroll: true });
    else $("overview-heading").parentNode.querySelector(".ov-section").focus({ preventScroll: true });
  }

  // ---- standing sections ----------------------------------------------------------------------

  function buildStanding(section, card) {
    var box = document.createElement("div");
    box.className = "quantity";
    var id = "qty-" + section.id;
    var label = document.createElement("label");
    label.className = "field-label";
    label.htmlFor = id;
    label.textContent = t("seats.qty.label", { section: section.name });
    var row = document.createElement("div");
    row.className = "stepper";
    var minus = smallButton("step", "−", t("seats.qty.fewer", { section: section.name }));
    var input = document.createElement("input");
    input.type = "number";
    input.id = id;
    input.className = "field qty";
    input.min = "0";
    input.inputMode = "numeric";
    input.value = "0";
    input.setAttribute("data-ga", section.id);
    input.setAttribute("aria-describedby", "qty-note-" + section.id);
    var plus = smallButton("step", "+", t("seats.qty.more", { section: section.name }));
    var note = document.createElement("p");
    note.className = "stepper-note";
    note.id = "qty-note-" + section.id;
    note.setAttribute("aria-live", "polite");
    note.hidden = true;
    row.appendChild(minus);
    row.appendChild(input);
    row.appendChild(plus);
    box.appendChild(label);
    box.appendChild(row);
    box.appendChild(note);
    card.appendChild(box);
    function set(n) {
      var avail = sectionAvailable(section.id);
      var max = Math.min(S.maxSeats, avail);
      var q = Math.max(0, Math.min(isNaN(n) ? 0 : n, max));
      chooseGa(section.id, q);
      if (n > max) speak(stepperLimit(section.id) || "");
    }
    minus.addEventListener("click", function () { set(gaQuantity(section.id) - 1); });
    plus.addEventListener("click", function () { set(gaQuantity(section.id) + 1); });
    input.addEventListener("change", function () { set(parseInt(input.value, 10)); });
  }

  /** Why the stepper of a standing section stops where it does ("" while it can go on). */
  function stepperLimit(sectionId) {
    var avail = sectionAvailable(sectionId);
    if (gaQuantity(sectionId) < Math.min(S.maxSeats, avail)) return "";
    if (avail === 0) return t("seats.qty.none_left", { section: S.sectionNames[sectionId] });
    if (avail < S.maxSeats) {
      return t("seats.qty.only_left", { count: avail, section: S.sectionNames[sectionId] });
    }
    return t("seats.at_most", { count: S.maxSeats });
  }

  function paintStepper(sectionId) {
    var note = $("qty-note-" + sectionId);
    if (!note) return;
    var text = stepperLimit(sectionId);
    if (note.textContent !== text) note.textContent = text;
    note.hidden = !text;
  }

  function sectionAvailable(sectionId) {
    var secs = S.map ? S.map.sections : [];
    for (var i = 0; i < secs.length; i++) if (secs[i].id === sectionId) return secs[i].available;
    return 0;
  }

  function gaQuantity(sectionId) {
    return S.ga && S.ga.section === sectionId ? S.ga.quantity : 0;
  }

  function availabilityText(section) {
    if (section.available === 0) return t("seats.avail.none");
    return t("seats.avail.some", { count: section.available, capacity: section.capacity });
  }

  // ---- the overview ---------------------------------------------------------------------------

  function accessibleCount(section) {
    var n = 0;
    (section.rows || []).forEach(function (row) {
      row.seats.forEach(function (seat) { if (seat.accessible) n++; });
    });
    return n;
  }

  function buildTile(section, c) {
    var li = document.createElement("li");
    var b = document.createElement("button");
    b.type = "button";
    b.className = "ov-section";
    b.id = "ov-" + section.id;
    b.setAttribute("data-section", section.id);
    var name = document.createElement("strong");
    name.className = "ov-name";
    name.textContent = section.name;
    var meta = document.createElement("span");
    meta.className = "ov-meta small";
    var acc = document.createElement("span");
    acc.className = "ov-acc small";
    var note = document.createElement("span");
    note.className = "ov-note small";
    b.appendChild(name);
    b.appendChild(meta);
    if (section.kind === "seated" && section.rows) {
      c.canvas = document.createElement("canvas");
      c.canvas.className = "ov-map";
      c.canvas.setAttribute("aria-hidden", "true");
      b.appendChild(c.canvas);
    } else {
      var bar = document.createElement("span");
      bar.className = "ov-bar";
      bar.setAttribute("aria-hidden", "true");
      c.fill = document.createElement("span");
      bar.appendChild(c.fill);
      b.appendChild(bar);
    }
    b.appendChild(acc);
    b.appendChild(note);
    c.tile = b;
    c.tileMeta = meta;
    c.tileAcc = acc;
    c.tileNote = note;
    b.addEventListener("click", function () { zoomInto(section.id); });
    pinchable(b, function (ratio) { if (ratio > 1) zoomInto(section.id); });
    li.appendChild(b);
    $("ov-sections").appendChild(li);
  }

  var colorCache = {};
  function cssColor(name) {
    if (colorCache[name]) return colorCache[name];
    var hex = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    var m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex) || [0, "88", "88", "88"];
    colorCache[name] = [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16), 255];
    return colorCache[name];
  }

  /** The tile's words and picture: a pixel per seat (free, held, sold, yours), or a fill bar. */
  function paintTile(section) {
    var c = S.cards[section.id];
    if (!c || !c.tile) return;
    c.tileMeta.textContent = t(section.kind === "standing" ? "seats.tile.standing" : "seats.tile.seated", {
      price: money(section.price),
      left: section.available ? t("seats.tile.left", { count: section.available }) : t("seats.tile.none_left"),
    });
    var acc = accessibleCount(section);
    c.tileAcc.textContent = acc ? t("seats.tile.accessible", { count: acc }) : "";
    c.tileAcc.hidden = !acc;
    if (c.fill) {
      c.fill.style.width = Math.round(100 * section.available / Math.max(1, section.capacity)) + "%";
      return;
    }
    // each seat a 2×2 dot with a 1 px gap, scaled up without smoothing
    var rows = section.rows;
    var width = 3 * (c.widest || 1) - 1;
    var height = 3 * rows.length - 1;
    var canvas = c.canvas;
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
      canvas.style.aspectRatio = width + " / " + height;
    }
    var ctx = canvas.getContext("2d");
    if (!ctx) return;
    var img = ctx.createImageData(width, height);
    var colors = {
      free: cssColor("--ok"), held: cssColor("--warn"), sold: cssColor("--sold-bg"),
      mine: cssColor("--accent"),
    };
    rows.forEach(function (row, r) {
      row.seats.forEach(function (seat, s) {
        var col = S.selected.indexOf(seat.id) >= 0 ? colors.mine : colors[seat.status];
        for (var dy = 0; dy < 2; dy++) {
          var at = 4 * ((3 * r + dy) * width + 3 * s);
          img.data.set(col, at);
          img.data.set(col, at + 4);
        }
      });
    });
    ctx.putImageData(img, 0, 0);
  }

  // ---- filters --------------------------------------------------------------------------------

  function fillPriceFilter(map) {
    var prices = [];
    map.sections.forEach(function (s) { if (prices.indexOf(s.price) < 0) prices.push(s.price); });
    prices.sort(function (a, b) { return a - b; });
    var select = $("price-filter");
    var keep = select.value;
    while (select.options.length > 1) select.remove(1);
    prices.slice(0, -1).forEach(function (p) {
      var o = document.createElement("option");
      o.value = String(p);
      o.textContent = t("seats.price_up_to", { price: money(p) });
      select.appendChild(o);
    });
    select.value = prices.indexOf(Number(keep)) >= 0 && keep !== "" ? keep : "";
    S.filter.maxPrice = select.value === "" ? null : Number(select.value);
    $("price-filter-box").hidden = prices.length < 2;
  }

  /** Why a section is out of the filters ("" when it is in). */
  function filteredOut(section) {
    if (S.filter.maxPrice !== null && section.price > S.filter.maxPrice) return t("seats.filter.above_price");
    if (S.filter.accessible && !accessibleCount(section)) return t("seats.filter.no_accessible");
    return "";
  }

  function applyFilters() {
    if (!S.map) return;
    var out = 0;
    var anyAccessible = false;
    S.map.sections.forEach(function (section) {
      var c = S.cards[section.id];
      if (!c) return;
      if (accessibleCount(section)) anyAccessible = true;
      var why = filteredOut(section);
      if (why) out++;
      c.card.hidden = !!why;
      c.tile.disabled = !!why;
      c.tile.classList.toggle("filtered", !!why);
      c.tileNote.textContent = why;
      c.tileNote.hidden = !why;
    });
    Object.keys(S.seatInfo).forEach(function (id) { paintSeat(S.seatInfo[id]); });
    var note = "";
    if (S.filter.accessible && !anyAccessible) {
      note = t("seats.filter.none_marked");
    } else if (out) {
      note = t("seats.filter.hidden", { count: out });
    }
    if ($("filter-note").textContent !== note) $("filter-note").textContent = note;
  }

  // ---- building and refreshing the map --------------------------------------------------------

  function buildMap(map) {
    var root = $("sections");
    root.textContent = "";
    $("ov-sections").textContent = "";
    S.seatInfo = {};
    S.fits = [];
    S.cards = {};
    map.sections.forEach(function (section) {
      S.sectionNames[section.id] = section.name;
      var c = { widest: 0, size: 0 };
      S.cards[section.id] = c;
      var card = document.createElement("section");
      card.className = "card map-section";
      card.setAttribute("data-section", section.id);
      c.card = card;
      var headId = "section-" + section.id;
      card.setAttribute("aria-labelledby", headId);
      var head = document.createElement("div");
      head.className = "section-head";
      var h = document.createElement("h3");
      h.id = headId;
      h.tabIndex = -1;
      h.textContent = section.name;
      c.heading = h;
      var meta = document.createElement("p");
      meta.className = "section-meta";
      var price = document.createElement("span");
      price.className = "price";
      price.textContent = section.kind === "standing"
        ? t("seats.price_standing", { price: money(section.price) }) : money(section.price);
      var avail = document.createElement("span");
      avail.className = "muted small avail";
      avail.id = "avail-" + section.id;
      avail.textContent = availabilityText(section);
      meta.appendChild(price);
      meta.appendChild(document.createTextNode(" "));
      meta.appendChild(avail);
      head.appendChild(h);
      head.appendChild(meta);
      card.appendChild(head);
      buildTile(section, c);
      if (section.kind === "seated" && section.rows) buildSeated(section, card, c);
      else buildStanding(section, card);
      root.appendChild(card);
    });
    $("ov-sections").classList.toggle("many", map.sections.length > 4);
    fillPriceFilter(map);
  }

  /** Same layout as before? Then statuses are updated in place and focus is kept. */
  function sameLayout(a, b) {
    if (!a || a.sections.length !== b.sections.length) return false;
    for (var i = 0; i < a.sections.length; i++) {
      var x = a.sections[i];
      var y = b.sections[i];
      if (x.id !== y.id || x.kind !== y.kind || x.price !== y.price
        || (x.rows || []).length !== (y.rows || []).length) {
        return false;
      }
    }
    return true;
  }

  /** The per-order limit in force: the event's, or the per-buyer one when smaller. */
  function setLimits(source) {
    if (!source || !source.max_seats_per_order) return;
    var n = source.max_seats_per_order;
    if (source.max_tickets_per_buyer) n = Math.min(n, source.max_tickets_per_buyer);
    var words = t("seats.pick.max", { count: n });
    if ($("max-seats").textContent !== words) $("max-seats").textContent = words;
    if (n === S.maxSeats) return;
    S.maxSeats = n;
    Object.keys(S.cards || {}).forEach(fillBestOptions);
  }

  function applyMap(map) {
    var old = S.map;
    S.currency = map.currency || S.currency;
    setLimits(map);
    var lost = [];
    if (!sameLayout(old, map)) {
      S.map = map;
      buildMap(map);
    } else {
      S.map = map;
      map.sections.forEach(function (section) {
        $("avail-" + section.id).textContent = availabilityText(section);
        (section.rows || []).forEach(function (row) {
          row.seats.forEach(function (seat) {
            var info = S.seatInfo[seat.id];
            if (!info) return;
            var accessible = !!seat.accessible;
            if (info.status !== seat.status || info.price !== seat.price || info.accessible !== accessible) {
              info.status = seat.status;
              info.price = seat.price;
              info.accessible = accessible;
              paintSeat(info);
            }
          });
        });
      });
    }
    // seats picked but taken meanwhile by someone else leave the selection
    S.selected.slice().forEach(function (id) {
      var info = S.seatInfo[id];
      if (!info || info.status !== "free") {
        lost.push(id);
        S.selected.splice(S.selected.indexOf(id), 1);
        if (info) paintSeat(info);
      }
    });
    if (lost.length) {
      speak(t("seats.lost", { count: lost.length, seats: lost.map(seatName).join("; ") }));
      lost.forEach(function (id) { S.taken[id] = Date.now(); });
      lost.forEach(function (id) { if (S.seatInfo[id]) paintSeat(S.seatInfo[id]); });
    }
    if (S.ga && S.ga.quantity > Math.min(S.maxSeats, sectionAvailable(S.ga.section))) {
      chooseGa(S.ga.section, Math.min(S.maxSeats, sectionAvailable(S.ga.section)));
    }
    map.sections.forEach(function (section) {
      paintTile(section);
      paintStepper(section.id);
    });
    applyFilters();
    var soldOut = map.state === "sold_out" || map.available === 0;
    $("sold-out-note").hidden = !soldOut;
    if (map.state === "closed") {
      showError("pick-error", t("seats.sale_ended"));
    }
    updateSummary();
  }

  function expireTakenMarks() {
    var now = Date.now();
    Object.keys(S.taken).forEach(function (id) {
      if (now - S.taken[id] > TAKEN_MS) {
        delete S.taken[id];
        if (S.seatInfo[id]) paintSeat(S.seatInfo[id]);
      }
    });
  }

  async function loadMap() {
    var r = await BO.api("/api/events/" + encodeURIComponent(eventId) + "/seats", { tries: 1 });
    if (r.ok && r.body) {
      applyMap(r.body);
      setMapStatus("live", t("seats.status.live"));
      return true;
    }
    setMapStatus("polling", t("seats.status.busy"));
    return false;
  }

  function setMapStatus(mode, text) {
    $("map-status").setAttribute("data-mode", mode);
    $("map-status-text").textContent = text;
  }

  function startPolling() {
    if (S.pollTimer !== null) return;
    var loop = async function () {
      S.pollTimer = null;
      if (S.view !== "pick") return;
      try {
        await loadMap();
      } catch (e) {
        setMapStatus("offline", t("seats.status.offline"));
      }
      expireTakenMarks();
      if (S.view !== "pick") return;
      S.pollTimer = setTimeout(loop, BO.jitter(document.hidden ? POLL_HIDDEN_MS : POLL_MS, 0.2));
    };
    S.pollTimer = setTimeout(loop, BO.jitter(POLL_MS, 0.2));
  }

  function stopPolling() {
    if (S.pollTimer !== null) clearTimeout(S.pollTimer);
    S.pollTimer = null;
  }

  // ---- selection ------------------------------------------------------------------------------

  function onSeatClick(e) {
    var b = e.target.closest("button.seat");
    if (!b) return;
    var info = S.seatInfo[b.getAttribute("data-seat")];
    if (!info) return;
    var i = S.selected.indexOf(info.id);
    if (i >= 0) {
      S.selected.splice(i, 1);
      paintSeat(info);
      speak(t("seats.removed", { seat: info.label, selection: selectionWords() }));
      updateSummary();
      return;
    }
    if (info.status !== "free") {
      showError("pick-error", t(info.status === "sold" ? "seats.pick_sold" : "seats.pick_held", {
        seat: info.label, section: S.sectionNames[info.section],
      }));
      return;
    }
    if (dimmed(info)) {
      showError("pick-error", t("seats.pick_not_accessible", { seat: info.label }));
      return;
    }
    if (S.selected.length >= S.maxSeats) {
      showError("pick-error", t("seats.pick_limit", { count: S.maxSeats }),
        t("seats.at_most", { count: S.maxSeats }));
      return;
    }
    if (S.ga) {
      clearGa();
      speak(t("seats.standing_cleared"));
    }
    S.selected.push(info.id);
    delete S.taken[info.id];
    paintSeat(info);
    showError("pick-error", "");
    speak(t("seats.selected", { seat: info.label, selection: selectionWords() }));
    updateSummary();
  }

  function clearGa() {
    var prev = S.ga;
    S.ga = null;
    if (prev) {
      var input = document.querySelector('input[data-ga="' + prev.section + '"]');
      if (input) input.value = "0";
      paintStepper(prev.section);
    }
  }

  function chooseGa(sectionId, quantity) {
    if (quantity > 0 && S.selected.length) {
      var ids = S.selected.slice();
      S.selected = [];
      ids.forEach(function (id) { if (S.seatInfo[id]) paintSeat(S.seatInfo[id]); });
      speak(t("seats.seats_cleared"));
    }
    if (S.ga && S.ga.section !== sectionId) clearGa();
    S.ga = quantity > 0 ? { section: sectionId, quantity: quantity } : null;
    var input = document.querySelector('input[data-ga="' + sectionId + '"]');
    if (input) input.value = String(quantity);
    paintStepper(sectionId);
    showError("pick-error", "");
    updateSummary();
  }

  function selectionWords() {
    var n = S.selected.length;
    return n ? t("seats.selection", { count: n, most: S.maxSeats }) : t("seats.no_seats_selected");
  }

  function updateSummary() {
    var count = $("selection-count");
    var detail = $("selection-detail");
    var button = $("hold-button");
    var amount = 0;
    if (S.ga) {
      var price = 0;
      S.map.sections.forEach(function (s) { if (s.id === S.ga.section) price = s.price; });
      amount = price * S.ga.quantity;
      count.textContent = t("seats.summary.tickets", { count: S.ga.quantity, amount: money(amount) });
      detail.textContent = t("seats.summary.standing", { section: S.sectionNames[S.ga.section] });
      button.textContent = t("seats.hold_tickets");
    } else if (S.selected.length) {
      S.selected.forEach(function (id) { amount += S.seatInfo[id] ? S.seatInfo[id].price : 0; });
      count.textContent = t("seats.summary.seats", { count: S.selected.length, amount: money(amount) });
      var names = S.selected.map(function (id) {
        return S.seatInfo[id] && S.seatInfo[id].accessible
          ? t("seats.summary.accessible", { seat: seatName(id) }) : seatName(id);
      }).join("; ");
      detail.textContent = S.selected.length >= S.maxSeats
        ? t("seats.summary.the_most", { seats: names }) : names;
      button.textContent = t("seats.hold");
    } else {
      count.textContent = t("seats.none_selected");
      detail.textContent = t("seats.summary.up_to", { count: S.maxSeats });
      button.textContent = t("seats.hold");
    }
    var waiting = S.retryUntil > Date.now();
    button.disabled = S.busy || waiting || !(S.ga || S.selected.length);
    Object.keys(S.cards).forEach(function (id) {
      if (S.cards[id].bestButton) S.cards[id].bestButton.disabled = S.busy || waiting;
    });
  }

  // ---- arrow keys in a seat grid (roving tabindex) --------------------------------------------

  function setRoving(grid, target) {
    var current = grid.querySelectorAll('button.seat[tabindex="0"]');
    for (var i = 0; i < current.length; i++) if (current[i] !== target) current[i].tabIndex = -1;
    target.tabIndex = 0;
  }

  function onGridKey(e) {
    var b = e.target.closest("button.seat");
    if (!b) return;
    var grid = e.currentTarget;
    var rows = grid.querySelectorAll(".seat-row");
    var row = b.parentNode;
    var seats = row.querySelectorAll("button.seat");
    var r = Array.prototype.indexOf.call(rows, row);
    var c = Array.prototype.indexOf.call(seats, b);
    var next = null;
    function at(ri, ci) {
      var rowSeats = rows[ri].querySelectorAll("button.seat");
      return rowSeats[Math.min(ci, rowSeats.length - 1)];
    }
    var section = grid.getAttribute("data-section");
    if (e.key === "+" || e.key === "=" || e.key === "-" || e.key === "−") {
      e.preventDefault();
      zoomBy(section, e.key === "-" || e.key === "−" ? 1 / ZOOM_STEP : ZOOM_STEP,
        b.getBoundingClientRect().left - S.cards[section].scroller.getBoundingClientRect().left);
      b.scrollIntoView({ block: "nearest", inline: "nearest" });
      return;
    }
    switch (e.key) {
      case "ArrowRight": next = seats[c + 1]; break;
      case "ArrowLeft": next = seats[c - 1]; break;
      case "ArrowDown": if (r + 1 < rows.length) next = at(r + 1, c); break;
      case "ArrowUp": if (r > 0) next = at(r - 1, c); break;
      case "Home": next = e.ctrlKey ? at(0, 0) : seats[0]; break;
      case "End": next = e.ctrlKey ? at(rows.length - 1, 1e9) : seats[seats.length - 1]; break;
      case "PageDown": next = at(rows.length - 1, c); break;
      case "PageUp": next = at(0, c); break;
      default: return;
    }
    e.preventDefault();
    if (next) {
      setRoving(grid, next);
      next.focus();
    }
  }

  // ---- holding --------------------------------------------------------------------------------

  async function holdSelection() {
    if (S.busy) return;
    if (!accessValid()) { turnOver(); return; }
    var body = S.ga ? { section: S.ga.section, quantity: S.ga.quantity } : { seats: S.selected.slice() };
    if (!S.ga && !S.selected.length) return;
    S.busy = true;
    showError("pick-error", "");
    updateSummary();
    $("hold-button").textContent = t("seats.holding");
    var r;
    try {
      r = await BO.api("/api/events/" + encodeURIComponent(eventId) + "/holds", {
        method: "POST", body: body, tries: 1,
        headers: { "Authorization": "Bearer " + S.access.token },
      });
    } catch (e) {
      pickUnreachable();
      return;
    }
    S.busy = false;
    handleHoldAnswer(r);
    updateSummary();
  }

  /** A hold or a best-seats call that never reached the box office: the buttons work again. */
  function pickUnreachable() {
    S.busy = false;
    updateSummary();
    showError("pick-error", t("seats.unreachable"));
  }

  function handleHoldAnswer(r) {
    var b = r.body || {};
    if (r.status === 201) {
      var picked = S.selected;
      S.selected = [];
      picked.forEach(function (id) { if (S.seatInfo[id]) paintSeat(S.seatInfo[id]); });
      clearGa();
      startHold(b);
      return;
    }
    if (r.status === 409 && b.error === "seats_unavailable") {
      var taken = b.seats || [];
      if (taken.length) {
        var takenAt = Date.now();
        taken.forEach(function (id) {
          S.taken[id] = takenAt;
          var i = S.selected.indexOf(id);
          if (i >= 0) S.selected.splice(i, 1);
          var info = S.seatInfo[id];
          if (info) {
            if (info.status === "free") info.status = "held";
            paintSeat(info);
          }
        });
        showError("pick-error", t(S.selected.length ? "seats.taken_keep_others" : "seats.taken", {
          count: taken.length, seats: taken.map(seatName).join("; "),
        }), t("seats.taken_short", { seats: taken.map(function (id) {
          return S.seatInfo[id] ? S.seatInfo[id].label : id;
        }).join("; ") }));
        var first = S.seatInfo[taken[0]];
        if (first) first.button.scrollIntoView({ block: "nearest", inline: "center" });
      } else if (b.section) {
        showError("pick-error", t("seats.qty.only_left", {
          count: b.available || 0, section: S.sectionNames[b.section] || b.section,
        }));
      } else {
        showError("pick-error", t("seats.tickets_taken"));
      }
      loadMap().catch(function () {});
      return;
    }
    if (r.status === 409 && b.error === "sale_closed") {
      showError("pick-error", t("seats.sale_ended"));
      return;
    }
    if (r.status === 409 && b.error === "buyer_limit") {
      showError("pick-error", buyerLimitText(b) + (b.limit > b.bought
        ? " " + t("seats.buyer_more", { count: b.limit - b.bought }) : ""));
      return;
    }
    if (r.status === 410 || (r.status === 403 && (b.error === "no_access" || b.error === "bad_access"))) {
      turnOver();
      return;
    }
    if (r.status === 422 && b.error === "too_many_seats") {
      if (b.limit) setLimits({ max_seats_per_order: b.limit });
      showError("pick-error", t("seats.pick_limit_short", { count: S.maxSeats }));
      return;
    }
    if (r.status === 422 && b.error === "unknown_seats") {
      showError("pick-error", t("seats.unknown_seats"));
      loadMap().catch(function () {});
      return;
    }
    if (r.status === 429 || r.status === 503) {
      var secs = Number(r.response.headers.get("Retry-After")) || 5;
      S.retryUntil = Date.now() + secs * 1000;
      showError("pick-error", t(r.status === 429 ? "seats.too_many" : "seats.busy", { count: secs }));
      setTimeout(updateSummary, secs * 1000 + 50);
      return;
    }
    showError("pick-error", t("seats.hold_failed"));
  }

  /** "Best available": ask for the best N seats side by side, then hold them the normal way
   * (again, up to 3 times, when someone takes one of them in between). */
  async function holdBest(sectionId) {
    if (S.busy) return;
    if (!accessValid()) { turnOver(); return; }
    var quantity = parseInt(S.cards[sectionId].bestSelect.value, 10) || 1;
    var auth = { "Authorization": "Bearer " + S.access.token };
    var base = "/api/events/" + encodeURIComponent(eventId);
    S.busy = true;
    showError("pick-error", "");
    updateSummary();
    var found = null;
    var held = null;
    try {
      for (var attempt = 0; attempt < 3; attempt++) {
        found = await BO.api(base + "/best-seats", {
          method: "POST", tries: 1, headers: auth,
          body: { section: sectionId, quantity: quantity, accessible: S.filter.accessible },
        });
        if (found.status !== 200) break;
        held = await BO.api(base + "/holds", {
          method: "POST", tries: 1, headers: auth, body: { seats: found.body.seats },
        });
        if (!(held.status === 409 && held.body && held.body.error === "seats_unavailable")) break;
      }
    } catch (e) {
      pickUnreachable();
      return;
    }
    S.busy = false;
    var b = found.body || {};
    if (found.status === 409 && b.error === "no_adjacent_seats") {
      showError("pick-error", t(S.filter.accessible ? "seats.best.none_accessible" : "seats.best.none", {
        count: quantity, section: S.sectionNames[sectionId],
      }), t("seats.best.none_short", { count: quantity }));
      updateSummary();
      return;
    }
    handleHoldAnswer(found.status === 200 ? held : found);
    updateSummary();
  }

  function startHold(hold) {
    S.hold = hold;
    BO.session.setItem(holdKey, JSON.stringify(hold));
    renderPicked($("held-seats"), hold.seats, hold.section, hold.quantity, hold.amount, hold.currency);
    $("held-amount").textContent = money(hold.amount, hold.currency);
    var saved = BO.local.getItem(emailKey);
    if (saved && !$("email").value) $("email").value = saved;
    showError("held-error", "");
    showView("held");
    tick();
    speak(t("seats.held.spoken", { duration: BO.formatDuration(BO.msLeft(hold.expires_at) / 1000) }));
  }

  function renderPicked(list, seats, section, quantity, amount, currency) {
    list.textContent = "";
    (seats || []).forEach(function (id) {
      var li = document.createElement("li");
      li.textContent = seatName(id);
      list.appendChild(li);
    });
    if (section && quantity) {
      var li = document.createElement("li");
      li.textContent = t("seats.held.standing", { count: quantity, section: S.sectionNames[section] || section });
      list.appendChild(li);
    }
  }

  async function releaseHold(message) {
    var hold = S.hold;
    S.hold = null;
    BO.session.removeItem(holdKey);
    if (hold) {
      try {
        await BO.api("/api/holds/" + encodeURIComponent(hold.hold_id), { method: "DELETE", tries: 2 });
      } catch (e) { /* it expires on its own */ }
    }
    backToPick(message || t("seats.failed.released"));
  }

  function backToPick(message) {
    S.hold = null;
    S.order = null;
    BO.session.removeItem(holdKey);
    setOrderInUrl(null);
    if (!accessValid()) {
      turnOver();
      if (message) $("out-text").textContent = t("seats.out.message_and_end", { message: message });
      return;
    }
    showView("pick");
    showError("pick-error", message || "");
    loadMap().catch(function () {});
  }

  // ---- checkout -------------------------------------------------------------------------------

  async function checkout(e) {
    e.preventDefault();
    if (S.busy || !S.hold) return;
    var email = $("email").value.trim();
    if (!EMAIL_RE.test(email)) {
      fieldError("email", t("seats.email_needed"));
      $("email").focus();
      return;
    }
    fieldError("email", "");
    BO.local.setItem(emailKey, email);
    S.busy = true;
    $("checkout-button").disabled = true;
    var r;
    try {
      r = await BO.api("/api/holds/" + encodeURIComponent(S.hold.hold_id) + "/checkout", {
        method: "POST", body: { email: email }, tries: 3,
      });
    } catch (err) {
      r = null;
    }
    S.busy = false;
    $("checkout-button").disabled = false;
    if (!r) {
      showError("held-error", t("seats.held.unreachable"));
      return;
    }
    var b = r.body || {};
    if (r.status === 201 || r.status === 200) {
      BO.session.removeItem(holdKey);
      S.hold = null;
      showOrder(b);
      return;
    }
    if (r.status === 410) {
      backToPick(t("seats.hold_expired"));
      return;
    }
    if (r.status === 422) {
      fieldError("email", t("seats.email_wrong"));
      $("email").focus();
      return;
    }
    if (r.status === 403 || r.status === 404) {
      backToPick(t("seats.hold_not_yours"));
      return;
    }
    if (r.status === 409 && b.error === "buyer_limit") {
      showError("held-error", buyerLimitText(b) + " " + t("seats.held.buyer_limit"));
      return;
    }
    showError("held-error", t("seats.held.try_again"));
  }

  // The per-buyer limit (409 buyer_limit carries `limit` and `bought`), in words.
  function buyerLimitText(b) {
    return t("seats.buyer_limit", { count: b.limit, bought: t("seats.buyer_bought", { count: b.bought }) });
  }

  function fieldError(field, text) {
    var input = $(field);
    var err = $(field + "-error");
    if (text) {
      input.setAttribute("aria-invalid", "true");
      err.textContent = text;
      err.hidden = false;
    } else {
      input.removeAttribute("aria-invalid");
      err.textContent = "";
      err.hidden = true;
    }
  }

  // ---- orders ---------------------------------------------------------------------------------

  function showOrder(order) {
    S.order = order;
    setOrderInUrl(order.order_id);
    if (order.status === "paid") { showDone(order); return; }
    if (order.status === "pending") { showPay(order); return; }
    var texts = {
      failed: order.status_reason === "card_declined"
        ? t("seats.failed.declined") : t("seats.failed.payment_failed"),
      expired: t("seats.failed.expired"),
      voided: order.status_reason === "buyer_limit"
        ? t("seats.failed.buyer_limit") : t("seats.failed.voided"),
      refunded: t("seats.failed.refunded"),
    };
    showFailed(texts[order.status] || t("seats.failed.other"));
  }

  function showFailed(text) {
    S.hold = null;
    BO.session.removeItem(holdKey);
    $("failed-text").textContent = text;
    $("pick-again").textContent = accessValid() ? t("seats.failed.again") : t("seats.out.back_to_room");
    showView("failed");
  }

  function showPay(order) {
    renderPicked($("pay-seats"), order.seats, order.section, order.quantity, order.amount, order.currency);
    $("pay-amount").textContent = money(order.amount, order.currency);
    $("pay-for").textContent = t("seats.pay.for", { email: order.email });
    showError("pay-error", "");
    $("pay-waiting").hidden = true;
    var p = order.payment || {};
    $("dev-form").hidden = p.provider !== "dev";
    $("stripe-form").hidden = p.provider !== "stripe";
    $("pay-button").textContent = t("seats.pay.pay_amount", { amount: money(order.amount, order.currency) });
    $("stripe-pay-button").textContent = t("seats.pay.pay_amount", { amount: money(order.amount, order.currency) });
    showView("pay");
    tick();
    if (p.provider === "stripe") setUpStripe(order);
  }

  async function payDev(e) {
    e.preventDefault();
    if (S.busy || !S.order) return;
    var card = $("card").value.replace(/[\s-]/g, "");
    if (!/^\d{12,19}$/.test(card)) {
      fieldError("card", t("seats.pay.card_needed"));
      $("card").focus();
      return;
    }
    fieldError("card", "");
    S.busy = true;
    $("pay-button").disabled = true;
    $("pay-waiting").hidden = false;
    showError("pay-error", "");
    var r;
    try {
      r = await BO.api("/api/orders/" + encodeURIComponent(S.order.order_id) + "/pay", {
        method: "POST", body: { card: card }, tries: 2,
      });
    } catch (err) {
      r = null;
    }
    S.busy = false;
    $("pay-button").disabled = false;
    $("pay-waiting").hidden = true;
    if (!r) {
      showError("pay-error", t("seats.pay.unreachable"));
      return;
    }
    var b = r.body || {};
    if (r.ok) { showOrder(b); return; }
    if (r.status === 402) {
      showFailed(t("seats.failed.declined"));
      return;
    }
    if (r.status === 422) {
      fieldError("card", t("seats.pay.card_refused"));
      $("card").focus();
      return;
    }
    if (r.status === 409) { await refreshOrder(); return; }
    showError("pay-error", t("seats.pay.try_again"));
  }

  async function refreshOrder() {
    if (!S.order) return null;
    var r = await BO.api("/api/orders/" + encodeURIComponent(S.order.order_id), { tries: 3 });
    if (r.ok && r.body) {
      if (r.body.status !== "pending" || S.view !== "pay") showOrder(r.body);
      else S.order = r.body;
      return r.body;
    }
    return null;
  }

  // ---- Stripe (only when the server says so; loaded on demand) --------------------------------

  function loadStripeJs() {
    if (window.Stripe) return Promise.resolve();
    return new Promise(function (resolve, reject) {
      var s = document.createElement("script");
      s.src = STRIPE_JS;
      s.async = true;
      s.onload = function () { resolve(); };
      s.onerror = function () { reject(new Error("Stripe.js did not load")); };
      document.head.appendChild(s);
    });
  }

  async function setUpStripe(order) {
    var p = order.payment;
    var button = $("stripe-pay-button");
    if (!p.publishable_key || !p.client_secret) {
      button.disabled = true;
      showError("pay-error", t("seats.pay.unavailable"));
      return;
    }
    if (S.stripeElements) return;
    button.disabled = true;
    try {
      await loadStripeJs();
      S.stripe = window.Stripe(p.publishable_key);
      S.stripeElements = S.stripe.elements({ clientSecret: p.client_secret });
      S.stripeElements.create("payment").mount("#stripe-element");
      button.disabled = false;
    } catch (err) {
      showError("pay-error", t("seats.pay.form_failed"));
    }
    var params = new URLSearchParams(location.search);
    if (params.get("redirect_status")) waitForWebhook();
  }

  async function payStripe(e) {
    e.preventDefault();
    if (S.busy || !S.stripe || !S.stripeElements) return;
    S.busy = true;
    $("stripe-pay-button").disabled = true;
    showError("pay-error", "");
    try {
      var result = await S.stripe.confirmPayment({
        elements: S.stripeElements,
        confirmParams: { return_url: location.href },
        redirect: "if_required",
      });
      if (result.error) {
        showError("pay-error", result.error.message || t("seats.pay.not_through"));
      } else {
        await waitForWebhook();
      }
    } catch (err) {
      showError("pay-error", t("seats.pay.not_sent"));
    }
    S.busy = false;
    $("stripe-pay-button").disabled = false;
  }

  /** Stripe confirmed in the browser: the order turns paid when the webhook arrives. */
  async function waitForWebhook() {
    $("pay-waiting").hidden = false;
    for (var i = 0; i < 30 && S.view === "pay"; i++) {
      var order = await refreshOrder().catch(function () { return null; });
      if (order && order.status !== "pending") return;
      await BO.sleep(2000);
    }
    $("pay-waiting").hidden = true;
  }

  // ---- confirmation ---------------------------------------------------------------------------

  function showDone(order) {
    $("done-order").textContent = order.order_id;
    $("done-amount").textContent = money(order.amount, order.currency);
    $("done-for").textContent = t("seats.done.for", { email: order.email });
    if (order.order_url) $("done-link").href = order.order_url;
    var list = $("tickets");
    list.textContent = "";
    order.tickets.forEach(function (ticket, i) {
      var li = document.createElement("li");
      li.className = "ticket";
      var what = document.createElement("span");
      what.className = "ticket-seat";
      what.textContent = ticket.seat_id ? seatName(ticket.seat_id)
        : t("common.standing_name", { section: S.sectionNames[ticket.section_id] || ticket.section_id });
      var code = document.createElement("code");
      code.className = "ticket-code";
      code.textContent = ticket.code;
      code.setAttribute("aria-label", t("seats.done.code_label", { code: ticket.code.split("").join(" ") }));
      // Tickets come numbered 1, 2, … in this order; the QR code encodes the same ticket code.
      var qr = document.createElement("img");
      qr.className = "ticket-qr";
      qr.alt = t("seats.done.qr_alt", { code: ticket.code });
      qr.src = "/api/orders/" + encodeURIComponent(order.order_id) + "/tickets/" + (ticket.number || i + 1) + ".svg";
      qr.width = 132;
      qr.height = 132;
      li.appendChild(what);
      li.appendChild(code);
      li.appendChild(qr);
      list.appendChild(li);
    });
    BO.session.removeItem(holdKey);
    showView("done");
    speak(t("seats.done.spoken", { count: order.tickets.length }));
  }

  // ---- clocks ---------------------------------------------------------------------------------

  function warnOnce(key, seconds, text) {
    if (S.warned[key] || seconds > 60) return;
    S.warned[key] = true;
    $("hold-announcer").textContent = text;
  }

  /** Every countdown is the server's deadline less the server's time now (BO.msLeft). */
  function tick() {
    var now = BO.now();
    if (S.access) {
      var turnLeft = BO.msLeft(S.access.expires);
      $("turn-countdown").textContent = BO.formatCountdown(turnLeft);
      if (turnLeft <= 0 && S.view === "pick") turnOver();
    }
    if (S.view === "held" && S.hold) {
      var left = BO.msLeft(S.hold.expires_at);
      $("hold-countdown").textContent = BO.formatCountdown(left);
      warnOnce("hold-" + S.hold.hold_id, left / 1000, t("seats.held.last_minute"));
      if (left <= 0) backToPick(t("seats.hold_expired"));
    }
    if (S.view === "pay" && S.order) {
      var payLeft = BO.msLeft(S.order.expires_at);
      $("pay-countdown").textContent = BO.formatCountdown(payLeft);
      warnOnce("pay-" + S.order.order_id, payLeft / 1000, t("seats.pay.last_minute"));
      if (payLeft <= -5000 && !S.busy && now - (S.lastOrderCheck || 0) > 10000) {
        S.lastOrderCheck = now;
        refreshOrder().catch(function () {});
      }
    }
  }

  /** Just admitted (the waiting room moved on by itself): say so, with the time left, and
   * alert a fan who opted in — a notification when this tab is in the background. Once. */
  function greetTurn() {
    if (BO.session.getItem(BO.turnKey(eventId)) !== "new") return;
    BO.session.removeItem(BO.turnKey(eventId));
    var left = t("seats.turn.minutes", { count: Math.max(1, Math.round(BO.msLeft(S.access.expires) / 60000)) });
    var name = S.event ? S.event.name : t("common.brand");
    document.title = t("seats.turn.title", { name: name });
    speak(t("seats.turn.spoken", { duration: left }));
    BO.alerts.turn(t("seats.turn.title", { name: name }), t("seats.turn.body", { duration: left }));
  }

  // ---- start ----------------------------------------------------------------------------------

  function storedHold() {
    try {
      var h = JSON.parse(BO.session.getItem(holdKey) || "null");
      if (h && h.hold_id && BO.msLeft(h.expires_at) > 0) return h;
    } catch (e) { /* ignore */ }
    BO.session.removeItem(holdKey);
    return null;
  }

  function wire() {
    window.addEventListener("resize", function () { S.fits.forEach(function (f) { f(); }); });
    $("hold-button").addEventListener("click", holdSelection);
    $("email-form").addEventListener("submit", checkout);
    $("email").addEventListener("input", function () {
      if ($("email").getAttribute("aria-invalid") && EMAIL_RE.test($("email").value.trim())) {
        fieldError("email", "");
      }
    });
    $("release-button").addEventListener("click", function () { releaseHold(); });
    $("dev-form").addEventListener("submit", payDev);
    $("stripe-form").addEventListener("submit", payStripe);
    $("pick-again").addEventListener("click", function () { backToPick(""); });
    $("price-filter").addEventListener("change", function () {
      var v = $("price-filter").value;
      S.filter.maxPrice = v === "" ? null : Number(v);
      applyFilters();
    });
    $("accessible-only").addEventListener("change", function () {
      S.filter.accessible = $("accessible-only").checked;
      applyFilters();
    });
    $("print-button").addEventListener("click", function () { window.print(); });
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && S.view === "pick") {
        stopPolling();
        loadMap().catch(function () {});
        startPolling();
      }
    });
  }

  async function start() {
    wire();
    $("back-link").href = "/e/" + encodeURIComponent(eventId);
    try {
      var ev = await BO.api("/api/events/" + encodeURIComponent(eventId), { tries: 4 });
      if (ev.ok && ev.body) {
        S.event = ev.body;
        S.currency = ev.body.currency;
        $("event-name").textContent = ev.body.name;
        $("event-meta").textContent = t("common.venue_and_date", {
          venue: ev.body.venue, date: BO.formatDateTime(ev.body.starts_at, ev.body.timezone),
        });
        ev.body.sections.forEach(function (s) { S.sectionNames[s.id] = s.name; });
        setLimits(ev.body);
      }
      setInterval(tick, 1000);
      S.access = await findAccess();

      var orderId = new URLSearchParams(location.search).get("order");
      if (orderId) {
        var o = await BO.api("/api/orders/" + encodeURIComponent(orderId), { tries: 4 });
        if (o.ok && o.body) {
          if (o.body.seats.length && !S.map) await loadMap().catch(function () {});
          showOrder(o.body);
          if (o.body.status === "pending" && new URLSearchParams(location.search).get("redirect_status")) {
            waitForWebhook();
          }
          return;
        }
        setOrderInUrl(null);
      }
      var hold = storedHold();
      if (hold) {
        await loadMap().catch(function () {});
        startHold(hold);
        return;
      }
      if (!accessValid()) {
        goOut();
        return;
      }
      var loaded = await loadMap().catch(function () { return false; });
      if (!loaded) showError("pick-error", t("seats.map_retrying"));
      showView("pick");
      tick();
      greetTurn();
    } catch (e) {
      goOut(t("seats.out.unreachable"), t("seats.out.back_to_room"));
    }
  }

  document.addEventListener("DOMContentLoaded", start);
})();
