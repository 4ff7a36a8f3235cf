/* The fan pages' language: messages from the catalogs (static/i18n/<lang>.json) with
 * t(key, params) and plurals by Intl.PluralRules, numbers, prices and dates through Intl in the
 * page's language, and the language picker. No build step, no dependencies.
 *
 * Pages the server sends are already written in the chosen language (server/runtime/
 * translations.py) and carry their part of the catalog inline (<script id="bo-i18n">); the
 * busy page, a plain file NGINX shows when no app answers, chooses here (the picker's cookie,
 * else the browser's languages), fetches its catalog and translates itself.
 *
 * Markup: data-i18n="key" on an element replaces its text; data-i18n-<attribute>="key" (e.g.
 * data-i18n-aria-label) replaces that attribute. Placeholders are {name}; a message that is an
 * object holds plural forms ("one", "other", …) chosen by params.count. */
(function () {
  "use strict";

  var COOKIE = "bo_lang";
  var DEFAULT = "en";
  var state = { lang: DEFAULT, languages: {}, messages: {} };

  function inline() {
    var node = document.getElementById("bo-i18n");
    if (!node) return null;
    try { return JSON.parse(node.textContent); } catch (e) { return null; }
  }

  function cookieLang() {
    var m = /(?:^|;\s*)bo_lang=([a-z]{2,3})(?:;|$)/.exec(document.cookie);
    return m ? m[1] : "";
  }

  /** The picker's choice, else the first of the browser's languages there is a catalog for. */
  function choose(languages) {
    var wanted = [cookieLang()].concat(navigator.languages || [navigator.language || ""]);
    for (var i = 0; i < wanted.length; i++) {
      var primary = String(wanted[i] || "").toLowerCase().split("-")[0];
      if (Object.prototype.hasOwnProperty.call(languages, primary)) return primary;
    }
    return DEFAULT;
  }

  function plural(n) {
    try { return new Intl.PluralRules(state.lang).select(n); } catch (e) { return "other"; }
  }

  /** A number in the page's language: 1,234 / 1.234 / 1 234. */
  function number(n, options) {
    try { return new Intl.NumberFormat(state.lang, options).format(n); } catch (e) { return String(n); }
  }

  /** The message `key` in the page's language, its {placeholders} filled from `params`
   * (numbers formatted for the language), its plural form chosen by params.count. */
  function t(key, params) {
    var message = state.messages[key];
    if (message === undefined) {
      if (window.console) console.warn("i18n: no message", key);
      return key;
    }
    if (typeof message === "object") {
      var form = plural(params && typeof params.count === "number" ? params.count : 0);
      message = message[form] !== undefined ? message[form] : message.other;
    }
    return message.replace(/\{(\w+)\}/g, function (all, name) {
      if (!params || !Object.prototype.hasOwnProperty.call(params, name)) return all;
      var value = params[name];
      return typeof value === "number" ? number(value) : String(value);
    });
  }

  /** An amount in the currency's minor unit as a price: "€50.00", "50,00 €". */
  function money(minor, currency) {
    try {
      var format = new Intl.NumberFormat(state.lang, { style: "currency", currency: currency });
      var digits = format.resolvedOptions().maximumFractionDigits;
      return format.format(minor / Math.pow(10, digits));
    } catch (e) {
      return (minor / 100).toFixed(2) + " " + currency;
    }
  }

  /** Date parts through Intl in the page's language; in `timeZone` (an IANA name) when it is
   * one the browser knows, else in the browser's own. */
  function dateTime(when, options, timeZone) {
    var d = when instanceof Date ? when : new Date(when);
    if (isNaN(d.getTime())) return "";
    var o = {};
    Object.keys(options).forEach(function (k) { o[k] = options[k]; });
    if (timeZone) o.timeZone = timeZone;
    try {
      return new Intl.DateTimeFormat(state.lang, o).format(d);
    } catch (e) {
      delete o.timeZone;
      return new Intl.DateTimeFormat(state.lang, o).format(d);
    }
  }

  /** Replace the marked texts and attributes under `root` (for pages the server did not). */
  function translate(root) {
    root.querySelectorAll("[data-i18n]").forEach(function (el) {
      el.textContent = t(el.getAttribute("data-i18n"));
    });
    root.querySelectorAll("*").forEach(function (el) {
      Array.prototype.forEach.call(el.attributes, function (a) {
        if (a.name.indexOf("data-i18n-") === 0 && a.name !== "data-i18n-scopes") {
          el.setAttribute(a.name.slice("data-i18n-".length), t(a.value));
        }
      });
    });
  }

  /** Remember the choice (a cookie, so the server writes the next pages in it) and reload. */
  function pick(lang) {
    var secure = location.protocol === "https:" ? "; secure" : "";
    document.cookie = COOKIE + "=" + lang + "; path=/; max-age=31536000; samesite=lax" + secure;
    location.reload();
  }

  /** The picker: a select in #lang-picker listing each language in its own name. */
  function picker() {
    var slot = document.getElementById("lang-picker");
    if (!slot || slot.querySelector("select")) return;
    var select = document.createElement("select");
    select.id = "lang-select";
    select.className = "lang-select";
    select.setAttribute("aria-label", t("common.language"));
    Object.keys(state.languages).forEach(function (code) {
      var option = document.createElement("option");
      option.value = code;
      option.lang = code;
      option.textContent = state.languages[code];
      option.selected = code === state.lang;
      select.appendChild(option);
    });
    select.addEventListener("change", function () { pick(select.value); });
    slot.appendChild(select);
  }

  async function fetchJson(path) {
    var r = await fetch(path, { credentials: "same-origin" });
    if (!r.ok) throw new Error(path + ": " + r.status);
    return r.json();
  }

  async function load() {
    var languages = await fetchJson("/static/i18n/languages.json");
    var lang = choose(languages);
    state = { lang: lang, languages: languages, messages: await fetchJson("/static/i18n/" + lang + ".json") };
    document.documentElement.lang = lang;
    translate(document);
  }

  var given = inline();
  var ready;
  if (given) {
    state = given;
    ready = Promise.resolve();
  } else {
    ready = load().catch(function () { /* the page's own English stays */ });
  }
  ready.then(function () {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", picker);
    else picker();
  });

  window.I18N = {
    ready: ready,
    get lang() { return state.lang; },
    t: t,
    number: number,
    money: money,
    dateTime: dateTime,
    translate: translate,
  };
})();
