/* The bot challenge a new place in line costs: fetch an ALTCHA challenge from the server and
 * solve it with the vendored widget (static/vendor/altcha/, see its README), whose workers do
 * the proof of work off the main thread. The widget stays hidden: the waiting page shows its own
 * "checking your browser…" panel.
 *
 * BO.challenge.solve(url, onWait) fetches a challenge and answers the payload to send as
 * {"altcha": payload} with the join (solveChallenge(challenge) solves one already fetched), or
 * throws an Error with `kind`:
 *   "unsupported"  this browser lacks what the check needs (workers, Web Crypto, HTTPS)
 *   "blocked"      the widget's script did not load (a blocker, a filter, the network)
 *   "failed"       the widget loaded but could not finish (e.g. its worker was refused)
 *   "server"       no challenge could be fetched (the message says why)
 */
(function () {
  "use strict";

  var BO = window.BO;
  var WIDGET_SRC = "/static/vendor/altcha/altcha.min.js";
  var WORKER_SRC = "/static/vendor/altcha/workers/pbkdf2.js";
  var ALGORITHMS = ["PBKDF2/SHA-256"]; // what server/waiting/challenge.py issues
  var LOAD_TIMEOUT_MS = 20000;
  var SOLVE_TIMEOUT_MS = 90000;

  var loading = null;

  function problem(kind, message) {
    var err = new Error(message);
    err.kind = kind;
    return err;
  }

  function supported() {
    return typeof window.Worker === "function" && !!window.customElements
      && !!(window.crypto && window.crypto.subtle) && window.isSecureContext !== false;
  }

  /** Load the widget once (a module script: the bundle declares top-level names). */
  function load() {
    if (loading) return loading;
    loading = new Promise(function (resolve, reject) {
      if (!supported()) {
        reject(problem("unsupported", "this browser cannot run the check"));
        return;
      }
      var script = document.createElement("script");
      script.type = "module";
      script.src = WIDGET_SRC;
      var timer = setTimeout(function () { fail("the check's script took too long to load"); },
        LOAD_TIMEOUT_MS);
      function fail(message) {
        clearTimeout(timer);
        script.remove();
        reject(problem("blocked", message));
      }
      script.onerror = function () { fail("the check's script did not load"); };
      script.onload = function () {
        clearTimeout(timer);
        var altcha = window.$altcha;
        if (!altcha || !window.customElements.get("altcha-widget")) {
          fail("the check's script did not start");
          return;
        }
        ALGORITHMS.forEach(function (name) {
          altcha.algorithms.set(name, function () { return new Worker(WORKER_SRC, { name: "altcha" }); });
        });
        altcha.defaults.set({
          auto: "off",
          display: "invisible",
          minDuration: 0,             // no artificial delay: the page says what is going on
          humanInteractionSignature: false,
          hideFooter: true,
          hideLogo: true,
          timeout: SOLVE_TIMEOUT_MS,
        });
        resolve(altcha);
      };
      document.head.appendChild(script);
    });
    loading.catch(function () { loading = null; }); // a later try loads it again
    return loading;
  }

  /** A hidden widget element, ready to be configured once the widget mounted it. */
  function mountWidget() {
    return new Promise(function (resolve) {
      var widget = document.createElement("altcha-widget");
      widget.hidden = true;
      widget.setAttribute("aria-hidden", "true");
      widget.addEventListener("load", function () { resolve(widget); }, { once: true });
      document.body.appendChild(widget);
    });
  }

  /** Solve one challenge object (as the server's challenge endpoint answers it). */
  async function solveChallenge(challenge) {
    await load();
    var widget = await mountWidget();
    try {
      widget.configure({ challenge: challenge });
      var result = await widget.verify();
      if (!result || !result.payload) {
        throw problem("failed", "the check stopped in state " + widget.getState());
      }
      return result.payload;
    } finally {
      widget.remove();
    }
  }

  /** Fetch a challenge from `url` and solve it: the payload for the join. */
  async function solve(url, onWait) {
    load(); // the script loads while the challenge is fetched
    var r = await BO.api(url, { tries: 8, onWait: onWait });
    if (r.status !== 200 || !r.body || !r.body.parameters) {
      throw problem("server", (r.body && r.body.detail) || "The waiting room could not start the check.");
    }
    return solveChallenge(r.body);
  }

  BO.challenge = { load: load, solve: solve, solveChallenge: solveChallenge, supported: supported };
})();
