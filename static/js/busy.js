/* The "very busy" page NGINX shows when no app process answers: reload at a jittered moment
   (10–20 s) so that a crowd of waiting tabs does not come back all at once. */
(function () {
  "use strict";
  var I18N = window.I18N;
  var seconds = 10 + Math.floor(Math.random() * 11);
  var text = document.getElementById("busy-retry");
  var button = document.getElementById("busy-now");

  function reload() { window.location.reload(); }

  function show() {
    if (text) { text.textContent = I18N.t("busy.retry_in", { count: seconds }); }
  }

  if (button) { button.addEventListener("click", reload); }
  I18N.ready.then(function () {
    show();
    var timer = window.setInterval(function () {
      seconds -= 1;
      if (seconds <= 0) {
        window.clearInterval(timer);
        if (text) { text.textContent = I18N.t("busy.retrying"); }
        reload();
        return;
      }
      show();
    }, 1000);
  });
})();
