/* The "very busy" page NGINX shows when no app process answers: reload at a jittered moment
   (10–20 s) so that a crowd of waiting tabs does not come back all at once. */
(function () {
  "use strict";
  var seconds = 10 + Math.floor(Math.random() * 11);
  var text = document.getElementById("busy-retry");
  var button = document.getElementById("busy-now");

  function reload() { window.location.reload(); }

  function show() {
    if (text) {
      text.textContent = "Trying again in " + seconds + " second" + (seconds === 1 ? "" : "s") + "…";
    }
  }

  if (button) { button.addEventListener("click", reload); }
  show();
  var timer = window.setInterval(function () {
    seconds -= 1;
    if (seconds <= 0) {
      window.clearInterval(timer);
      if (text) { text.textContent = "Trying again…"; }
      reload();
      return;
    }
    show();
  }, 1000);
})();
